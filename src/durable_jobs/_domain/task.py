"""Task instances: react to events, schedule themselves."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from durable_jobs._domain.instance import JobInstance, register_aggregate

__all__ = ["TaskInstance"]


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
