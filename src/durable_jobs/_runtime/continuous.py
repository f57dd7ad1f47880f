"""Continuous runs: start an instance, and run ``execute`` when its alarm is due."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from durable_jobs._definitions.contexts import ContinuousContext
from durable_jobs._definitions.jobs import ContinuousJob
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.instance import RunTicket
from durable_jobs._domain.policy import RunEnd
from durable_jobs._domain.statements import Writes
from durable_jobs._runtime.cache import clone
from durable_jobs._runtime.exhausted import finish_exhausted
from durable_jobs._runtime.locks import Busy
from durable_jobs._store.base import StatementFailed

if TYPE_CHECKING:
    from uuid import UUID

    from durable_jobs._runtime.runtime import Runtime

__all__ = ["ContinuousRunner"]


class ContinuousRunner:
    """The continuous jobs of one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def start(
        self, job: ContinuousJob[Any], instance_id: str, state_json: Any
    ) -> tuple[ContinuousInstance, bool]:
        rt = self.rt
        uuid = instance_uuid("continuous", job.name, instance_id)
        if not rt.locks.busy(uuid):
            # Taken only if free in every process; released like any call's (waited
            # for), so other processes can take the instance once start returns.
            async with rt.hold(uuid, wait=False, detached=False) as held:
                if held:
                    return await self._start(job, instance_id, uuid, state_json)
        # The instance is busy (a run in flight, here or in another process): one that
        # exists is returned as it is, without waiting for that run.
        rt.refuse_own_instance(uuid)
        committed = await rt.load(ContinuousInstance, job.name, instance_id, uuid)
        if committed is not None and committed.live:
            return committed, False
        async with rt.hold(uuid):
            return await self._start(job, instance_id, uuid, state_json)

    async def _start(
        self, job: ContinuousJob[Any], instance_id: str, uuid: UUID, state_json: Any
    ) -> tuple[ContinuousInstance, bool]:
        """``start`` with the instance's lock held."""
        rt = self.rt
        committed = await rt.load(ContinuousInstance, job.name, instance_id, uuid)
        if committed is not None and committed.live:
            return committed, False
        now = rt.clock.now()
        agg = clone(committed) if committed is not None else None
        policy = job.policy
        first = ContinuousInstance.first_run_at(
            policy.schedule, now=now, start_immediately=policy.start_immediately
        )
        agg, created = ContinuousInstance.start(
            agg,
            job.name,
            instance_id,
            now=now,
            state=state_json,
            first_run_at=first,
            type_version=job.version,
        )
        await rt.save(agg, before=committed)
        return agg, created

    def _context(
        self,
        job: ContinuousJob[Any],
        committed: ContinuousInstance,
        instance_id: str,
        ticket: RunTicket,
        *,
        hook: bool = False,
    ) -> ContinuousContext[Any]:
        """A handler's context for the run of ``ticket``, from the committed instance
        (``hook``: the context of its ``on_exhausted`` hook)."""
        d = committed.d
        ctx = ContinuousContext(
            codec=job.state_codec,
            state=self.rt.decode_state(job.state_codec, committed, d.state, d.state_version),
            instance_id=instance_id,
            job_name=job.name,
            run_count=ticket.run_count,
            attempt=ticket.attempt,
            writes=Writes(supported=self.rt.store.supports_statements),  # rt.writes()
        )
        if hook:
            ctx._exhausted_hook = True
        return ctx

    async def run(
        self, job: ContinuousJob[Any], instance_id: str, *, manual: bool
    ) -> tuple[bool, bool, bool]:
        """One run of ``execute``: (triggered, terminated, retry_scheduled)."""
        rt = self.rt
        uuid = instance_uuid("continuous", job.name, instance_id)
        if manual:
            rt.refuse_own_instance(uuid)  # a trigger from one of its own handlers
        # rt.hold(uuid, wait=manual), one call less. An alarm run is made by the
        # scheduler, in the trio run serving the runtime: only shutdown can refuse it.
        async with rt.locks.hold(
            uuid, wait=manual, on_taken=rt.check_open if manual else rt.check_closing
        ) as held:
            if not held:
                raise Busy
            committed = rt.cached(ContinuousInstance, uuid)  # no coroutine when cached
            if committed is None:
                committed = await rt.load(ContinuousInstance, job.name, instance_id, uuid)
            if committed is None or not committed.d.live:  # .live, without the property
                return False, False, False
            began = rt.clock.now()
            agg = clone(committed)
            ticket = agg.begin_run(now=began, manual=manual, policy=job.policy)
            if ticket is None:
                await rt.save(agg, before=committed)  # a misfire skip moved the alarm
                return False, False, False

            ctx = self._context(job, committed, instance_id, ticket)
            # The decision's time is the handler's start: one clock read less per run.
            started = began
            outcome = await rt.handlers.call(
                job,
                "execute",
                job.execute,
                ctx,
                instance_id=instance_id,
                lock=uuid,
                then=ctx._intents,
                run_count=ticket.run_count,
                attempt=ticket.attempt,
                due_at=None if manual else committed.d.alarm_at,
                link=committed.d.alarm_trace,
                started=started,
            )
            end = outcome.ended
            assert end is not None
            error = outcome.error
            # outcome.fatal and ctx._statements, without their property calls.
            fatal = error if error is not None and not isinstance(error, Exception) else None
            intents = outcome.value
            statements = ctx._writes.statements if error is None else []
            policy = job.policy
            hook_failed: BaseException | None = None
            for tries in range(3):
                hook_statements = False
                if tries:
                    # Decided again from the committed instance after a statement failed.
                    agg = clone(committed)
                    again = agg.begin_run(now=began, manual=manual, policy=policy)
                    assert again == ticket
                result = agg.finish_run(
                    ticket,
                    now=end,
                    policy=policy,
                    duration=(end - started).total_seconds(),
                    intents=intents,
                    error=error,
                )
                if result is RunEnd.ASK_EXHAUSTED:
                    # The hook sees the committed state, not the failed try's changes.
                    hook_ctx = self._context(job, committed, instance_id, ticket, hook=True)
                    result, fatal = await finish_exhausted(
                        rt,
                        job,
                        error,
                        hook_ctx,
                        instance_id=instance_id,
                        fatal=fatal,
                        finish=partial(
                            agg.finish_run, ticket, now=end, policy=policy, error=error
                        ),
                        statement_failed=hook_failed,
                        run_count=ticket.run_count,
                        attempt=ticket.attempt,
                        link=committed.d.alarm_trace,
                    )
                    # The hook's own statements, unless they failed already.
                    statements = hook_ctx._statements if hook_failed is None else []
                    hook_statements = bool(statements)
                try:
                    await rt.save(
                        agg,
                        before=committed,
                        statements=statements,
                        schedule_point=manual,
                        run=(ticket.run_count, ticket.attempt),
                    )
                except StatementFailed as failed:
                    if hook_statements:
                        # The hook failed, not the run: its error stays the one recorded.
                        hook_failed, statements = failed.error, []
                    else:
                        # The run fails with the database's error; none of its writes commit.
                        error, intents, statements = failed.error, None, []
                    continue
                break
            if fatal is not None:
                raise fatal
            return True, not agg.d.live, result is RunEnd.RETRY
