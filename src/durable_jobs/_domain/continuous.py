"""Continuous instances: a state that a handler updates on a schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.instance import (
    ExhaustedAction,
    Intents,
    JobInstance,
    RunTicket,
    register_aggregate,
)
from durable_jobs._domain.schedules import Schedule

__all__ = ["ContinuousInstance"]


@register_aggregate
class ContinuousInstance(JobInstance):
    """One instance of a continuous job."""

    kind = "continuous"

    @property
    def status(self) -> str:
        """``running`` (also while a retry waits), ``failed`` (paused) or ``terminated``."""
        if not self.d.live:
            return "terminated"
        return "failed" if self.d.paused else "running"

    @classmethod
    def start(
        cls,
        existing: ContinuousInstance | None,
        job: str,
        instance_id: str,
        *,
        now: datetime,
        state: Any,
        first_run_at: datetime,
        type_version: int = 1,
    ) -> tuple[ContinuousInstance, bool]:
        """Start an instance; a live one is returned unchanged (``created`` False)."""
        if existing is not None and existing.live:
            return existing, False
        inst = cls.live_instance(
            existing, job, instance_id, now=now, state=state, type_version=type_version
        )
        inst.set_alarm(first_run_at, now=now)
        return inst, True

    def complete_run(
        self,
        ticket: RunTicket,
        intents: Intents,
        *,
        now: datetime,
        duration: float,
        schedule: Schedule,
    ) -> bool:
        """Commit a run that returned: its state, then termination or the next run.

        False (nothing recorded) if the run is stale: the instance was
        terminated, or started again, while the run was in flight.
        """
        if not self.record_success(ticket, handler="execute", now=now, duration=duration):
            return False
        self.apply_intents(intents, now=now, alarm=schedule.next_fire(now))
        return True

    def fail_run(
        self,
        ticket: RunTicket,
        error: BaseException,
        *,
        now: datetime,
        schedule: Schedule,
        retry: Retry | None,
        retry_at: datetime | None,
        exhausted: ExhaustedAction | None = None,
    ) -> bool:
        """Commit a run that raised; none of its state changes are kept.

        ``retry_at`` comes from :meth:`plan_retry`. When it is None and there is
        a retry policy, ``exhausted`` (the policy's ``on_exhausted`` or what its
        hook decided) says what happens: ``terminate``, ``pause`` (status
        ``failed``, no alarm) or ``continue`` (next regular run). With no retry
        policy the next regular run is scheduled and the status stays ``running``.
        False (nothing recorded) if the run is stale.
        """
        if not self.record_failure(ticket, error, handler="execute", now=now, retry_at=retry_at):
            return False
        if retry_at is not None:
            self.set_alarm(retry_at, now=now)
            return True
        if retry is None:
            self.set_alarm(schedule.next_fire(now), now=now)
            return True
        action: ExhaustedAction = exhausted or "terminate"
        self.record_exhausted(ticket, action, now=now)
        if action == "terminate":
            self.terminate(now=now, reason="retries exhausted")
        elif action == "pause":
            self.set_alarm(None, now=now)
        else:
            self.set_alarm(schedule.next_fire(now), now=now)
        return True

    @staticmethod
    def first_run_at(schedule: Schedule, *, now: datetime, start_immediately: bool) -> datetime:
        """When a new instance runs first: now, or at its schedule's first time."""
        return now if start_immediately else schedule.next_fire(now)

    def reschedule(self, at: datetime, *, now: datetime) -> None:
        """Move the next run (misfire handling); nothing if it is already at ``at``."""
        self.set_alarm(at, now=now)
