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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from durable_jobs._client import ContinuousStatus, TriggerResult
from durable_jobs._definitions.jobs import ContinuousJob
from durable_jobs._domain.ids import Kind
from durable_jobs._domain.schedules import Every
from durable_jobs.testing._models_base import (
    TERMINATE,
    UNCHANGED,
    UNKNOWN,
    ExpectedRun,
    ModelContext,
    _Model,
)
from durable_jobs.testing._models_debounce import DebounceModel
from durable_jobs.testing._models_task import TaskModel, TaskStep, TaskView

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


# ---- continuous --------------------------------------------------------------------------


@dataclass
class _Continuous:
    state: Any
    alarm: datetime | None
    #: When it was started (its first alarm, if start_immediately).
    created: datetime | None = None
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
            self.instances[instance_id] = _Continuous(state=state, alarm=first, created=self.now)
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
        slot = inst.run_count or due != inst.created  # not the run a start made due
        if self.job.misfire == "skip" and inst.attempt == 0 and slot:
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
