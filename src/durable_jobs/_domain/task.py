"""Task instances: react to events, schedule themselves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from durable_jobs._domain.instance import (
    Handler,
    Intents,
    JobInstance,
    RunTicket,
    register_aggregate,
)

__all__ = ["Failed", "TaskInstance"]


@dataclass(frozen=True)
class Failed:
    """A handler's failure that ``on_error`` is handling: recorded once it has decided."""

    handler: Handler
    error: BaseException
    at: datetime


@register_aggregate
class TaskInstance(JobInstance):
    """One instance of a task job.

    A ``send`` records the event (:meth:`receive`), then the runtime runs
    ``on_event`` and commits its intents with :meth:`apply_intents` (keeping the
    current alarm unless the handler changed it). An alarm-fired ``execute``
    commits with ``alarm=None`` (the alarm was used), a ``trigger`` keeps the
    alarm. If no alarm is left, ``on_idle`` runs and is committed the same way.
    """

    kind = "task"

    @property
    def status(self) -> str:
        """``active`` (an alarm is set), ``idle`` or ``terminated``."""
        if not self.d.live:
            return "terminated"
        return "active" if self.d.alarm_at is not None else "idle"

    @classmethod
    def receive(
        cls,
        existing: TaskInstance | None,
        job: str,
        instance_id: str,
        event: Any,
        *,
        now: datetime,
        idempotency_key: str | None,
        window: timedelta,
        type_version: int = 1,
    ) -> tuple[TaskInstance, bool]:
        """Record a validated event, creating (or restarting) the instance; True if created.

        ``type_version`` is the job's version the event was validated with.
        """
        created = existing is None or not existing.live
        inst = cls.live_instance(
            existing, job, instance_id, now=now, state=None, type_version=type_version
        )
        inst.record_event(
            event,
            now=now,
            idempotency_key=idempotency_key,
            window=window,
            type_version=type_version,
        )
        return inst, created

    # ---- one handler's outcome, and which handler follows ------------------------

    def handler_failed(
        self,
        ticket: RunTicket,
        error: BaseException,
        *,
        handler: Handler,
        now: datetime,
        alarm: datetime | None,
        has_on_error: bool,
        failed: Failed | None = None,
    ) -> Handler | None:
        """Record a failed handler; the handler to run next (``on_error``) or None.

        A failure that ``on_error`` takes over is recorded once ``on_error`` has
        returned (see :meth:`handler_succeeded`), so the record can say whether
        it scheduled a retry; ``failed`` is that earlier failure when this is
        ``on_error`` failing in turn. Unless ``on_error`` takes it over, the alarm
        becomes ``alarm``.
        """
        if failed is not None:
            self.record_failure(
                ticket, failed.error, handler=failed.handler, now=failed.at, retry_at=None
            )
        if has_on_error and handler != "on_error":
            return "on_error"
        self.record_failure(ticket, error, handler=handler, now=now, retry_at=None)
        self.apply_intents(Intents(), now=now, alarm=alarm)
        return None

    def handler_succeeded(
        self,
        ticket: RunTicket,
        intents: Intents,
        *,
        handler: Handler,
        now: datetime,
        duration: float,
        alarm: datetime | None,
        has_on_idle: bool,
        failed: Failed | None = None,
    ) -> Handler | None:
        """Record a handler that returned; the handler to run next (``on_idle``) or None.

        ``failed`` is the failure this ``on_error`` handled: it is recorded first,
        as retried when it was an ``execute`` and ``on_error`` set an alarm (the
        next ``execute`` is then that run's next try). ``on_idle`` follows a
        handler (other than itself) that left the live instance without an alarm.
        """
        if failed is not None:
            retry_at = None
            if failed.handler == "execute" and not intents.terminate and intents.schedule_changed:
                retry_at = intents.schedule
            self.record_failure(
                ticket, failed.error, handler=failed.handler, now=failed.at, retry_at=retry_at
            )
        self.record_success(ticket, handler=handler, now=now, duration=duration)
        self.apply_intents(intents, now=now, alarm=alarm)
        if has_on_idle and handler != "on_idle" and self.live and self.d.alarm_at is None:
            return "on_idle"
        return None

    def idle_ticket(self) -> RunTicket:
        """The ticket of an ``on_idle`` call."""
        return RunTicket(self.d.run_count, 1, self.d.generation)

    def retry_scheduled(
        self, *, failed: bool, by_alarm: bool, alarm_before: datetime | None
    ) -> bool:
        """After a failed ``execute``: whether ``on_error`` scheduled a retry (an alarm that
        is not the one a ``trigger`` kept)."""
        alarm = self.d.alarm_at if self.d.live else None
        return failed and alarm is not None and (by_alarm or alarm != alarm_before)
