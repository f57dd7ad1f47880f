"""What the testing harness reads from the log: handler runs and debounce flushes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, final

from durable_jobs._records import RecordedEvent

__all__ = ["Flush", "Run"]

_RUN_NAMES = ("run_succeeded", "run_failed")


@final
@dataclass(frozen=True, slots=True)
class Run:
    """One handler call as the log recorded it (a ``run_succeeded``/``run_failed`` record).

    ``run_count`` and ``attempt`` are the run's numbers (a retry keeps its
    ``run_count`` and has the next ``attempt``); ``error_type``, ``error`` and
    ``will_retry`` are set on failed runs only.
    """

    kind: str
    job: str
    instance_id: str
    handler: str
    run_count: int
    attempt: int
    outcome: Literal["succeeded", "failed"]
    at: datetime
    error_type: str | None = None
    error: str | None = None
    will_retry: bool | None = None

    @classmethod
    def from_record(cls, record: RecordedEvent) -> Run:
        """The run a ``run_succeeded`` or ``run_failed`` record describes."""
        if record.name not in _RUN_NAMES:
            msg = f"{record.name!r} is not a run record (run_succeeded or run_failed)"
            raise ValueError(msg)
        failed = record.name == "run_failed"
        return cls(
            kind=record.kind,
            job=record.job,
            instance_id=record.instance_id,
            handler=str(record.data.get("handler", "execute")),
            run_count=int(record.run_count or 0),
            attempt=int(record.attempt or 0),
            outcome="failed" if failed else "succeeded",
            at=record.at,
            error_type=record.data.get("error_type") if failed else None,
            error=record.data.get("message") if failed else None,
            will_retry=bool(record.data.get("will_retry")) if failed else None,
        )


@final
@dataclass(frozen=True, slots=True)
class Flush:
    """One successful debounce flush (a ``flushed`` record): why, and how many events."""

    job: str
    instance_id: str
    reason: str
    event_count: int
    batch_no: int
    at: datetime

    @classmethod
    def from_record(cls, record: RecordedEvent) -> Flush:
        """The flush a ``flushed`` record describes."""
        if record.name != "flushed":
            msg = f"{record.name!r} is not a flushed record"
            raise ValueError(msg)
        return cls(
            job=record.job,
            instance_id=record.instance_id,
            reason=str(record.data["reason"]),
            event_count=int(record.data["event_count"]),
            batch_no=int(record.data["batch_no"]),
            at=record.at,
        )
