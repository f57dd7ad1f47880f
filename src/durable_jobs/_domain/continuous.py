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
from durable_jobs._domain.policy import ContinuousPolicy, RunEnd
from durable_jobs._domain.schedules import Schedule, catch_up

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

    # ---- a run, planned and finished under a policy ----------------------------

    def begin_run(
        self, *, now: datetime, manual: bool, policy: ContinuousPolicy
    ) -> RunTicket | None:
        """Plan a run of ``execute``: its ticket, or None if nothing runs now.

        An alarm run needs the alarm to be due. Under ``misfire="skip"`` an
        alarm that is a whole period late (and not a retry, nor the run a start
        made due at once) moves to the next scheduled time instead: the alarm
        changes and None is returned, whether the process was down or the clock
        jumped forward while it ran.
        A manual run (``trigger``) always runs, as a fresh run.
        """
        if not self.d.live:  # self.live, without the property call
            return None
        due = self.d.alarm_at
        if not manual:
            if due is None or due > now:
                return None
            # Not a retry, and a slot of the schedule: after a run, or a first alarm
            # that is not the start itself (start_immediately=False); not a run asked
            # for (a trigger made due while no runtime served the store, say).
            d = self.d
            if (
                policy.misfire == "skip"
                and d.attempt == 0
                and (d.run_count or due != d.created_at)
                and not d.alarm_manual
            ):
                at = catch_up(policy.schedule, due, now, "skip")
                if at > now:
                    self.reschedule(at, now=now)
                    return None
        return self.next_ticket(fresh=manual)

    def finish_run(
        self,
        ticket: RunTicket,
        *,
        now: datetime,
        policy: ContinuousPolicy,
        duration: float = 0.0,
        intents: Intents | None = None,
        error: BaseException | None = None,
        exhausted: ExhaustedAction | None = None,
    ) -> RunEnd:
        """Record how the run of ``ticket`` ended: ``intents`` if it returned, else ``error``.

        When the retries ran out and the policy has an ``on_exhausted`` hook,
        nothing is recorded and :attr:`RunEnd.ASK_EXHAUSTED` asks for its
        decision: call again with it as ``exhausted``.
        """
        if error is None:
            # complete_run(ticket, intents or Intents(), ...), one call less a run.
            if not self.record_success(ticket, handler="execute", now=now, duration=duration):
                return RunEnd.STALE
            self.apply_intents(intents or Intents(), now=now, alarm=policy.schedule.next_fire(now))
            return RunEnd.DONE
        retry = policy.retry
        retry_at = self.plan_retry(ticket, retry, now=now)
        if retry_at is None and retry is not None and exhausted is None:
            hook = retry.on_exhausted
            if callable(hook):
                return RunEnd.ASK_EXHAUSTED
            exhausted = hook
        ok = self.fail_run(
            ticket,
            error,
            now=now,
            schedule=policy.schedule,
            retry=retry,
            retry_at=retry_at,
            exhausted=exhausted,
        )
        if not ok:
            return RunEnd.STALE
        return RunEnd.RETRY if retry_at is not None else RunEnd.DONE

    def reschedule(self, at: datetime, *, now: datetime) -> None:
        """Move the next run (misfire handling); nothing if it is already at ``at``."""
        self.set_alarm(at, now=now)
