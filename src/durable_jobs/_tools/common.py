"""Small helpers the maintenance operations share."""

from __future__ import annotations

from datetime import datetime

from durable_jobs._domain.ids import KINDS, Kind
from durable_jobs._errors import ConfigurationError


def kind_of(kind: str) -> Kind:
    """``kind`` if it names a job kind, else :class:`ConfigurationError`."""
    if kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: use one of {', '.join(KINDS)}."
        raise ConfigurationError(msg)
    return kind


def isoformat(at: datetime | None) -> str | None:
    """``at`` as ISO 8601 text (None stays None)."""
    return None if at is None else at.isoformat()


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) as one space."""
    return " ".join(text.split())
