"""What a stored value may be: JSON that reads back exactly, within size limits.

Every state and event is stored as JSON, so each one is checked before
anything is written: numbers must be finite (JSON has no NaN or infinity; a
library writing them as ``null`` would silently change the value), strings
and keys must be valid Unicode (no lone surrogates: they cannot be encoded as
UTF-8), nesting is at most :data:`MAX_NESTING` deep (JSON readers stop at a
recursion limit), and the encoded size stays within :class:`Limits`. A value
that breaks a rule raises :class:`~durable_jobs.ValidationError` naming where
in the value the problem is.

The limits in effect are those of the ``open_jobs`` call serving the job
(they travel with its tasks in a context variable); outside one, the
defaults apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

from durable_jobs._errors import ConfigurationError, ValidationError

__all__ = [
    "DEFAULT_LIMITS",
    "LATEST_ALARM",
    "MAX_INT_DIGITS",
    "MAX_NESTING",
    "Limits",
    "LongInt",
    "check_alarm_time",
    "check_finite",
    "check_idempotency_key",
    "check_json_value",
    "check_reason",
    "check_size",
    "check_text",
    "current_limits",
    "limits_in_effect",
    "spell_path",
]

#: The latest alarm accepted. The index keeps alarms as epoch seconds (a float), and
#: one in the last moments of year 9999 would be stored past ``datetime.max``, where it
#: can no longer be read back: every later open of the store would fail on that row.
LATEST_ALARM: Final = datetime(9999, 12, 31, tzinfo=UTC)

#: The deepest nesting of lists and objects a state or event may have.
MAX_NESTING: Final = 100
#: The most digits an int in a stored value may have (the sign not counted): pydantic's
#: JSON reader, and Python's ``int()`` by default, refuse longer ones.
MAX_INT_DIGITS: Final = 4300
#: Ints of at most this many bits have at most MAX_INT_DIGITS digits (2**14283 < 10**4300).
_SHORT_INT_BITS: Final = 14283
_TOO_MANY_DIGITS: Final = 10**MAX_INT_DIGITS
MIB: Final = 1024 * 1024


#: The largest size limit accepted (1 TiB): a larger one is a mistake, not a limit.
MAX_LIMIT: Final = 1024**4


@dataclass(frozen=True, slots=True)
class Limits:
    """Maximum sizes, in bytes of UTF-8 JSON (keys: bytes of UTF-8 text)."""

    max_event_bytes: int = MIB
    max_state_bytes: int = MIB
    max_key_bytes: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_event_bytes", "max_state_bytes", "max_key_bytes"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 1 <= value <= MAX_LIMIT
            ):
                msg = (
                    f"{name} must be an int from 1 to {MAX_LIMIT} (1 TiB), in bytes, "
                    f"got {value!r:.60}"
                )
                raise ConfigurationError(msg)

    def for_value(self, what: str) -> tuple[str, int]:
        """The option name and limit for a ``state`` or an ``event``."""
        if what == "event":
            return "max_event_bytes", self.max_event_bytes
        return "max_state_bytes", self.max_state_bytes


DEFAULT_LIMITS: Final = Limits()
_LIMITS: ContextVar[Limits] = ContextVar("durable_jobs_limits", default=DEFAULT_LIMITS)


def current_limits() -> Limits:
    """The limits of the ``open_jobs`` serving this task (the defaults outside one)."""
    return _LIMITS.get()


@contextmanager
def limits_in_effect(limits: Limits) -> Iterator[None]:
    """Make ``limits`` the ones in effect in this task (and tasks it starts) for a while."""
    token = _LIMITS.set(limits)
    try:
        yield
    finally:
        _LIMITS.reset(token)


def _bad_text(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_text(text: str, what: str) -> None:
    """Raise ValidationError if ``text`` cannot be stored as UTF-8 (lone surrogates)."""
    if _bad_text(text):
        msg = (
            f"{what} contains a lone surrogate ({_first_surrogate(text)}), which is not "
            "valid Unicode and cannot be stored. Nothing was written."
        )
        raise ValidationError(msg)


def _first_surrogate(text: str) -> str:
    for i, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return f"U+{ord(ch):04X} at position {i}"
    return "?"  # pragma: no cover - only called when there is one


#: Where a walk is in a value: the name of the whole value, or (parent, key). Spelled
#: out (``state['a'][2]``) only for a message: most values are fine.
_Path: TypeAlias = "str | tuple[_Path, object]"


def spell_path(path: _Path) -> str:
    """A path of (parent, key) links as it reads in a message: ``state['a'][2]``."""
    return _spell(path)


def _spell(path: _Path) -> str:
    keys = []
    while isinstance(path, tuple):
        path, key = path
        keys.append(key)
    steps = (f"[{key!r}]" if isinstance(key, str) else f"[{key}]" for key in reversed(keys))
    return path + "".join(steps)


class LongInt:
    """An int in JSON text with more than :data:`MAX_INT_DIGITS` digits, as a JSON
    reader that is told to keep it (``parse_int``) gives it: :func:`check_json_value`
    refuses it with the same message as such an int in a value."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<an int of {len(self.text.lstrip('-')):,} digits>"

    @staticmethod
    def parse(text: str) -> int | LongInt:
        """``text`` (a JSON int) as an int, or a LongInt if it has too many digits."""
        if len(text) > MAX_INT_DIGITS and len(text.lstrip("-")) > MAX_INT_DIGITS:
            return LongInt(text)
        return int(text)


def _long_int(path: _Path) -> ValidationError:
    return ValidationError(
        f"{_spell(path)} is an int of more than {MAX_INT_DIGITS:,} digits, too large to "
        "store (JSON readers refuse longer numbers); store it as a str. Nothing was written."
    )


