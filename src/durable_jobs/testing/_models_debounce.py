"""The reference model of a debounce job: batches, flushes, retries and idempotency keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from durable_jobs._client import AddResult, ClearResult, DebounceStatus, FlushResult
from durable_jobs._definitions.jobs import DebounceJob
from durable_jobs._domain.ids import Kind
from durable_jobs._errors import BacklogFull
from durable_jobs.testing._models_base import UNKNOWN, ExpectedRun, _Model

__all__ = ["DebounceModel"]


@dataclass
class _Batch:
    batch_no: int
    event_count: int
    state: Any
    started_at: datetime
    reason: str


@dataclass
class _Debounce:
    live: bool = True
    open_count: int = 0
    open_state: Any = None
    open_started: datetime | None = None
    open_last: datetime | None = None
    closed: list[_Batch] = field(default_factory=list)
    closed_due: datetime | None = None
    paused: bool = False
    attempt: int = 0
    first_failure_at: datetime | None = None
    run_count: int = 0
    next_batch_no: int = 1
    keys: dict[str, datetime] = field(default_factory=dict)

    @property
    def buffered(self) -> int:
        return self.open_count + sum(b.event_count for b in self.closed) if self.live else 0


class DebounceModel(_Model):
    """Batches, flushes, retries and idempotency keys for one debounce job.

    A batch's flush is due ``flush_after`` after its first event (``fixed``)
    or after its latest (``sliding``, never later than ``max_wait`` after the
    first, and then for the reason ``max_wait``).

    Batches queue: a closed batch flushes before the next one, and while it
    waits (for its flush, a retry, or by hand when paused) the open batch
    gathers events but its own window is not armed. That is the library's
    reading of the rule "events added while a flush is running or waiting
    for a retry belong to the next batch", which does not say when that
    next batch flushes.
    """

    kind: Kind = "debounce"

    def __init__(
        self,
        job: DebounceJob[Any, Any],
        now: datetime,
        reduce: Callable[[Any, Any, int], Any] | None = None,
    ) -> None:
        super().__init__(job.name, now)
        self.job = job
        self._reduce = reduce
        self.instances: dict[str, _Debounce] = {}
        #: Successful flushes per instance: (reason, event_count, state).
        self.flushes: dict[str, list[tuple[str, int]]] = {}

    # -- queries --

    def alarm(self, inst: _Debounce) -> datetime | None:
        if not inst.live:
            return None
        if inst.closed:
            return None if inst.paused else inst.closed_due
        due = self._open_due(inst)
        return None if due is None else due[0]

    def _open_due(self, inst: _Debounce) -> tuple[datetime, str] | None:
        """The open batch's flush time and reason: a fixed window counts from its
        first event; a sliding one from its latest, capped by ``max_wait``."""
        if not inst.open_count or inst.open_started is None:
            return None
        job = self.job
        if job.window == "fixed":
            return inst.open_started + job.flush_after, "flush_after"
        assert inst.open_last is not None
        quiet = inst.open_last + job.flush_after
        if job.max_wait is not None and inst.open_started + job.max_wait < quiet:
            return inst.open_started + job.max_wait, "max_wait"
        return quiet, "flush_after"

    def _status_name(self, inst: _Debounce) -> Literal["debouncing", "failed", "idle"]:
        if inst.closed and inst.paused:
            return "failed"
        return "debouncing" if inst.closed or inst.open_count else "idle"

    def status(self, instance_id: str) -> DebounceStatus:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.live:
            return DebounceStatus("not_found", 0, None, None)
        started = inst.closed[0].started_at if inst.closed else inst.open_started
        return DebounceStatus(self._status_name(inst), inst.buffered, started, self.alarm(inst))

    def get_state(self, instance_id: str) -> Any:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.live:
            return None
        return inst.closed[0].state if inst.closed else inst.open_state

    # -- commands --

    def add(self, instance_id: str, event: Any, key: str | None = None) -> AddResult:
        now = self.now
        window = self.job.idempotency_window
        inst = self.instances.get(instance_id)
        if key is not None and inst is not None:
            accepted = inst.keys.get(key)
            if accepted is not None and now < accepted + window:
                return AddResult(inst.buffered, self.alarm(inst), created=False, duplicate=True)
        live = inst if inst is not None and inst.live else None
        count = (live.open_count if live is not None else 0) + 1
        bound, max_events = self.job.max_backlog, self.job.max_events
        if (
            live is not None
            and bound is not None
            and max_events is not None
            and len(live.closed) >= bound
            and count >= max_events
        ):
            raise BacklogFull(f"{instance_id!r}: {len(live.closed)} batches wait")
        if self.job.reducer is None:
            new_state = event
        elif self._reduce is None:
            new_state = UNKNOWN
        else:
            prior = live.open_state if live is not None and live.open_count else None
            new_state = UNKNOWN if prior is UNKNOWN else self._reduce(prior, event, count)
        if inst is None:
            inst = self.instances[instance_id] = _Debounce()
        elif not inst.live:  # a new generation keeps its keys and batch numbers
            inst = self.instances[instance_id] = _Debounce(
                keys=inst.keys, next_batch_no=inst.next_batch_no
            )
        opened = self._status_name(inst) == "idle"
        inst.keys = {k: at for k, at in inst.keys.items() if now < at + window}
        if key is not None:
            inst.keys[key] = now
        if inst.open_count == 0:
            inst.open_started = now
        inst.open_last = now
        inst.open_count += 1
        inst.open_state = new_state
        if self.job.max_events is not None and inst.open_count >= self.job.max_events:
            self._close(inst, "max_events")
        return AddResult(inst.buffered, self.alarm(inst), created=opened, duplicate=False)

    def flush(self, instance_id: str) -> FlushResult:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.live or not (inst.closed or inst.open_count):
            return FlushResult(flushed=False, event_count=0, reason="empty", retry_scheduled=False)
        if not inst.closed:
            self._close(inst, "manual")
        head = inst.closed[0]
        flushed, retry = self._run_flush(instance_id, inst, "manual", (inst.run_count + 1, 1))
        return FlushResult(
            flushed=flushed,
            event_count=head.event_count,
            reason="manual" if flushed else "failed",
            retry_scheduled=retry,
        )

    def clear(self, instance_id: str) -> ClearResult:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.buffered:
            return ClearResult(cleared=False, discarded_events=0)
        discarded = inst.buffered
        self.instances[instance_id] = _Debounce(
            keys=inst.keys, next_batch_no=inst.next_batch_no, run_count=inst.run_count
        )
        return ClearResult(cleared=True, discarded_events=discarded)

    # -- time --

    def _close(self, inst: _Debounce, reason: str) -> None:
        assert inst.open_started is not None
        inst.closed.append(
            _Batch(inst.next_batch_no, inst.open_count, inst.open_state, inst.open_started, reason)
        )
        if len(inst.closed) == 1:
            inst.closed_due = self.now
        inst.next_batch_no += 1
        inst.open_count = 0
        inst.open_state = None
        inst.open_started = None
        inst.open_last = None

    def _due(self, target: datetime) -> list[tuple[datetime, str]]:
        due = []
        for instance_id, inst in self.instances.items():
            at = self.alarm(inst)
            if at is not None and at <= target:
                due.append((at, instance_id))
        return due

    def _fire(self, instance_id: str) -> None:
        inst = self.instances[instance_id]
        if not inst.closed:
            due = self._open_due(inst)
            assert due is not None
            self._close(inst, due[1])
        head = inst.closed[0]
        ticket = (inst.run_count, inst.attempt + 1) if inst.attempt else (inst.run_count + 1, 1)
        self._run_flush(instance_id, inst, head.reason, ticket)

    def _run_flush(
        self, instance_id: str, inst: _Debounce, reason: str, ticket: tuple[int, int]
    ) -> tuple[bool, bool]:
        """The flush of the oldest closed batch: (flushed, retry scheduled)."""
        now = self.now
        run_count, attempt = ticket
        head = inst.closed[0]
        inst.run_count = run_count
        if not self.failures.take(instance_id):
            self._record(instance_id, ExpectedRun("execute", run_count, attempt, "succeeded", now))
            self.flushes.setdefault(instance_id, []).append((reason, head.event_count))
            inst.closed.pop(0)
            inst.closed_due = now if inst.closed else None
            inst.attempt = 0
            inst.first_failure_at = None
            inst.paused = False
            return True, False
        retry = self.job.retry
        at = self._failed(
            instance_id,
            retry,
            run_count=run_count,
            attempt=attempt,
            first_failure_at=inst.first_failure_at,
        )
        if at is not None:
            if attempt == 1 or inst.first_failure_at is None:
                inst.first_failure_at = now
            inst.attempt = attempt
        else:
            inst.attempt = 0
            inst.first_failure_at = None
        inst.paused = at is None  # kept, status failed (better than the original)
        inst.closed_due = at
        head.reason = reason  # a retry keeps the reason of the flush that failed
        if at is None and retry is not None:
            action = retry.on_exhausted
            inst.paused = action != "terminate"
            if action == "terminate":
                self.instances[instance_id] = _Debounce(
                    live=False, keys=inst.keys, next_batch_no=inst.next_batch_no
                )
        return False, at is not None
