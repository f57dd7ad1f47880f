"""A structural diff of two JSON values, as the Inspector's ``diff`` shows it."""

from __future__ import annotations

from typing import Any

from durable_jobs._tools.views import StateChange

__all__ = ["json_diff"]


def _pointer(path: str, key: str | int) -> str:
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{path}/{token}"


def json_diff(old: Any, new: Any) -> list[StateChange]:
    """The structural differences from ``old`` to ``new`` (JSON values), in document order.

    Objects are compared key by key (keys sorted), arrays index by index (a
    longer array has ``added`` items at its end, a shorter one ``removed``);
    anything else that differs, including a change of type, is ``changed``.
    """
    out: list[StateChange] = []
    _diff_into(out, "", old, new)
    return out


def _diff_into(out: list[StateChange], path: str, old: Any, new: Any) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys(), key=str):
            sub = _pointer(path, key)
            if key not in new:
                out.append(StateChange(path=sub, op="removed", old=old[key]))
            elif key not in old:
                out.append(StateChange(path=sub, op="added", new=new[key]))
            else:
                _diff_into(out, sub, old[key], new[key])
        return
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            sub = _pointer(path, i)
            if i >= len(new):
                out.append(StateChange(path=sub, op="removed", old=old[i]))
            elif i >= len(old):
                out.append(StateChange(path=sub, op="added", new=new[i]))
            else:
                _diff_into(out, sub, old[i], new[i])
        return
    # bool is an int in Python, but true != 1 in JSON.
    if type(old) is not type(new) or old != new:
        out.append(StateChange(path=path, op="changed", old=old, new=new))
