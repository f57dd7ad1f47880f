"""Reference models of the library's semantics (as the docs describe them), one per job kind.

Pure Python and synchronous: a model holds what each instance should look
like, plays client commands and the passing of time on it, and says what the
real runtime should answer. The state machines of
:mod:`durable_jobs.testing.machines` compare the two after every step.

A model knows the library's rules (schedules, windows, retries, misfires,
idempotency, counters) but not what a user's handlers do to the state: that
comes from the machine's ``model_*`` hooks, or is left unchecked.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, final

from durable_jobs._client import (
    AddResult,
    ClearResult,
    ContinuousStatus,
    DebounceStatus,
    FlushResult,
    SendResult,
    TaskState,
    TaskStatus,
    TriggerResult,
)
from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, TaskJob
from durable_jobs._domain.backoff import Retry, jitter_factor
from durable_jobs._domain.ids import Kind, instance_uuid
from durable_jobs._domain.schedules import Every

__all__ = [
    "TERMINATE",
    "UNCHANGED",
    "UNKNOWN",
    "ContinuousModel",
    "DebounceModel",
    "ExpectedRun",
    "ModelContext",
    "TaskModel",
    "TaskStep",
    "TaskView",
]

#: A model can say no more than this many runs happen at one instant (a runaway loop).
MAX_RUNS_PER_STEP = 10_000


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Returned by a ``model_execute`` hook: the handler terminates its instance.
TERMINATE: Any = _Marker("TERMINATE")
#: A :class:`TaskStep` field the handler leaves as it is.
UNCHANGED: Any = _Marker("UNCHANGED")
#: A state the model cannot know (the machine has no hook for it): not compared.
UNKNOWN: Any = _Marker("UNKNOWN")


@final
@dataclass(frozen=True, slots=True)
class ModelContext:
    """What a ``model_*`` hook knows about the run it models."""

    instance_id: str
    now: datetime
    run_count: int
    attempt: int


@final
@dataclass(frozen=True, slots=True)
class ExpectedRun:
    """A handler call the model expects the log to record (compared with a ``Run``)."""

    handler: str
    run_count: int
    attempt: int
    outcome: Literal["succeeded", "failed"]
    at: datetime


def retry_time(
    retry: Retry | None,
    *,
    kind: Kind,
    job: str,
    instance_id: str,
    run_count: int,
    attempt: int,
    first_failure_at: datetime,
    now: datetime,
) -> datetime | None:
    """When try ``attempt`` (which failed at ``now``) runs again, or None (the retry rules).

    The delay is the policy's backoff for that retry, times the jitter
    factor; the jitter is the runtime's deterministic one (a function of the
    instance and the run), so the model can predict exact times.
    """
    if retry is None or attempt >= retry.max_attempts:
        return None
    factor = 1.0
    if retry.jitter:
        seed = (instance_uuid(kind, job, instance_id).int & 0xFFFFFFFFFFFF) ^ run_count
        factor = jitter_factor(retry.jitter, seed, attempt)
        assert 1 - retry.jitter <= factor < 1 + retry.jitter
    try:
        at = now + retry.delay.delay(attempt) * factor
        if retry.max_duration is not None and at >= first_failure_at + retry.max_duration:
            return None
    except OverflowError:
        return None
    return at


class _FailureMirror:
    """The model's copy of a FailurePlan: which calls the machine made fail."""

    def __init__(self) -> None:
        self.planned: dict[tuple[str, str], int] = {}

    def plan(self, instance_id: str, times: int, handler: str = "execute") -> None:
        key = (instance_id, handler)
        self.planned[key] = self.planned.get(key, 0) + times

    def take(self, instance_id: str, handler: str = "execute") -> bool:
        key = (instance_id, handler)
        left = self.planned.get(key, 0)
        if left <= 0:
            return False
        if left == 1:
            del self.planned[key]
        else:
            self.planned[key] = left - 1
        return True

    def pending(self, instance_id: str, handler: str = "execute") -> int:
        return self.planned.get((instance_id, handler), 0)


