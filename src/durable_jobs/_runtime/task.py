"""Task runs: ``on_event`` for each event sent, ``execute`` when the alarm is due,
``on_error`` after a failure and ``on_idle`` when a handler left no alarm."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from durable_jobs._definitions.contexts import TaskContext
from durable_jobs._definitions.jobs import TaskJob
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.instance import Handler, Intents, RunTicket, error_repr
from durable_jobs._domain.statements import Statement, Writes
from durable_jobs._domain.task import Failed, TaskInstance
from durable_jobs._errors import HandlerError
from durable_jobs._runtime.cache import clone
from durable_jobs._runtime.handlers import Outcome
from durable_jobs._runtime.locks import Busy
from durable_jobs._store.base import StatementFailed

if TYPE_CHECKING:
    from durable_jobs._runtime.runtime import Runtime

__all__ = ["TaskRunner"]


class _Step:
    """One handler call of a chain: what it came to, and the statements it recorded."""

    __slots__ = ("end", "outcome", "role", "started", "statements", "ticket")

    def __init__(
        self,
        role: Handler,
        outcome: Outcome,
        started: datetime,
        end: datetime,
        statements: list[Statement],
        *,
        ticket: RunTicket,
    ) -> None:
        self.role = role
        #: The run (and try) the call was.
        self.ticket = ticket
        self.outcome = outcome
        self.started = started
        self.end = end
        #: Its ``ctx.execute`` statements, kept only if it succeeded.
        self.statements = statements


class _Chain:
    """What a chain of task handler calls came to."""

    __slots__ = ("error", "failed", "fatal", "idled", "statements", "steps")

    def __init__(self) -> None:
        #: The last handler's error, if it was left unhandled.
        self.error: BaseException | None = None
        #: A fatal error (SystemExit, ...) seen on the way, to raise once committed.
        self.fatal: BaseException | None = None
        #: Whether any handler of the chain failed, and whether on_idle ran.
        self.failed = False
        self.idled = False
        #: The ``ctx.execute`` statements of the handlers that succeeded, in order.
        self.statements: list[Statement] = []
        #: Each handler call, in order.
        self.steps: list[_Step] = []

    @property
    def failing(self) -> Handler:
        """The handler whose failure was left unhandled (the chain's last one)."""
        return self.steps[-1].role

    def blame(self, statement: int | None) -> int:
        """The index of the step that recorded the chain's ``statement``-th statement;
        the first step when that is unknown."""
        if statement is None:
            return 0
        first = 0
        for k, step in enumerate(self.steps):
            first += len(step.statements)
            if statement < first:
                return k
        return 0

    def run_of(self, failed: StatementFailed) -> tuple[int, int]:
        """The run count and attempt of the handler that recorded ``failed``'s statement."""
        ticket = self.steps[self.blame(failed.statement)].ticket
        return ticket.run_count, ticket.attempt


#: Commits a chain may take: a chain has at most four handlers (``on_event``,
#: ``on_error``, ``on_idle``, ``on_error``) and each failing statement moves the
#: failure on to a later one. The last try commits the first handler's failure alone;
#: it comes sooner (the third) when the store cannot tell which statement failed.
_SETTLES = 6
_SETTLES_BLIND = 3


def _settle(
    chain: _Chain, failed: StatementFailed, settle: int
) -> tuple[list[_Step], BaseException, bool]:
    """After ``chain``'s statement failed on try ``settle``: the handlers to keep as
    they were, the error the next one (the one that recorded it) fails with, and
    whether the next try is the last: it keeps none, the chain's first handler fails,
    and no handler follows it."""
    tries = _SETTLES if failed.statement is not None else _SETTLES_BLIND
    if settle + 2 >= tries:
        return [], failed.error, True
    return chain.steps[: chain.blame(failed.statement)], failed.error, False


class TaskRunner:
    """The task jobs of one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _ctx(
        self,
        job: TaskJob[Any, Any],
        agg: TaskInstance,
        writes: Writes,
        alarm: datetime | None,
        *,
        started: datetime,
        counted: bool,
    ) -> TaskContext[Any]:
        """The context of one handler call started at ``started`` (``counted``: it sees
        its own call counted in ``execute_count``); its ``ctx.execute`` statements go to
        ``writes``."""
        rt = self.rt
        d = agg.d
        codec = job.state_codec
        state = d.state
        return TaskContext(
            codec=codec,
            state=None if state is None else rt.decode_state(codec, agg, state, d.state_version),
            instance_id=d.instance_id,
            job_name=job.name,
            now=rt.clock.now,
            scheduled_at=alarm,
            event_count=d.event_count,
            execute_count=d.execute_count + 1 if counted else d.execute_count,
            created_at=d.created_at,
            writes=writes,
            started=started,
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
        replay: Sequence[_Step] = (),
        failed_with: BaseException | None = None,
        follow_up: bool = True,
        due_at: datetime | None = None,
    ) -> _Chain:
        """Run one task handler on ``agg`` and record its outcome, then the handler
        the domain says follows (``on_error`` after a failure, ``on_idle`` when no
        alarm is left). ``alarm`` is what the alarm becomes unless a handler
        changes it.

        After a statement failed at the commit: the chain's first handlers are
        not called again but come to what they came to before (``replay``, with
        their statements), and the next one, whose statement failed, fails with
        ``failed_with`` as if it had raised it; the chain goes on from there.
        Without ``follow_up`` no handler follows that one.
        """
        rt = self.rt
        clock = rt.clock
        chain = _Chain()
        replayed = len(replay)
        failed: Failed | None = None
        link = agg.d.alarm_trace
        while True:
            step = len(chain.steps)
            if step < replayed:
                done = replay[step]
                assert done.role == role, (done.role, role)
                outcome, started, end = done.outcome, done.started, done.end
                statements = done.statements
            elif step == replayed and failed_with is not None:
                started = clock.now()
                outcome, failed_with = Outcome(error=failed_with), None
                end = clock.now()
                statements = []
            else:
                started = clock.now()
                # execute (and the on_error of a failed one) sees its own call counted.
                ctx = self._ctx(
                    job,
                    agg,
                    # What rt.writes() makes, kept here to read its statements afterwards.
                    writes := Writes(supported=rt.store.supports_statements),
                    alarm,
                    started=started,
                    counted=role == "execute"
                    or (failed is not None and failed.handler == "execute"),
                )
                outcome = await rt.handlers.call(
                    job,
                    role,
                    fn,
                    *args,
                    ctx,
                    instance_id=agg.d.instance_id,
                    lock=agg._id,
                    then=ctx.intents,
                    run_count=ticket.run_count,
                    attempt=ticket.attempt,
                    due_at=due_at,
                    link=link,
                    started=started,
                )
                # The call read the clock as it ended (what its duration was measured to).
                end = outcome.ended or clock.now()
                statements = writes.statements if outcome.error is None else []
            due_at = None  # the chain's next handlers were not started by the alarm
            chain.steps.append(_Step(role, outcome, started, end, statements, ticket=ticket))
            error = outcome.error
            if error is not None and not isinstance(error, Exception) and chain.fatal is None:
                chain.fatal = error  # Outcome.fatal: raised once the chain is committed
            last = not follow_up and step >= replayed
            if error is not None:
                chain.failed = True
                chain.error = error
                follow = agg.handler_failed(
                    ticket,
                    error,
                    handler=role,
                    now=end,
                    alarm=alarm,
                    has_on_error=job.error_handler is not None and not last,
                    failed=failed,
                )
            else:
                chain.error = None
                chain.statements.extend(statements)
                intents: Intents = outcome.value
                follow = agg.handler_succeeded(
                    ticket,
                    intents,
                    handler=role,
                    now=end,
                    duration=(end - started).total_seconds(),
                    alarm=alarm,
                    # Once per chain: an on_idle that fails into an on_error that
                    # leaves no alarm must not start over.
                    has_on_idle=job.idle_handler is not None and not chain.idled and not last,
                    failed=failed,
                )
            if last:
                return chain
            if follow == "on_error" and job.error_handler is not None and error is not None:
                failed = Failed(role, error, end)
                role, fn, args = follow, job.error_handler, (error,)
            elif follow == "on_idle" and job.idle_handler is not None:
                failed = None
                role, fn, args = follow, job.idle_handler, ()
                ticket, alarm = agg.idle_ticket(), None
                chain.idled = True
            else:
                return chain

    async def _save(
        self,
        agg: TaskInstance,
        committed: TaskInstance | None,
        chain: _Chain,
        statements: list[Statement],
        *,
        schedule_point: bool = True,
    ) -> StatementFailed | None:
        """Commit ``agg`` with ``chain``'s ``statements``; the failure if one of them
        failed (then nothing is committed). ``schedule_point``: see :meth:`Runtime.save`."""
        try:
            await self.rt.save(
                agg,
                before=committed,
                statements=statements,
                schedule_point=schedule_point,
                run=chain.run_of,
            )
        except StatementFailed as failed:
            return failed
        return None

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
            committed = await rt.load(TaskInstance, job.name, instance_id, uuid)
            now = rt.clock.now()
            if (
                key is not None
                and committed is not None
                and committed.is_duplicate(key, now=now, window=job.idempotency_window)
            ):
                return committed, False, True
            replay: list[_Step] = []
            failed_with: BaseException | None = None
            last = False
            fatal: BaseException | None = None

            def receive(idempotency_key: str | None) -> tuple[TaskInstance, bool]:
                # Decided from a copy of the committed instance, never the instance itself.
                prior = clone(committed) if committed is not None else None
                return TaskInstance.receive(
                    prior,
                    job.name,
                    instance_id,
                    event_json,
                    now=now,
                    idempotency_key=idempotency_key,
                    window=job.idempotency_window,
                    type_version=job.version,
                )

            for settle in range(_SETTLES):
                # Decided again from the committed instance after a statement failed.
                agg, created = receive(key)
                ticket = RunTicket(agg.d.run_count, 1, agg.d.generation)
                chain = await self._handle(
                    job,
                    agg,
                    "on_event",
                    job.event_handler,
                    event,
                    ticket=ticket,
                    alarm=agg.d.alarm_at,
                    replay=replay,
                    failed_with=failed_with,
                    follow_up=not last,
                )
                error, fatal = chain.error, fatal or chain.fatal
                if error is not None:
                    # Recorded, but the key is not kept: the caller's retry delivers it again.
                    # Every failure of the chain is recorded, in order: the handler's,
                    # then that of an on_error that raised in turn.
                    agg, created = receive(None)
                    for done in chain.steps:
                        if done.outcome.error is not None:
                            agg.record_failure(
                                ticket,
                                done.outcome.error,
                                handler=done.role,
                                now=done.end,
                                retry_at=None,
                            )
                failed = await self._save(
                    agg, committed, chain, chain.statements if error is None else []
                )
                if failed is None:
                    break
                replay, failed_with, last = _settle(chain, failed, settle)
            if fatal is not None:
                raise fatal
            if error is not None:
                failures = "failures" if len(chain.steps) > 1 else "failure"
                msg = (
                    f"{chain.failing} of task job {job.name!r} raised for instance "
                    f"{instance_id!r}: {error_repr(error)}. The event and the {failures} are "
                    "recorded; the state is unchanged."
                )
                raise HandlerError(msg) from error
            return agg, created, False

    async def execute(
        self, job: TaskJob[Any, Any], instance_id: str, *, by_alarm: bool
    ) -> tuple[bool, bool, bool]:
        """Run ``execute``: (triggered, terminated, retry_scheduled); HandlerError if unhandled."""
        rt = self.rt
        uuid = instance_uuid("task", job.name, instance_id)
        if by_alarm:
            # rt.hold(uuid, wait=False), one call less: the scheduler makes an alarm run
            # in the trio run serving the runtime, so only shutdown can refuse it.
            rt.refuse_own_instance(uuid)
            hold = rt.locks.hold(uuid, wait=False, on_taken=rt.check_closing)
        else:
            hold = rt.hold(uuid)
        async with hold as held:
            if not held:
                raise Busy
            committed = await rt.load(TaskInstance, job.name, instance_id, uuid)
            if committed is None or not committed.d.live:
                return False, False, False
            now = rt.clock.now()
            if by_alarm and (committed.d.alarm_at is None or committed.d.alarm_at > now):
                return False, False, False
            replay: list[_Step] = []
            failed_with: BaseException | None = None
            last = False
            fatal: BaseException | None = None
            for settle in range(_SETTLES):
                # Decided again from the committed instance after a statement failed.
                agg = clone(committed)
                # The alarm on_error set after a failed execute runs that run's next try.
                ticket = agg.next_ticket(fresh=not by_alarm)
                chain = await self._handle(
                    job,
                    agg,
                    "execute",
                    job.execute,
                    ticket=ticket,
                    alarm=None if by_alarm else agg.d.alarm_at,
                    replay=replay,
                    failed_with=failed_with,
                    follow_up=not last,
                    due_at=committed.d.alarm_at if by_alarm else None,
                )
                error, fatal = chain.error, fatal or chain.fatal
                # The statements of the handlers that succeeded: their changes are in agg.
                # An alarm run ends in the step that decided it (see Runtime.save).
                failed = await self._save(
                    agg, committed, chain, chain.statements, schedule_point=not by_alarm
                )
                if failed is None:
                    break
                replay, failed_with, last = _settle(chain, failed, settle)
            if fatal is not None:
                raise fatal
            if error is not None and not by_alarm:
                kept = (
                    "the state is unchanged"
                    if chain.failing == "execute"
                    else f"execute's changes are kept, {chain.failing}'s are not"
                )
                msg = (
                    f"{chain.failing} of task job {job.name!r} raised for instance "
                    f"{instance_id!r}: {error_repr(error)}. The failure is recorded; {kept}."
                )
                raise HandlerError(msg) from error
            retry = agg.retry_scheduled(
                failed=chain.failed, by_alarm=by_alarm, alarm_before=committed.d.alarm_at
            )
            return True, not agg.d.live, retry