def _too_long(value: int) -> bool:
    """Whether the int ``value`` has more than MAX_INT_DIGITS digits."""
    return value.bit_length() > _SHORT_INT_BITS and abs(value) >= _TOO_MANY_DIGITS


def _non_finite(value: float, path: _Path) -> ValidationError:
    return ValidationError(
        f"{_spell(path)} is {value!r}: NaN and infinities cannot be stored (JSON has no such "
        "numbers); use None or a finite number. Nothing was written."
    )


def check_finite(value: Any, what: str) -> None:
    """Raise ValidationError if ``value`` (plain Python data: dicts, lists, tuples,
    sets, scalars) holds a NaN or an infinite float anywhere, or a key with a lone
    surrogate.

    Needed on top of :func:`check_json_value` because pydantic's JSON mode
    turns them into ``None`` in some places (an ``Any`` field) and not in
    others. Other objects are not looked into.
    """
    stack: list[tuple[Any, _Path, int]] = [(value, what, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise _non_finite(item, path)
        elif depth > MAX_NESTING:
            continue  # too deep: refused by check_json_value, with its own message
        elif isinstance(item, dict):
            for key, v in item.items():
                if isinstance(key, float) and not math.isfinite(key):
                    raise _non_finite(key, f"a key of {_spell(path)}")
                if isinstance(key, str) and _bad_text(key):
                    # Checked here: pydantic's JSON mode replaces it with U+FFFD.
                    check_text(key, f"a key of {_spell(path)}")
                stack.append((v, (path, key), depth + 1))
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend((v, (path, i), depth + 1) for i, v in enumerate(item))


def check_json_value(data: Any, what: str, *, max_depth: int = MAX_NESTING) -> None:
    """Raise ValidationError unless ``data`` (plain JSON data) is storable as it is.

    ``what`` names the value in the message (``"state"``, ``"event"``); the
    message names the path of the offending part, e.g. ``state['a'][2]``.
    Walks iteratively, so a deeply nested value cannot exhaust the stack.
    """
    stack: list[tuple[Any, _Path, int]] = [(data, what, 0)]
    while stack:
        value, path, depth = stack.pop()
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int):
            if _too_long(value):
                raise _long_int(path)
            continue
        if isinstance(value, LongInt):
            raise _long_int(path)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _non_finite(value, path)
            continue
        if isinstance(value, str):
            if _bad_text(value):
                check_text(value, _spell(path))
            continue
        container: Literal["list", "object"]
        if isinstance(value, list):
            container = "list"
        elif isinstance(value, dict):
            container = "object"
        else:
            msg = f"{_spell(path)} is a {type(value).__name__}, which JSON cannot hold."
            raise ValidationError(msg)
        if depth >= max_depth:
            msg = (
                f"{_spell(path)} is a {container} nested more than {max_depth} levels deep; "
                "stored values are limited to that depth. Nothing was written."
            )
            raise ValidationError(msg)
        if isinstance(value, list):
            stack.extend((v, (path, i), depth + 1) for i, v in enumerate(value))
            continue
        for key, v in value.items():
            if not isinstance(key, str):
                msg = f"{_spell(path)} has the key {key!r}; JSON object keys are strings."
                raise ValidationError(msg)
            if _bad_text(key):
                check_text(key, f"a key of {_spell(path)}")
            stack.append((v, (path, key), depth + 1))


def check_size(encoded: bytes, what: str) -> None:
    """Raise ValidationError if the JSON ``encoded`` is over the limit for ``what``."""
    name, limit = current_limits().for_value(what)
    if len(encoded) > limit:
        msg = (
            f"The {what} is {len(encoded):,} bytes as JSON, over the limit of {limit:,} "
            f"bytes ({name}, an option of open_jobs). Nothing was written."
        )
        raise ValidationError(msg)


def check_idempotency_key(key: object) -> str | None:
    """An idempotency key as given (None: no key), or ValidationError."""
    if key is None:
        return None
    limit = current_limits().max_key_bytes
    if not isinstance(key, str) or not key:
        msg = f"idempotency_key must be a non-empty str or None, got {key!r:.80}."
        raise ValidationError(msg)
    check_text(key, "The idempotency_key")
    size = len(key.encode("utf-8"))
    if size > limit:
        msg = (
            f"The idempotency_key is {size:,} bytes as UTF-8, over the limit of {limit:,} "
            "bytes (max_key_bytes, an option of open_jobs). Nothing was written."
        )
        raise ValidationError(msg)
    return key


def check_reason(reason: object) -> str | None:
    """A termination reason as given (None: none), or ValidationError.

    It is recorded in the log, so it must be valid Unicode and within
    ``max_event_bytes``.
    """
    if reason is None:
        return None
    if not isinstance(reason, str):
        msg = f"A termination reason must be a str or None, got {type(reason).__name__}."
        raise ValidationError(msg)
    check_text(reason, "The termination reason")
    limit = current_limits().max_event_bytes
    size = len(reason.encode("utf-8"))
    if size > limit:
        msg = (
            f"The termination reason is {size:,} bytes, over the limit of {limit:,} bytes "
            "(max_event_bytes, an option of open_jobs). Nothing was written."
        )
        raise ValidationError(msg)
    return reason


def check_alarm_time(at: datetime, what: str) -> datetime:
    """``at`` if the stores can keep it as an alarm, else ValidationError (see
    :data:`LATEST_ALARM`)."""
    if at > LATEST_ALARM:
        msg = (
            f"{what} got {at.isoformat()}, later than the latest alarm a store keeps "
            f"({LATEST_ALARM.isoformat()}). To leave an instance without an alarm, do not "
            "set one; to park it for good, terminate it."
        )
        raise ValidationError(msg)
    return at