class _Model:
    kind: Kind

    def __init__(self, job_name: str, now: datetime) -> None:
        self.job_name = job_name
        self.now = now
        self.failures = _FailureMirror()
        self.runs: dict[str, list[ExpectedRun]] = {}

    def _record(self, instance_id: str, run: ExpectedRun) -> None:
        self.runs.setdefault(instance_id, []).append(run)

    def _failed(
        self,
        instance_id: str,
        retry: Retry | None,
        *,
        run_count: int,
        attempt: int,
        first_failure_at: datetime | None,
    ) -> datetime | None:
        """Record a failed ``execute`` try; when it runs again, or None (the retry rules)."""
        now = self.now
        self._record(instance_id, ExpectedRun("execute", run_count, attempt, "failed", now))
        first = first_failure_at if attempt > 1 else None
        return retry_time(
            retry,
            kind=self.kind,
            job=self.job_name,
            instance_id=instance_id,
            run_count=run_count,
            attempt=attempt,
            first_failure_at=first or now,
            now=now,
        )

    def _due(self, target: datetime) -> list[tuple[datetime, str]]:
        raise NotImplementedError

    def _fire(self, instance_id: str) -> None:
        raise NotImplementedError

    def advance(self, target: datetime, *, running: bool = True) -> None:
        """Let time pass until ``target``; each alarm due meanwhile fires at its time.

        ``running=False``: the process is down, nothing fires (see :meth:`settle`
        after the restart).
        """
        for _ in range(MAX_RUNS_PER_STEP):
            due = self._due(target) if running else []
            if not due:
                self.now = max(self.now, target)
                return
            at, instance_id = min(due)
            self.now = max(self.now, at)
            self._fire(instance_id)
        msg = f"more than {MAX_RUNS_PER_STEP} runs before {target}: a runaway schedule?"
        raise AssertionError(msg)

    def settle(self) -> None:
        """Run everything that is due now (what ``wait_idle`` waits for)."""
        self.advance(self.now)


# ---- continuous --------------------------------------------------------------------------


@dataclass
class _Continuous:
    state: Any
    alarm: datetime | None
    run_count: int = 0
    attempt: int = 0
    first_failure_at: datetime | None = None
    paused: bool = False


