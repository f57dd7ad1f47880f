"""The reference model of a task job: events, alarms and the idle/error hooks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, final

from durable_jobs._client import SendResult, TaskState, TaskStatus, TriggerResult
from durable_jobs._definitions.jobs import TaskJob
from durable_jobs._domain.ids import Kind
from durable_jobs.testing._models_base import UNCHANGED, ExpectedRun, _Model

__all__ = ["TaskHook", "TaskModel", "TaskStep", "TaskView"]


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
        # Recorded, the state unchanged, the key not kept; the chain's failures recorded.
        chain = self.runs.get(instance_id, [])[len(runs_before) :]
        if before is None:
            self.instances.pop(instance_id, None)
        else:
            self.instances[instance_id] = before
        self.runs[instance_id] = runs_before
        failed, _ = self._receive(instance_id, None)
        self.instances[instance_id] = failed
        # Each failure of the chain, in order: on_event's (or a later handler's), then
        # that of an on_error that raised in turn; nothing the chain did besides.
        for run in chain:
            if run.outcome == "failed":
                self._record(
                    instance_id,
                    ExpectedRun(run.handler, failed.run_count, 1, "failed", self.now),
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
