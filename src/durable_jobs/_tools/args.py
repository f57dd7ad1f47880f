"""Checks of the Inspector's arguments: a malformed one is the caller's
:class:`~durable_jobs.ValidationError`, and nothing is read."""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Final, cast
from uuid import UUID

from durable_jobs._domain.ids import KINDS, Kind, check_instance_id, instance_uuid
from durable_jobs._domain.status import STATUSES as _DOMAIN_STATUSES
from durable_jobs._errors import ConfigurationError, ValidationError
from durable_jobs._store.base import Store
from durable_jobs._store.index import IndexRow

__all__ = [
    "MAX_LIMIT",
    "STATUSES",
    "aware",
    "check_filter",
    "check_kind",
    "check_limit",
    "check_status",
    "check_version",
    "decode_cursor",
    "encode_cursor",
    "label_of",
    "uuid_of",
]

#: Every status an instance can have in the index (per kind, plus ``terminated``).
STATUSES: Final[tuple[str, ...]] = _DOMAIN_STATUSES
#: The most items one page or alarm list may ask for.
MAX_LIMIT: Final = 10_000


def check_kind(kind: object) -> Kind:
    if kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: expected one of {', '.join(KINDS)}."
        raise ValidationError(msg)
    return kind


def uuid_of(kind: object, job: object, instance_id: object) -> UUID:
    checked = check_kind(kind)
    check_instance_id(instance_id)
    if not isinstance(job, str):
        msg = f"A job name must be a str, not {type(job).__name__}."
        raise ValidationError(msg)
    try:
        return instance_uuid(checked, job, cast("str", instance_id))
    except ConfigurationError as exc:  # a malformed job name: the caller's input here
        raise ValidationError(str(exc)) from None


def check_filter(name: str, value: object) -> None:
    """A ``job`` or ``cursor`` argument: a str or None (ValidationError otherwise)."""
    if value is not None and not isinstance(value, str):
        msg = f"{name} must be a str or None, not {type(value).__name__}."
        raise ValidationError(msg)


def check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        msg = f"Unknown status {status!r}: expected one of {', '.join(STATUSES)}."
        raise ValidationError(msg)


def check_seconds(value: object, what: str, *, positive: bool, most: float | None = None) -> float:
    """``value`` (a timedelta or seconds) as finite seconds, > 0 (``positive``) or >= 0,
    and at most ``most`` if given; else ValidationError naming ``what``."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
        or (positive and seconds == 0)
        or (most is not None and seconds > most)
    ):
        bound = "> 0" if positive else ">= 0"
        if most is not None:
            bound += f" and <= {most:g}"
        msg = f"{what} must be a timedelta or seconds {bound}, finite, got {value!r:.40}."
        raise ValidationError(msg)
    return float(seconds)


def label_of(kind: str, job: str, instance_id: str) -> str:
    return f"{kind} job {job!r} instance {instance_id!r}"


def encode_cursor(row: IndexRow | tuple[str, str, str]) -> str:
    key = row if isinstance(row, tuple) else (row.kind, row.job, row.instance_id)
    raw = json.dumps(list(key), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, job, instance_id = json.loads(raw)
        if not all(isinstance(x, str) for x in (kind, job, instance_id)):
            raise TypeError(cursor)  # noqa: TRY301 - one message for every malformed cursor
    except (binascii.Error, ValueError, TypeError):
        msg = f"Malformed cursor {cursor[:80]!r}: pass the next_cursor of a previous page."
        raise ValidationError(msg) from None
    return kind, job, instance_id


#: The largest version or position a store holds (a signed 64-bit integer).
MAX_POSITION = 2**63 - 1


def check_version(version: object, name: str) -> None:
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 1 <= version <= MAX_POSITION
    ):
        msg = (
            f"{name} must be a whole number from 1 to {MAX_POSITION} (versions count from "
            f"1), not {version!r}."
        )
        raise ValidationError(msg)


def aware(at: datetime) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None:
        msg = f"A time must be a timezone-aware datetime, not {at!r}."
        raise ValidationError(msg)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        msg = f"A time must fall within the years 1 to 9999 in UTC, not {at.isoformat()}."
        raise ValidationError(msg) from None


def check_limit(limit: object) -> int:
    """``limit`` if it is a whole number from 1 to :data:`MAX_LIMIT`."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        msg = f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}."
        raise ValidationError(msg)
    return limit


def check_store(store: object, call: str) -> None:
    """:class:`ConfigurationError` unless ``store`` is an open :class:`Store` (a URL, say,
    is what the Inspector takes, not the maintenance functions)."""
    if not isinstance(store, Store):
        given = f"the str {store!r:.80}" if isinstance(store, str) else type(store).__name__
        msg = f"{call} takes an open store (dj.open_store(url)), not {given}."
        raise ConfigurationError(msg)
