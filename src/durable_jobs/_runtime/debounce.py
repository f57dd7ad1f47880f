"""Debounce runs: add events to a batch (through the reducer), flush, clear."""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from durable_jobs._definitions.contexts import DebounceContext, DebounceEventContext
from durable_jobs._definitions.jobs import DebounceJob
from durable_jobs._domain.debounce import DebounceInstance, FlushTicket
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.instance import error_repr
from durable_jobs._domain.policy import RunEnd
from durable_jobs._errors import HandlerError, ValidationError
from durable_jobs._runtime.cache import clone
from durable_jobs._runtime.exhausted import finish_exhausted
from durable_jobs._runtime.locks import Busy
from durable_jobs._store.base import StatementFailed
from durable_jobs._telemetry import log_fields

if TYPE_CHECKING:
    from durable_jobs._runtime.runtime import Runtime

__all__ = ["DebounceRunner"]

log = logging.getLogger("durable_jobs.runtime")


def _warn_backlog_full(job: DebounceJob[Any, Any], agg: DebounceInstance, now: datetime) -> None:
    """Once, as an instance's queue of closed batches reaches its bound."""
    log.warning(
        "Debounce job %r instance %r now holds %d closed batches waiting for their "
        "flush, its max_backlog; its flush is %s. Adds that would close another batch "
        "raise BacklogFull until a flush succeeds (fix the handler, then flush(id); or "
        "clear(id); or raise max_backlog).",
        job.name,
        agg.d.instance_id,
        len(agg.d.closed),
        agg.backlog_status(now=now),
        extra=log_fields("debounce", job.name, agg.d.instance_id),
    )


