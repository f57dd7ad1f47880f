"""Task runs: ``on_event`` for each event sent, ``execute`` when the alarm is due,
``on_error`` after a failure and ``on_idle`` when a handler left no alarm."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.instance import Handler, Intents, RunTicket
from durable_jobs._domain.task import TaskInstance
from durable_jobs._errors import HandlerError
from durable_jobs._registry import TaskJob
from durable_jobs._runtime.cache import clone
from durable_jobs._runtime.contexts import TaskContext
from durable_jobs._runtime.locks import Busy

if TYPE_CHECKING:
    from durable_jobs._runtime.runtime import Runtime

__all__ = ["TaskRunner"]

log = logging.getLogger("durable_jobs.runtime")


class TaskRunner:
    """The task jobs of one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _ctx(
        self,
        job: TaskJob[Any, Any],
        agg: TaskInstance,
        *,
        alarm: datetime | None,
        execute_count: int | None = None,
    ) -> TaskContext[Any]:
        rt = self.rt
        d = agg.d
        return TaskContext(
            codec=job.state_codec,
            state=rt.decode_state(job.state_codec, agg, d.state),
            instance_id=d.instance_id,
            job_name=job.name,
            now=rt.clock.now,
            scheduled_at=alarm,
            event_count=d.event_count,
            execute_count=d.execute_count if execute_count is None else execute_count,
            created_at=d.created_at,
        )

    async def _handle(
        self,
        job: TaskJob[Any, Any],
        agg: TaskInstance,
        role: Handler,
        fn: Callable[..., Any],
        *args: Any,
        ticket: RunTicket,
        alarm: datetime | None,
    ) -> tuple[BaseException | None, BaseException | None]:
        """Run one task handler on ``agg`` and record its outcome.

        Returns (the error if unhandled, a fatal error seen on the way). A failure
        goes to ``on_error`` if the job has one (its outcome is then the
        handler's); ``alarm`` is what the alarm becomes unless the handler
        changes it. Afterwards, if the instance is live with no alarm,
        ``on_idle`` runs.
        """
        rt = self.rt
        ctx = self._ctx(
            job,
            agg,
            alarm=alarm,
            execute_count=ticket.run_count if role == "execute" else None,
        )
        started = rt.clock.now()
        outcome = await rt.handlers.call(
            job, role, fn, *args, ctx, instance_id=agg.d.instance_id, then=lambda _: ctx.intents()
        )
        end = rt.clock.now()
        error = outcome.error
        if error is not None:
            agg.record_failure(ticket, error, handler=role, now=end, retry_at=None)
            if job.error_handler is not None and role != "on_error":
                unhandled, fatal = await self._handle(
                    job, agg, "on_error", job.error_handler, error, ticket=ticket, alarm=alarm
                )
                return unhandled, outcome.fatal or fatal
            agg.apply_intents(Intents(), now=end, alarm=alarm)
            return error, outcome.fatal
        agg.record_success(ticket, handler=role, now=end, duration=(end - started).total_seconds())
        agg.apply_intents(cast(Intents, outcome.value), now=end, alarm=alarm)
        idle = job.idle_handler
        if role != "on_idle" and agg.live and agg.d.alarm_at is None and idle is not None:
            return await self._handle(
                job,
                agg,
                "on_idle",
                idle,
                ticket=RunTicket(agg.d.run_count, 1, agg.d.generation),
                alarm=None,
            )
        return None, None

    async def send(
        self,
        job: TaskJob[Any, Any],
        instance_id: str,
        event: Any,
        event_json: Any,
        key: str | None,
    ) -> tuple[TaskInstance, bool, bool]:
        """(instance, created, duplicate); raises HandlerError if on_event failed unhandled."""
        rt = self.rt
        uuid = instance_uuid("task", job.name, instance_id)
        assert job.event_handler is not None
        async with rt.hold(uuid):
            committed = await rt.load(TaskInstance, job.name, instance_id)
            now = rt.clock.now()
            if (
                key is not None
                and committed is not None
                and committed.is_duplicate(key, now=now, window=job.idempotency_window)
            ):
                return committed, False, True
            agg = clone(committed) if committed is not None else None
            agg, created = TaskInstance.receive(
                agg,
                job.name,
                instance_id,
                event_json,
                now=now,
                idempotency_key=key,
                window=job.idempotency_window,
            )
            ticket = RunTicket(agg.d.run_count, 1, agg.d.generation)
            error, fatal = await self._handle(
                job,
                agg,
                "on_event",
                job.event_handler,
                event,
                ticket=ticket,
                alarm=agg.d.alarm_at,
            )
            if error is not None:
                # Recorded, but the key is not kept: the caller's retry delivers it again.
                agg = clone(committed) if committed is not None else None
                agg, created = TaskInstance.receive(
                    agg,
                    job.name,
                    instance_id,
                    event_json,
                    now=now,
                    idempotency_key=None,
                    window=job.idempotency_window,
                )
                agg.record_failure(
                    ticket, error, handler="on_event", now=rt.clock.now(), retry_at=None
                )
            await rt.save(agg, before=committed)
            if fatal is not None:
                raise fatal
            if error is not None:
                msg = (
                    f"on_event of task job {job.name!r} raised for instance {instance_id!r}: "
                    f"{error!r}. The event and the failure are recorded; the state is unchanged."
                )
                raise HandlerError(msg) from error
            return agg, created, False

    async def execute(
        self, job: TaskJob[Any, Any], instance_id: str, *, by_alarm: bool
    ) -> tuple[bool, bool, bool]:
        """Run ``execute``: (triggered, terminated, retry_scheduled); HandlerError if unhandled."""
        rt = self.rt
        uuid = instance_uuid("task", job.name, instance_id)
        async with rt.hold(uuid, wait=not by_alarm) as held:
            if not held:
                raise Busy
            committed = await rt.load(TaskInstance, job.name, instance_id)
            if committed is None or not committed.live:
                return False, False, False
            now = rt.clock.now()
            if by_alarm and (committed.d.alarm_at is None or committed.d.alarm_at > now):
                return False, False, False
            agg = clone(committed)
            ticket = agg.next_ticket(fresh=True)
            error, fatal = await self._handle(
                job,
                agg,
                "execute",
                job.execute,
                ticket=ticket,
                alarm=None if by_alarm else agg.d.alarm_at,
            )
            failed = error is not None or any(
                getattr(e, "NAME", "") == "run_failed" for e in agg.pending_events
            )
            await rt.save(agg, before=committed)
            if fatal is not None:
                raise fatal
            if error is not None and not by_alarm:
                msg = (
                    f"execute of task job {job.name!r} raised for instance {instance_id!r}: "
                    f"{error!r}. The failure is recorded; the state is unchanged."
                )
                raise HandlerError(msg) from error
            if error is not None:
                log.warning(
                    "execute of task job %r instance %r raised %r (recorded; no on_error)",
                    job.name,
                    instance_id,
                    error,
                )
            # A retry is pending if on_error set an alarm (not the one a trigger kept).
            alarm = agg.d.alarm_at if agg.live else None
            retry = failed and alarm is not None and (by_alarm or alarm != committed.d.alarm_at)
            return True, not agg.live, retry
