"""State changes as JSON Patches (RFC 6902), so a log grows with what changed.

A debounce batch's state is the fold of its events; recording the whole state
at every ``add`` makes a batch of n events take n² space. :func:`state_patch`
gives the patch from the old state to the new one when that patch is much
smaller than the new state, and :func:`apply_state_patch` replays it. Both
work on plain JSON data only, so replay needs no application code.

Values are compared as JSON (``1``, ``1.0`` and ``true`` differ, and so do two
objects with their keys in another order), never with Python's ``==`` alone.
The common changes (keys of an object replaced, items appended to an array)
are found directly; an object whose keys changed order is written whole; any
other change to an array is diffed by ``jsonpatch``.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import pydantic_core

__all__ = ["apply_state_patch", "state_patch"]

#: A patch is recorded only if its JSON is at most this fraction of the state's.
_MAX_RATIO = 0.5


def _json(value: Any) -> bytes:
    return pydantic_core.to_json(value)


def _pointer(path: str, key: str | int) -> str:
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{path}/{token}"


def _diff(out: list[dict[str, Any]], path: str, old: Any, new: Any) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        if _json(old) == _json(new):
            return
        kept = [key for key in old if key in new]
        if list(new) != kept + [key for key in new if key not in old]:
            # The keys were put in another order, which add/remove/replace cannot say
            # (an added key goes last): the object is written whole.
            out.append({"op": "replace", "path": path, "value": new})
            return
        for key in old:
            if key not in new:
                out.append({"op": "remove", "path": _pointer(path, key)})
        for key, value in new.items():
            if key in old:
                _diff(out, _pointer(path, key), old[key], value)
            else:
                out.append({"op": "add", "path": _pointer(path, key), "value": value})
        return
    if isinstance(old, list) and isinstance(new, list):
        n = len(old)
        if len(new) >= n and _json(old) == _json(new[:n]):
            out.extend(
                {"op": "add", "path": _pointer(path, i), "value": new[i]}
                for i in range(n, len(new))
            )
            return
        for found in jsonpatch.make_patch(old, new).patch:
            op = dict(found)
            op["path"] = path + op["path"]
            if "from" in op:
                op["from"] = path + op["from"]
            out.append(op)
        return
    if type(old) is not type(new) or _json(old) != _json(new):
        out.append({"op": "replace", "path": path, "value": new})


def state_patch(old: Any, new: Any) -> list[dict[str, Any]] | None:
    """The patch from ``old`` to ``new`` if much smaller than ``new``, else None.

    ``[]`` if they are equal as JSON. Both are plain JSON data.
    """
    if old is None or new is None:
        return None
    ops: list[dict[str, Any]] = []
    _diff(ops, "", old, new)
    if len(_json(ops)) > _MAX_RATIO * len(_json(new)):
        return None
    return ops


def apply_state_patch(state: Any, patch: list[Any]) -> Any:
    """``state`` changed by ``patch``, as a new value (``state`` is left as it was)."""
    if not patch:
        return state
    return jsonpatch.apply_patch(state, patch)
