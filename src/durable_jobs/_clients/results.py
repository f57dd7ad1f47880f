"""The result types of the clients' commands and reads (frozen values)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypeVar, final

__all__ = [
    "AddResult",
    "ClearResult",
    "ContinuousStatus",
    "DebounceStatus",
    "FlushResult",
    "SendResult",
    "StartResult",
    "TaskState",
    "TaskStatus",
    "TerminateResult",
    "TriggerResult",
]

S = TypeVar("S")


@final
@dataclass(frozen=True, slots=True)
class ContinuousStatus:
    """``status`` is ``running`` (also while a retry waits), ``failed`` or ``not_found``."""

    status: Literal["running", "failed", "not_found"]
    run_count: int
    next_run_at: datetime | None


@final
@dataclass(frozen=True, slots=True)
class StartResult:
    """``created`` is False when the instance already existed (it is left unchanged)."""

    created: bool
    status: ContinuousStatus


@final
@dataclass(frozen=True, slots=True)
class TriggerResult:
    """What a run started by hand did."""

    triggered: bool
    terminated: bool
    retry_scheduled: bool


@final
@dataclass(frozen=True, slots=True)
class TerminateResult:
    terminated: bool


@final
@dataclass(frozen=True, slots=True)
class AddResult:
    """``created``: this add opened a batch; ``duplicate``: its idempotency key was seen."""

    event_count: int
    will_flush_at: datetime | None
    created: bool
    duplicate: bool


@final
@dataclass(frozen=True, slots=True)
class FlushResult:
    """``reason`` is ``manual`` (flushed), ``empty`` (nothing ran) or ``failed``."""

    flushed: bool
    event_count: int
    reason: Literal["manual", "empty", "failed"]
    retry_scheduled: bool


@final
@dataclass(frozen=True, slots=True)
class ClearResult:
    cleared: bool
    discarded_events: int


@final
@dataclass(frozen=True, slots=True)
class DebounceStatus:
    """``status`` is ``debouncing``, ``failed``, ``idle`` or ``not_found``."""

    status: Literal["debouncing", "failed", "idle", "not_found"]
    event_count: int
    started_at: datetime | None
    will_flush_at: datetime | None


@final
@dataclass(frozen=True, slots=True)
class SendResult:
    """``scheduled_at`` is the alarm as committed after ``on_event`` (and ``on_idle``)."""

    created: bool
    scheduled_at: datetime | None
    duplicate: bool


@final
@dataclass(frozen=True, slots=True)
class TaskStatus:
    """``status`` is ``active`` (an alarm is set), ``idle`` or ``not_found``."""

    status: Literal["active", "idle", "not_found"]
    scheduled_at: datetime | None
    event_count: int
    execute_count: int
    created_at: datetime | None


@final
@dataclass(frozen=True, slots=True)
class TaskState(Generic[S]):
    state: S | None
    scheduled_at: datetime | None
