"""What only a debounce instance knows and records: its batches.

The open batch (``state`` and ``event_count`` of the instance, with when its
first and latest events came) and the queue of *closed* batches waiting for a
flush live in :class:`DebounceData`. :class:`BatchClosed`, :class:`Flushed`
and :class:`Cleared` are debounce events only (``DebounceInstance.BatchClosed``;
no other kind has them), and the debounce versions of some common events also
update the batches (a termination drops them, a failed flush keeps its batch).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from durable_jobs._domain import events
from durable_jobs._domain.data import InstanceData, UtcDatetime

__all__ = [
    "OWN_EVENTS",
    "Batch",
    "BatchClosed",
    "Cleared",
    "DebounceData",
    "EventAdded",
    "FlushReason",
    "Flushed",
    "Restarted",
    "Resumed",
    "RunFailed",
    "Terminated",
]

FlushReason = Literal["flush_after", "max_wait", "max_events", "manual"]
#: The stored names of the events only debounce instances have.
OWN_EVENTS: tuple[str, ...] = ("BatchClosed", "Flushed", "Cleared")


class Batch(BaseModel):
    """A debounce batch closed for a flush that has not succeeded yet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_no: int
    event_count: int
    state: JsonValue
    started_at: UtcDatetime
    reason: FlushReason
    #: The job's type version ``state`` was written with.
    state_version: int = 1


class DebounceData(InstanceData):
    """A debounce instance's data: the common data, the open batch and the closed ones."""

    # When the open batch's first event was accepted.
    batch_started_at: UtcDatetime | None = None
    # When the open batch's latest event was accepted (a sliding window starts there).
    batch_last_added_at: UtcDatetime | None = None
    next_batch_no: int = 1
    closed: list[Batch] = Field(default_factory=list)
    closed_due_at: UtcDatetime | None = None

    _containers: ClassVar[tuple[str, ...]] = ("idempotency", "closed")


def _data(aggregate: Any) -> DebounceData:
    return cast("DebounceData", aggregate.d)


def _drop_batches(d: DebounceData) -> None:
    d.event_count = 0
    d.state = None
    d.batch_started_at = None
    d.batch_last_added_at = None
    d.closed = []
    d.closed_due_at = None


# ---- the common events, as a debounce instance applies them ----------------------------


class Restarted(events.Restarted):
    """A terminated instance started again; batch numbers go on where they were."""

    def apply(self, aggregate: Any) -> None:
        next_batch_no = _data(aggregate).next_batch_no
        super().apply(aggregate)
        _data(aggregate).next_batch_no = next_batch_no


class Terminated(events.Terminated):
    """The instance ended; its open and closed batches are dropped with it."""

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        _drop_batches(_data(aggregate))


class RunFailed(events.RunFailed):
    """A flush raised: its batch waits for its retry, or is kept, paused."""

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        if self.handler != "execute":
            return
        d = _data(aggregate)
        d.paused = not self.will_retry
        d.closed_due_at = self.retry_at
        if d.closed and self.flush_reason is not None:
            d.closed[0] = d.closed[0].model_copy(
                update={"reason": cast("FlushReason", self.flush_reason)}
            )


class Resumed(events.Resumed):
    """A paused or retry-waiting flush was made due at ``at``."""

    def apply(self, aggregate: Any) -> None:
        super().apply(aggregate)
        d = _data(aggregate)
        if d.closed:
            d.closed_due_at = self.at


class EventAdded(events.EventAdded):
    """An event joined the open batch (opening it if it was empty)."""

    def apply(self, aggregate: Any) -> None:
        d = _data(aggregate)
        if d.event_count == 0:
            d.batch_started_at = self.timestamp
        d.batch_last_added_at = self.timestamp
        super().apply(aggregate)


# ---- debounce-only events ----------------------------------------------------------


class BatchClosed(events.Event):
    """The open batch was frozen for a flush."""

    NAME: ClassVar[str] = "batch_closed"
    batch_no: int
    reason: str
    event_count: int

    def apply(self, aggregate: Any) -> None:
        d = _data(aggregate)
        assert d.batch_started_at is not None
        d.closed.append(
            Batch(
                batch_no=self.batch_no,
                event_count=d.event_count,
                state=d.state,
                started_at=d.batch_started_at,
                reason=cast("FlushReason", self.reason),
                state_version=d.state_version,
            )
        )
        if len(d.closed) == 1:
            d.closed_due_at = self.timestamp
        d.next_batch_no = self.batch_no + 1
        d.event_count = 0
        d.state = None
        d.batch_started_at = None
        d.batch_last_added_at = None


class Flushed(events.Event):
    """The oldest closed batch was flushed successfully."""

    NAME: ClassVar[str] = "flushed"
    batch_no: int
    reason: str
    event_count: int

    def apply(self, aggregate: Any) -> None:
        d = _data(aggregate)
        d.closed = [b for b in d.closed if b.batch_no != self.batch_no]
        d.closed_due_at = self.timestamp if d.closed else None
        d.attempt = 0
        d.first_failure_at = None
        d.paused = False


class Cleared(events.Event):
    """Every buffered event was dropped unprocessed."""

    NAME: ClassVar[str] = "cleared"
    discarded_events: int

    def apply(self, aggregate: Any) -> None:
        d = _data(aggregate)
        _drop_batches(d)
        d.attempt = 0
        d.first_failure_at = None
        d.paused = False
