"""Debounce instances: collect events into batches, flush each batch once.

Events go to the *open* batch. A flush first closes the open batch (it joins
a queue of *closed* batches, frozen with their events' count and state); the
flush handler then runs on the oldest closed batch, outside the instance lock,
and a second commit records ``flushed`` or ``run_failed``. Events added in
between open the next batch, so nothing is lost or flushed twice.

The open batch's flush is due ``flush_after`` after its first event (a
``fixed`` window) or after its latest event (a ``sliding`` window), the latter
never later than ``max_wait`` after the first event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from durable_jobs._domain import batches
from durable_jobs._domain.batches import Batch, DebounceData, FlushReason
from durable_jobs._domain.instance import (
    ExhaustedAction,
    JobInstance,
    RunTicket,
    register_aggregate,
)
from durable_jobs._domain.policy import DebouncePolicy, RunEnd, Window
from durable_jobs._errors import BacklogFull

__all__ = ["DebounceInstance", "FlushTicket"]


@dataclass(frozen=True)
class FlushTicket:
    """A flush about to run: the batch it flushes, why, and which try it is."""

    batch: Batch
    reason: FlushReason
    ticket: RunTicket


@register_aggregate
class DebounceInstance(JobInstance):
    """One instance of a debounce job."""

    kind = "debounce"
    if TYPE_CHECKING:
        d: DebounceData
    data_model: ClassVar[type[DebounceData]] = DebounceData
    OWN_EVENTS: ClassVar[tuple[str, ...]] = batches.OWN_EVENTS

    # ---- events: the common ones that also change the batches, and its own ----

    # Aliases, not annotations: eventsourcing would turn class-body annotations
    # into fields of the created event.
    if TYPE_CHECKING:
        Restarted: TypeAlias = batches.Restarted
        Terminated: TypeAlias = batches.Terminated
        RunFailed: TypeAlias = batches.RunFailed
        Resumed: TypeAlias = batches.Resumed
        EventAdded: TypeAlias = batches.EventAdded
        BatchClosed: TypeAlias = batches.BatchClosed
        Flushed: TypeAlias = batches.Flushed
        Cleared: TypeAlias = batches.Cleared
    else:
        Restarted = batches.Restarted
        Terminated = batches.Terminated
        RunFailed = batches.RunFailed
        Resumed = batches.Resumed
        EventAdded = batches.EventAdded
        BatchClosed = batches.BatchClosed
        Flushed = batches.Flushed
        Cleared = batches.Cleared

    # ---- queries ---------------------------------------------------------------

    @property
    def status(self) -> str:
        """``debouncing``, ``failed`` (a closed batch is paused), ``idle`` or ``terminated``."""
        d = self.d
        if not d.live:
            return "terminated"
        if d.closed and d.paused:
            return "failed"
        return "debouncing" if d.closed or d.event_count else "idle"

    @property
    def buffered_events(self) -> int:
        """Every event not yet flushed: the closed batches' and the open batch's."""
        return self.d.event_count + sum(b.event_count for b in self.d.closed)

    @property
    def current_state(self) -> Any:
        """The state of the batch that flushes next."""
        return self.d.closed[0].state if self.d.closed else self.d.state

    @property
    def current_state_version(self) -> int:
        """The job's type version :attr:`current_state` was written with."""
        return self.d.closed[0].state_version if self.d.closed else self.d.state_version

    def held_json(self) -> list[tuple[str, Any, int]]:
        """The state of each closed batch and of the open batch (see the base class)."""
        d = self.d
        if not d.live:
            return []
        out = [
            (f"batch {b.batch_no}", b.state, b.state_version)
            for b in d.closed
            if b.state is not None
        ]
        if d.event_count and d.state is not None:
            out.append(("open batch", d.state, d.state_version))
        return out

    @property
    def started_at(self) -> datetime | None:
        """When the batch that flushes next received its first event."""
        return self.d.closed[0].started_at if self.d.closed else self.d.batch_started_at

    @property
    def will_flush_at(self) -> datetime | None:
        """When the next flush is due (the alarm); None while paused or empty."""
        return self.d.alarm_at

    @property
    def batch_state(self) -> Any:
        """The open batch's state (what ``on_event`` folds into); None if it is empty."""
        return self.d.state if self.d.event_count else None

    # ---- commands --------------------------------------------------------------

    @classmethod
    def add(
        cls,
        existing: DebounceInstance | None,
        job: str,
        instance_id: str,
        event: Any,
        *,
        now: datetime,
        new_state: Any,
        idempotency_key: str | None,
        window: timedelta,
        flush_after: timedelta,
        max_events: int | None,
        type_version: int = 1,
        flush_window: Window = "fixed",
        max_wait: timedelta | None = None,
        max_backlog: int | None = None,
    ) -> tuple[DebounceInstance, bool]:
        """Add an event whose folded state is ``new_state``; True if it opened a batch.

        The caller checks :meth:`is_duplicate` first. A ``fixed`` window is set
        by the batch's first event; a ``sliding`` one moves with every event
        (capped by ``max_wait`` from the first). Reaching ``max_events`` closes
        the batch in this same commit and makes its flush due now. ``event`` and
        ``new_state`` are JSON of the job's ``type_version``. Raises
        :class:`BacklogFull` (nothing recorded) when that close would put more
        than ``max_backlog`` closed batches in the queue (see :meth:`check_backlog`).
        """
        if existing is not None:
            existing.check_backlog(max_events=max_events, max_backlog=max_backlog, now=now)
        inst = cls.live_instance(
            existing, job, instance_id, now=now, state=None, type_version=type_version
        )
        # The result's ``created``: this add opened a batch on a new or idle instance.
        opened = inst.status == "idle"
        inst.record_event(
            event,
            now=now,
            idempotency_key=idempotency_key,
            window=window,
            type_version=type_version,
        )
        inst.set_state(new_state, now=now, type_version=type_version)
        if max_events is not None and inst.d.event_count >= max_events:
            inst.close_batch("max_events", now=now)
        inst.sync_alarm(
            now=now, flush_after=flush_after, flush_window=flush_window, max_wait=max_wait
        )
        return inst, opened

    def backlog_full(self, *, max_events: int | None, max_backlog: int | None) -> bool:
        """True if one more event would close a batch beyond ``max_backlog`` closed ones."""
        d = self.d
        return (
            max_backlog is not None
            and max_events is not None
            and d.live
            and len(d.closed) >= max_backlog
            and d.event_count + 1 >= max_events
        )

    def at_backlog_bound(self, max_backlog: int | None) -> bool:
        """True if the queue of closed batches holds exactly ``max_backlog`` of them."""
        return max_backlog is not None and self.d.live and len(self.d.closed) == max_backlog

    def stuck_at_backlog_bound(self, max_backlog: int | None) -> bool:
        """At the bound, and the oldest batch's flush has failed (paused, or retrying)."""
        return self.at_backlog_bound(max_backlog) and (self.d.paused or self.d.attempt > 0)

    def backlog_status(self, *, now: datetime) -> str:
        """What the oldest closed batch's flush is doing, in words."""
        d = self.d
        if d.paused:
            return "failed (paused: no retry is pending)"
        if d.attempt and d.closed_due_at is not None and d.closed_due_at > now:
            return f"retrying (try {d.attempt + 1} is due at {d.closed_due_at.isoformat()})"
        return "flushing (its flush is running or due now)"

    def check_backlog(
        self, *, max_events: int | None, max_backlog: int | None, now: datetime
    ) -> None:
        """Raise :class:`BacklogFull` if an add now would close a batch beyond the bound."""
        if not self.backlog_full(max_events=max_events, max_backlog=max_backlog):
            return
        d = self.d
        waiting = sum(b.event_count for b in d.closed)
        msg = (
            f"Debounce job {d.job!r} refused an add to instance {d.instance_id!r}: it "
            f"already holds {len(d.closed)} closed batches ({waiting} events) waiting for "
            f"their flush (the job's max_backlog), and this event would close one more. The "
            f"oldest batch's flush is {self.backlog_status(now=now)}. Nothing was "
            "written; add it again later. To unblock: fix the flush handler (or what it "
            f"calls), then flush({d.instance_id!r}) to flush the waiting batches; or "
            f"clear({d.instance_id!r}) to drop them unprocessed; or raise max_backlog "
            "(each waiting batch keeps its state in the instance)."
        )
        raise BacklogFull(msg)

    def close_batch(self, reason: FlushReason, *, now: datetime) -> None:
        """Freeze the open batch into the queue of closed batches."""
        assert self.d.event_count > 0, "close_batch() needs an open batch"
        self.trigger_event(
            self.BatchClosed,
            timestamp=now,
            batch_no=self.d.next_batch_no,
            reason=reason,
            event_count=self.d.event_count,
        )

    def open_batch_due(
        self,
        *,
        flush_after: timedelta,
        flush_window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> tuple[datetime, FlushReason] | None:
        """When the open batch's flush is due and why (None: no open batch).

        ``fixed``: ``flush_after`` after its first event. ``sliding``:
        ``flush_after`` after its latest event, but no later than ``max_wait``
        after its first (the reason is then ``max_wait``, if the cap comes strictly
        first: on a tie the batch was quiet for ``flush_after``).
        """
        d = self.d
        start = d.batch_started_at
        if not d.event_count or start is None:
            return None
        if flush_window == "fixed":
            return start + flush_after, "flush_after"
        quiet = (d.batch_last_added_at or start) + flush_after
        if max_wait is not None and start + max_wait < quiet:
            return start + max_wait, "max_wait"
        return quiet, "flush_after"

    def desired_alarm(
        self,
        *,
        flush_after: timedelta,
        flush_window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> datetime | None:
        """When the instance next needs attention (None: never, on its own)."""
        d = self.d
        if not d.live:
            return None
        if d.closed:
            return None if d.paused else d.closed_due_at
        due = self.open_batch_due(
            flush_after=flush_after, flush_window=flush_window, max_wait=max_wait
        )
        return None if due is None else due[0]

    def sync_alarm(
        self,
        *,
        now: datetime,
        flush_after: timedelta,
        flush_window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> None:
        """Record an alarm change if :meth:`desired_alarm` moved."""
        at = self.desired_alarm(
            flush_after=flush_after, flush_window=flush_window, max_wait=max_wait
        )
        self.set_alarm(at, now=now)

    def begin_flush(
        self,
        *,
        now: datetime,
        manual: bool,
        flush_after: timedelta,
        flush_window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> FlushTicket | None:
        """Pick the batch to flush now (closing the open one if its time came).

        Returns None when nothing is due (or, for ``manual``, nothing is
        buffered). A manual flush also runs a paused or retry-waiting batch
        at once, as a fresh run with ``reason="manual"``.
        """
        d = self.d
        if not d.live:
            return None
        if not d.closed:
            due = self.open_batch_due(
                flush_after=flush_after, flush_window=flush_window, max_wait=max_wait
            )
            if due is None or not (manual or due[0] <= now):
                return None
            self.close_batch("manual" if manual else due[1], now=now)
            self.sync_alarm(
                now=now, flush_after=flush_after, flush_window=flush_window, max_wait=max_wait
            )
        elif not manual and (d.paused or d.closed_due_at is None or d.closed_due_at > now):
            return None
        head = d.closed[0]
        return FlushTicket(
            batch=head,
            reason="manual" if manual else head.reason,
            ticket=self.next_ticket(fresh=manual),
        )

    def _is_head(self, flush: FlushTicket) -> bool:
        return bool(
            self.d.live and self.d.closed and self.d.closed[0].batch_no == flush.batch.batch_no
        )

    def flush_succeeded(
        self,
        flush: FlushTicket,
        *,
        now: datetime,
        duration: float,
        flush_after: timedelta,
        flush_window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> bool:
        """Commit a flush whose handler returned; False if its batch is gone (cleared)."""
        if not self._is_head(flush):
            return False
        self.record_success(flush.ticket, handler="execute", now=now, duration=duration)
        self.trigger_event(
            self.Flushed,
            timestamp=now,
            batch_no=flush.batch.batch_no,
            reason=flush.reason,
            event_count=flush.batch.event_count,
        )
        self.sync_alarm(
            now=now, flush_after=flush_after, flush_window=flush_window, max_wait=max_wait
        )
        return True

    def flush_failed(
        self,
        flush: FlushTicket,
        error: BaseException,
        *,
        now: datetime,
        retry_at: datetime | None,
        exhausted: ExhaustedAction | None,
        flush_after: timedelta,
        flush_window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> bool:
        """Commit a flush whose handler raised; the batch is kept.

        With ``retry_at`` the batch waits for its retry (same reason). Else it
        is paused (status ``failed``) unless ``exhausted`` is ``terminate``;
        ``exhausted`` is None when the job has no retry policy. ``continue``
        (meant for continuous jobs) pauses too: a batch is never dropped silently.
        """
        if not self._is_head(flush):
            return False
        if exhausted == "continue":
            exhausted = "pause"
        self.record_failure(
            flush.ticket,
            error,
            handler="execute",
            now=now,
            retry_at=retry_at,
            flush_reason=flush.reason,
        )
        if retry_at is None and exhausted is not None:
            self.record_exhausted(flush.ticket, exhausted, now=now)
            if exhausted == "terminate":
                self.terminate(now=now, reason="retries exhausted")
                return True
        self.sync_alarm(
            now=now, flush_after=flush_after, flush_window=flush_window, max_wait=max_wait
        )
        return True

    def due_now(self, *, now: datetime) -> bool:
        """Make the next flush due ``now`` (a runtime runs it): the oldest closed batch
        (resumed if paused, brought forward if waiting for a retry), else the open
        batch, closed as ``manual``. False if nothing is buffered."""
        d = self.d
        if not d.live:
            return False
        if d.closed:
            if d.paused or d.closed_due_at is None or d.closed_due_at > now:
                self.trigger_event(self.Resumed, timestamp=now, at=now)
        elif d.event_count:
            self.close_batch("manual", now=now)
        else:
            return False
        self.set_alarm(now, now=now)
        return True

    # ---- under a policy: what the runtime calls ----------------------------------

    @classmethod
    def collect(
        cls,
        existing: DebounceInstance | None,
        job: str,
        instance_id: str,
        event: Any,
        *,
        now: datetime,
        new_state: Any,
        idempotency_key: str | None,
        policy: DebouncePolicy,
        type_version: int = 1,
    ) -> tuple[DebounceInstance, bool]:
        """:meth:`add` under ``policy``; the event and state are JSON of ``type_version``."""
        return cls.add(
            existing,
            job,
            instance_id,
            event,
            now=now,
            new_state=new_state,
            idempotency_key=idempotency_key,
            window=policy.idempotency_window,
            flush_after=policy.flush_after,
            max_events=policy.max_events,
            type_version=type_version,
            flush_window=policy.window,
            max_wait=policy.max_wait,
            max_backlog=policy.max_backlog,
        )

    def plan_flush(
        self, *, now: datetime, manual: bool, policy: DebouncePolicy
    ) -> FlushTicket | None:
        """:meth:`begin_flush` under ``policy``."""
        return self.begin_flush(
            now=now,
            manual=manual,
            flush_after=policy.flush_after,
            flush_window=policy.window,
            max_wait=policy.max_wait,
        )

    def finish_flush(
        self,
        flush: FlushTicket,
        *,
        now: datetime,
        policy: DebouncePolicy,
        duration: float = 0.0,
        error: BaseException | None = None,
        exhausted: ExhaustedAction | None = None,
    ) -> RunEnd:
        """Record how ``flush`` ended (``error`` None: it returned).

        When the retries ran out and the policy has an ``on_exhausted`` hook,
        nothing is recorded and :attr:`RunEnd.ASK_EXHAUSTED` asks for its
        decision: call again with it as ``exhausted``.
        """
        if error is None:
            ok = self.flush_succeeded(
                flush,
                now=now,
                duration=duration,
                flush_after=policy.flush_after,
                flush_window=policy.window,
                max_wait=policy.max_wait,
            )
            return RunEnd.DONE if ok else RunEnd.STALE
        retry = policy.retry
        retry_at = self.plan_retry(flush.ticket, retry, now=now)
        if retry_at is None and retry is not None and exhausted is None:
            hook = retry.on_exhausted
            if callable(hook):
                return RunEnd.ASK_EXHAUSTED
            exhausted = hook
        self.flush_failed(
            flush,
            error,
            now=now,
            retry_at=retry_at,
            exhausted=exhausted,
            flush_after=policy.flush_after,
            flush_window=policy.window,
            max_wait=policy.max_wait,
        )
        return RunEnd.RETRY if retry_at is not None else RunEnd.DONE

    def clear(self, *, now: datetime) -> int:
        """Drop every buffered event unprocessed; returns how many (0: nothing recorded)."""
        discarded = self.buffered_events if self.d.live else 0
        if discarded:
            self.trigger_event(self.Cleared, timestamp=now, discarded_events=discarded)
            self.set_alarm(None, now=now)
        return discarded