class ContinuousModel(_Model):
    """Schedules, retries and misfires for one continuous job."""

    kind: Kind = "continuous"

    def __init__(
        self,
        job: ContinuousJob[Any],
        now: datetime,
        execute: Callable[[Any, ModelContext], Any] | None = None,
    ) -> None:
        super().__init__(job.name, now)
        self.job = job
        self._execute = execute
        self.instances: dict[str, _Continuous] = {}

    def start(self, instance_id: str, state: Any) -> tuple[bool, ContinuousStatus]:
        if instance_id not in self.instances:
            first = self.now if self.job.start_immediately else self._next(self.now)
            self.instances[instance_id] = _Continuous(state=state, alarm=first)
            return True, self.status(instance_id)
        return False, self.status(instance_id)

    def status(self, instance_id: str) -> ContinuousStatus:
        inst = self.instances.get(instance_id)
        if inst is None:
            return ContinuousStatus("not_found", 0, None)
        return ContinuousStatus("failed" if inst.paused else "running", inst.run_count, inst.alarm)

    def get_state(self, instance_id: str) -> Any:
        inst = self.instances.get(instance_id)
        return None if inst is None else inst.state

    def terminate(self, instance_id: str) -> bool:
        return self.instances.pop(instance_id, None) is not None

    def trigger(self, instance_id: str) -> TriggerResult:
        if instance_id not in self.instances:
            return TriggerResult(triggered=False, terminated=False, retry_scheduled=False)
        terminated, retry = self._run(instance_id, fresh=True)
        return TriggerResult(triggered=True, terminated=terminated, retry_scheduled=retry)

    def _next(self, after: datetime) -> datetime:
        return self.job.schedule.next_fire(after)

    def _due(self, target: datetime) -> list[tuple[datetime, str]]:
        return [
            (inst.alarm, instance_id)
            for instance_id, inst in self.instances.items()
            if inst.alarm is not None and inst.alarm <= target
        ]

    def _fire(self, instance_id: str) -> None:
        inst = self.instances[instance_id]
        due = inst.alarm
        assert due is not None
        if self.job.misfire == "skip" and inst.attempt == 0 and inst.run_count:
            # misfire="skip": drop the missed slots (late by a whole slot or more).
            schedule = self.job.schedule
            if self._next(due) <= self.now:
                if isinstance(schedule, Every):
                    slots = (self.now - due) // schedule.duration + 1
                    inst.alarm = due + slots * schedule.duration
                else:
                    inst.alarm = self._next(self.now)
                return
        self._run(instance_id, fresh=False)

    def _run(self, instance_id: str, *, fresh: bool) -> tuple[bool, bool]:
        """One run of ``execute``: (terminated, retry scheduled)."""
        inst = self.instances[instance_id]
        now = self.now
        if inst.attempt and not fresh:
            run_count, attempt = inst.run_count, inst.attempt + 1
        else:
            run_count, attempt = inst.run_count + 1, 1
        inst.run_count = run_count
        if self.failures.take(instance_id):
            retry = self.job.retry
            at = self._failed(
                instance_id,
                retry,
                run_count=run_count,
                attempt=attempt,
                first_failure_at=inst.first_failure_at,
            )
            inst.paused = False
            if at is not None:
                if attempt == 1 or inst.first_failure_at is None:
                    inst.first_failure_at = now
                inst.attempt = attempt
                inst.alarm = at
                return False, True
            inst.attempt = 0
            inst.first_failure_at = None
            if retry is None:  # better than the original: the next regular run
                inst.alarm = self._next(now)
                return False, False
            action = retry.on_exhausted
            if action == "terminate":
                del self.instances[instance_id]
                return True, False
            if action == "pause":
                inst.paused = True
                inst.alarm = None
            else:
                inst.alarm = self._next(now)
            return False, False
        self._record(instance_id, ExpectedRun("execute", run_count, attempt, "succeeded", now))
        inst.attempt = 0
        inst.first_failure_at = None
        inst.paused = False
        if self._execute is not None and inst.state is not UNKNOWN:
            ctx = ModelContext(instance_id, now, run_count, attempt)
            new = self._execute(inst.state, ctx)
            if new is TERMINATE:
                del self.instances[instance_id]
                return True, False
            inst.state = new
        else:
            inst.state = UNKNOWN
        inst.alarm = self._next(now)
        return False, False


# ---- debounce ----------------------------------------------------------------------------


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
        if job.max_wait is not None and inst.open_started + job.max_wait <= quiet:
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


# ---- task --------------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class TaskView:
    """What a task handler's context shows, for a ``model_*`` hook."""

    instance_id: str
    now: datetime
    state: Any
    event_count: int
    execute_count: int
    scheduled_at: datetime | None
    created_at: datetime


@final
@dataclass(frozen=True, slots=True)
class TaskStep:
    """What a task handler does, as a ``model_*`` hook says: its context calls.

    ``state``: the new state (:data:`UNCHANGED` if not set); ``schedule``: a
    ``timedelta`` from now, an aware ``datetime``, ``None`` for
    ``cancel_schedule()``, or :data:`UNCHANGED`; ``terminate``: whether it
    calls ``ctx.terminate()``.
    """

    state: Any = UNCHANGED
    schedule: Any = UNCHANGED
    terminate: bool = False