class DebounceRunner:
    """The debounce jobs of one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def add(
        self,
        job: DebounceJob[Any, Any],
        instance_id: str,
        event: Any,
        event_json: Any,
        key: str | None,
    ) -> tuple[DebounceInstance, bool, bool]:
        """(instance, opened a batch, duplicate)."""
        rt = self.rt
        uuid = instance_uuid("debounce", job.name, instance_id)
        async with rt.hold(uuid):
            committed = await rt.load(DebounceInstance, job.name, instance_id)
            now = rt.clock.now()
            live = committed if committed is not None and committed.live else None
            # Keys outlive a termination too (a restarted instance keeps them).
            if (
                key is not None
                and committed is not None
                and committed.is_duplicate(key, now=now, window=job.policy.idempotency_window)
            ):
                return committed, False, True
            policy = job.policy
            if live is not None:
                # Refused before the reducer runs: nothing of this add is done.
                live.check_backlog(
                    max_events=policy.max_events, max_backlog=policy.max_backlog, now=now
                )
            writes = rt.writes()
            run_count = (live.d.run_count if live is not None else 0) + 1
            if job.reducer is None:
                new_json = job.event_as_state(event_json, instance_id)
            else:
                prior = None
                if live is not None and live.d.event_count:
                    prior = rt.decode_state(
                        job.state_codec, live, live.d.state, live.d.state_version
                    )
                ctx: DebounceEventContext[Any, Any] = DebounceEventContext(
                    event=event,
                    state=prior,
                    event_count=(live.d.event_count if live is not None else 0) + 1,
                    instance_id=instance_id,
                    job_name=job.name,
                    writes=writes,
                )
                outcome = await rt.handlers.call(
                    job,
                    "reducer",
                    job.reducer,
                    ctx,
                    instance_id=instance_id,
                    lock=uuid,
                    # The flush the event's batch will be: its span says which run.
                    run_count=run_count,
                    attempt=1,
                )
                if outcome.fatal is not None:
                    raise outcome.fatal
                if outcome.error is not None:
                    msg = (
                        f"The on_event reducer of debounce job {job.name!r} raised for "
                        f"instance {instance_id!r}: {error_repr(outcome.error)}. The event was "
                        "not added."
                    )
                    raise HandlerError(msg) from outcome.error
                # A state that does not fit (or cannot be stored) is the reducer's
                # failure, not the caller's (the event was checked already), as for a
                # task's on_event: a HandlerError, and nothing is added.
                try:
                    new_json = job.state_codec.checked(outcome.value)[1]
                except ValidationError as invalid:
                    msg = (
                        f"The on_event reducer of debounce job {job.name!r} returned a state "
                        f"that does not fit for instance {instance_id!r}: {invalid} The event "
                        "was not added."
                    )
                    raise HandlerError(msg) from invalid
            agg = clone(committed) if committed is not None else None
            agg, opened = DebounceInstance.collect(
                agg,
                job.name,
                instance_id,
                event_json,
                now=now,
                new_state=new_json,
                idempotency_key=key,
                policy=job.policy,
                type_version=job.version,
            )
            try:
                # Said as the reducer's own failure is: the run its batch will be.
                await rt.save(
                    agg, before=committed, statements=writes.statements, run=(run_count, 1)
                )
            except StatementFailed as failed:
                msg = (
                    f"A statement the on_event reducer of debounce job {job.name!r} recorded "
                    f"for instance {instance_id!r} failed: {error_repr(failed.error)}. The "
                    "event was not added."
                )
                raise HandlerError(msg) from failed.error
            # Once per episode: as this add fills the queue behind a failed flush (a
            # flush that only runs is back-pressure, and says nothing).
            if agg.stuck_at_backlog_bound(policy.max_backlog) and not (
                live is not None and live.at_backlog_bound(policy.max_backlog)
            ):
                _warn_backlog_full(job, agg, now)
            return agg, opened, False

    async def flush(
        self, job: DebounceJob[Any, Any], instance_id: str, *, manual: bool
    ) -> tuple[bool, int, str, bool]:
        """One flush: (flushed, event_count, reason, retry_scheduled)."""
        rt = self.rt
        uuid = instance_uuid("debounce", job.name, instance_id)
        async with rt.hold(uuid, scope="flush", wait=manual) as held:
            if not held:
                raise Busy
            async with rt.hold(uuid):
                committed = await rt.load(DebounceInstance, job.name, instance_id)
                if committed is None:
                    return False, 0, "empty", False
                agg = clone(committed)
                ft = agg.plan_flush(now=rt.clock.now(), manual=manual, policy=job.policy)
                if ft is None:
                    return False, 0, "empty", False
                # Read before anything is written: a state no upcaster can read is a
                # StoreError that leaves the batch open and the alarm as they were.
                state = rt.decode_state(
                    job.state_codec, agg, ft.batch.state, ft.batch.state_version
                )
                await rt.save(agg, before=committed)
                due_at = None if manual else committed.d.alarm_at
            return await self._run_flush(
                job, instance_id, ft, state, due_at=due_at, link=committed.d.alarm_trace
            )

    async def _run_flush(
        self,
        job: DebounceJob[Any, Any],
        instance_id: str,
        ft: FlushTicket,
        state: Any,
        *,
        due_at: datetime | None,
        link: str | None,
    ) -> tuple[bool, int, str, bool]:
        rt = self.rt
        ctx: DebounceContext[Any] = DebounceContext(
            state=state,
            event_count=ft.batch.event_count,
            debounce_started_at=ft.batch.started_at,
            flush_reason=ft.reason,
            attempt=ft.ticket.attempt,
            instance_id=instance_id,
            job_name=job.name,
            writes=rt.writes(),
        )
        count = ft.batch.event_count
        started = rt.clock.now()
        outcome = await rt.handlers.call(
            job,
            "execute",
            job.execute,
            ctx,
            instance_id=instance_id,
            lock=instance_uuid("debounce", job.name, instance_id),
            lock_scope="flush",
            run_count=ft.ticket.run_count,
            attempt=ft.ticket.attempt,
            due_at=due_at,
            link=link,
        )
        error = outcome.error
        fatal = outcome.fatal
        statements = ctx._statements if error is None else []
        uuid = instance_uuid("debounce", job.name, instance_id)
        async with rt.hold(uuid, starting=False):
            end = rt.clock.now()
            policy = job.policy
            hook_failed: BaseException | None = None
            for _ in range(3):
                hook_statements = False
                committed = await rt.load(DebounceInstance, job.name, instance_id)
                if committed is None:  # pragma: no cover - the batch was committed above
                    return False, count, "empty", False
                agg = clone(committed)
                result = agg.finish_flush(
                    ft,
                    now=end,
                    policy=policy,
                    duration=(end - started).total_seconds(),
                    error=error,
                )
                if result is RunEnd.ASK_EXHAUSTED:
                    ctx._writes = rt.writes()  # the hook's own statements, not the flush's
                    result, fatal = await finish_exhausted(
                        rt,
                        job,
                        error,
                        ctx,
                        instance_id=instance_id,
                        fatal=fatal,
                        finish=partial(agg.finish_flush, ft, now=end, policy=policy, error=error),
                        statement_failed=hook_failed,
                        run_count=ft.ticket.run_count,
                        attempt=ft.ticket.attempt,
                        link=link,
                    )
                    statements = ctx._statements if hook_failed is None else []
                    hook_statements = bool(statements)
                try:
                    await rt.save(
                        agg,
                        before=committed,
                        statements=statements,
                        run=(ft.ticket.run_count, ft.ticket.attempt),
                    )
                except StatementFailed as failed:
                    if hook_statements:
                        # The hook failed, not the flush: its error stays the one recorded.
                        hook_failed, statements = failed.error, []
                    else:
                        # The flush fails with the database's error; none of its writes commit.
                        error, statements = failed.error, []
                    continue
                break
        if (
            error is not None
            and ft.ticket.attempt == 1
            and agg.at_backlog_bound(policy.max_backlog)
        ):
            # The queue was full before this flush first failed: now it is stuck.
            _warn_backlog_full(job, agg, end)
        if fatal is not None:
            raise fatal
        if error is None:
            ok = result is RunEnd.DONE
            return ok, count, "manual" if ok else "empty", False
        return False, count, "failed", result is RunEnd.RETRY

    async def clear(self, job: DebounceJob[Any, Any], instance_id: str) -> int:
        rt = self.rt
        uuid = instance_uuid("debounce", job.name, instance_id)
        # A flush in flight is waited for (its lock first, as a flush takes them): its
        # batch is no longer the buffer, and its outcome is recorded. Cleared then, it
        # ran on the batch and left no record of it.
        async with rt.hold(uuid, scope="flush"), rt.hold(uuid):
            committed = await rt.load(DebounceInstance, job.name, instance_id)
            if committed is None:
                return 0
            agg = clone(committed)
            discarded = agg.clear(now=rt.clock.now())
            await rt.save(agg, before=committed)
            return discarded