@dataclass
class _Task:
    created_at: datetime
    live: bool = True
    state: Any = None
    alarm: datetime | None = None
    event_count: int = 0
    # Calls of execute; its runs (a retry on_error scheduled is the same run);
    # the failed try whose retry is the next alarm (0: none).
    execute_count: int = 0
    run_count: int = 0
    attempt: int = 0
    keys: dict[str, datetime] = field(default_factory=dict)


TaskHook = Callable[..., TaskStep]


class TaskModel(_Model):
    """Events, alarms and idle/error hooks for one task job.

    The handlers' decisions are given by ``hooks``.

    ``hooks`` maps ``on_event`` to ``(event, view) -> TaskStep``, ``execute``
    and ``on_idle`` to ``(view) -> TaskStep``, and ``on_error`` to
    ``(failed_handler, view) -> TaskStep``.
    """

    kind: Kind = "task"

    def __init__(self, job: TaskJob[Any, Any], now: datetime, hooks: dict[str, TaskHook]) -> None:
        super().__init__(job.name, now)
        self.job = job
        self.hooks = hooks
        self.instances: dict[str, _Task] = {}

    def status(self, instance_id: str) -> TaskStatus:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.live:
            return TaskStatus("not_found", None, 0, 0, None)
        return TaskStatus(
            "active" if inst.alarm is not None else "idle",
            inst.alarm,
            inst.event_count,
            inst.execute_count,
            inst.created_at,
        )

    def get_state(self, instance_id: str) -> TaskState[Any] | None:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.live:
            return None
        return TaskState(inst.state, inst.alarm)

    def terminate(self, instance_id: str) -> bool:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.live:
            return False
        self._end(inst)
        return True

    @staticmethod
    def _end(inst: _Task) -> None:
        inst.live = False
        inst.state = None
        inst.alarm = None
        inst.attempt = 0

    def _receive(self, instance_id: str, key: str | None) -> tuple[_Task, bool]:
        inst = self.instances.get(instance_id)
        created = inst is None or not inst.live
        if inst is None:
            inst = _Task(created_at=self.now)
        elif not inst.live:
            inst = _Task(created_at=self.now, keys=dict(inst.keys))
        window = self.job.idempotency_window
        inst.keys = {k: at for k, at in inst.keys.items() if self.now < at + window}
        if key is not None:
            inst.keys[key] = self.now
        inst.event_count += 1
        return inst, created

    def send(
        self, instance_id: str, event: Any, key: str | None = None
    ) -> SendResult | BaseException:
        """The result of ``send``, or the HandlerError's cause it must raise."""
        inst = self.instances.get(instance_id)
        if key is not None and inst is not None:
            accepted = inst.keys.get(key)
            if accepted is not None and self.now < accepted + self.job.idempotency_window:
                alarm = inst.alarm if inst.live else None
                return SendResult(created=False, scheduled_at=alarm, duplicate=True)
        before = copy.deepcopy(inst)
        runs_before = list(self.runs.get(instance_id, []))
        new, created = self._receive(instance_id, key)
        self.instances[instance_id] = new
        error = self._handler(
            instance_id, new, "on_event", alarm=new.alarm, run_count=new.run_count, event=event
        )
        if error is None:
            return SendResult(created=created, scheduled_at=new.alarm, duplicate=False)
        # Recorded, the state unchanged, the key not kept; one failure record.
        if before is None:
            self.instances.pop(instance_id, None)
        else:
            self.instances[instance_id] = before
        self.runs[instance_id] = runs_before
        failed, _ = self._receive(instance_id, None)
        self.instances[instance_id] = failed
        self._record(
            instance_id,
            ExpectedRun("on_event", failed.run_count, 1, "failed", self.now),
        )
        return error

    def trigger(self, instance_id: str) -> TriggerResult | BaseException:
        """The result of ``trigger``, or the HandlerError's cause it must raise."""
        inst = self.instances.get(instance_id)
        if inst is None or not inst.live:
            return TriggerResult(triggered=False, terminated=False, retry_scheduled=False)
        before = inst.alarm
        failures_before = self._failures_recorded(instance_id)
        error = self._handler(
            instance_id, inst, "execute", alarm=inst.alarm, run_count=inst.run_count + 1
        )
        if error is not None:
            return error
        failed = self._failures_recorded(instance_id) > failures_before
        alarm = inst.alarm if inst.live else None
        retry = failed and alarm is not None and alarm != before
        return TriggerResult(triggered=True, terminated=not inst.live, retry_scheduled=retry)

    def _failures_recorded(self, instance_id: str) -> int:
        return sum(1 for r in self.runs.get(instance_id, []) if r.outcome == "failed")

    def _due(self, target: datetime) -> list[tuple[datetime, str]]:
        return [
            (inst.alarm, instance_id)
            for instance_id, inst in self.instances.items()
            if inst.live and inst.alarm is not None and inst.alarm <= target
        ]

    def _fire(self, instance_id: str) -> None:
        inst = self.instances[instance_id]
        # The alarm after a failed execute whose on_error scheduled it: the run's next try.
        if inst.attempt:
            run_count, attempt = inst.run_count, inst.attempt + 1
        else:
            run_count, attempt = inst.run_count + 1, 1
        self._handler(
            instance_id, inst, "execute", alarm=None, run_count=run_count, attempt=attempt
        )

    def _alarm_time(self, when: Any) -> datetime | None:
        if when is None:
            return None
        if isinstance(when, timedelta):
            return self.now + when
        if isinstance(when, datetime):
            return when.astimezone(UTC)
        return datetime.fromtimestamp(float(when), UTC)

    def _handler(
        self,
        instance_id: str,
        inst: _Task,
        handler: str,
        *,
        alarm: datetime | None,
        run_count: int,
        attempt: int = 1,
        event: Any = None,
        failed_handler: str = "",
    ) -> BaseException | None:
        """One handler call and what follows it (on_error, on_idle); the unhandled error."""
        now = self.now
        if handler == "execute":
            inst.execute_count += 1
            inst.run_count = run_count
            inst.attempt = 0
        view = TaskView(
            instance_id=instance_id,
            now=now,
            state=inst.state,
            event_count=inst.event_count,
            execute_count=inst.execute_count,
            scheduled_at=alarm,
            created_at=inst.created_at,
        )
        if self.failures.take(instance_id, handler):
            self._record(instance_id, ExpectedRun(handler, run_count, attempt, "failed", now))
            if self.job.error_handler is not None and handler != "on_error":
                return self._handler(
                    instance_id,
                    inst,
                    "on_error",
                    alarm=alarm,
                    run_count=run_count,
                    attempt=attempt,
                    failed_handler=handler,
                )
            if inst.live:
                inst.alarm = alarm
            return RuntimeError(f"injected failure of {handler}")
        hook = self.hooks[handler]
        if handler == "on_event":
            step = hook(event, view)
        elif handler == "on_error":
            step = hook(failed_handler, view)
        else:
            step = hook(view)
        self._record(instance_id, ExpectedRun(handler, run_count, attempt, "succeeded", now))
        if not inst.live:
            return None
        if step.state is not UNCHANGED:
            inst.state = step.state
        if step.terminate:
            self._end(inst)
            return None
        inst.alarm = alarm if step.schedule is UNCHANGED else self._alarm_time(step.schedule)
        if (
            failed_handler == "execute"
            and step.schedule is not UNCHANGED
            and inst.alarm is not None
        ):
            # on_error set the alarm after a failed execute: it runs that run's next try.
            inst.attempt = attempt
        if handler != "on_idle" and inst.alarm is None and self.job.idle_handler is not None:
            return self._handler(
                instance_id, inst, "on_idle", alarm=None, run_count=inst.run_count
            )
        return None
