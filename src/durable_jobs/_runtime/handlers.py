"""The one place where the runtime calls application code.

Every handler call goes through :meth:`HandlerCalls.call`: a job's
``execute``, a task's ``on_event``, ``on_idle`` and ``on_error``, a
debounce job's ``on_event`` reducer and a retry policy's ``on_exhausted``
hook. Timeouts, cancellation and error mapping live here and nowhere else:

- A call that returns is a success; its value (after ``then``) is the outcome.
- An ``Exception`` is the call's failure.
- A call that runs past the job's ``timeout`` (``execute``, ``on_event``,
  ``on_idle``, ``on_error``; measured on the job's clock) is cancelled and
  fails with :class:`HandlerTimeout`.
- A ``trio.Cancelled`` that does not come from a cancellation of the call
  itself (one the handler caught elsewhere and re-raised) is the call's
  failure, as a :class:`HandlerError`; a real cancellation (shutdown) goes on.
- A ``KeyboardInterrupt`` (Ctrl+C arriving while the handler ran synchronous
  code: Python raises it wherever the main thread is; or a group holding one,
  from the handler's own nursery) is not the handler's failure: the runtime is
  told (``on_interrupt``, which shuts it down as for a Ctrl+C in the
  ``open_jobs`` block: the other runs get the grace), and the call raises it.
  The run it is part of commits nothing: an alarm run's alarm stays in the
  store (the run task lets the exception go, see ``Scheduler._alarm_run``), a
  client call's caller gets it.
- Any other ``BaseException`` (``SystemExit``, an application's own ...) is
  returned as a *fatal* outcome: the caller records it like any failure,
  commits, and then raises it, so that ``open_jobs`` ends with it while the
  history says what happened and the retry policy spaces the next try (a
  handler that calls ``sys.exit()`` on every run does not crash-loop the app).
"""

from __future__ import annotations

import heapq
import inspect
import logging
import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import trio

from durable_jobs._definitions.jobs import JobDefinition
from durable_jobs._domain.ids import Kind
from durable_jobs._domain.instance import ExhaustedAction, error_repr
from durable_jobs._errors import HandlerError, HandlerTimeout
from durable_jobs._runtime.clock import Clock
from durable_jobs._telemetry import _UNTRACED, log_fields, outcome_name, telemetry

if TYPE_CHECKING:
    from uuid import UUID

#: A handler the current task is calling, of which instance, while it runs:
#: ``(kind, job, instance_id, holds, outer)``: ``holds`` is the lock its call runs
#: under (``flush`` for a debounce flush, else ``instance``), ``outer`` the same for the
#: handler whose client call this handler's call is part of (a send's ``on_event`` runs
#: in the caller's task), or None. A client call that needs a lock held by a handler of
#: the chain would wait for a run that waits for it (see ``Runtime.refuse_own_instance``).
InHandler: TypeAlias = "tuple[Kind, str, str, str, InHandler | None]"


def _holds(kind: str, role: str) -> str:
    """The lock a handler call of ``role`` runs under: a debounce flush (``execute``)
    holds the flush lock only (adds go on meanwhile); every other call the instance's."""
    return "flush" if kind == "debounce" and role == "execute" else "instance"


IN_HANDLER: ContextVar[InHandler | None] = ContextVar("durable_jobs_in_handler", default=None)

__all__ = ["HandlerCalls", "Outcome", "Role", "interrupt_of"]

log = logging.getLogger("durable_jobs.runtime")

#: What an ``on_exhausted`` hook may return, by kind (and None, which pauses):
#: ``"continue"`` is for continuous jobs (a debounce batch is never dropped).
_EXHAUSTED_ACTIONS: dict[str, tuple[str, ...]] = {
    "continuous": ("terminate", "pause", "continue"),
}

Role = Literal["execute", "on_event", "on_idle", "on_error", "reducer", "on_exhausted"]
#: The roles a job's ``timeout`` bounds (its async handlers).
TIMED: frozenset[Role] = frozenset({"execute", "on_event", "on_idle", "on_error"})


@dataclass(slots=True)
class Outcome:
    """What one handler call came to."""

    value: Any = None
    #: The failure (None: the call succeeded).
    error: BaseException | None = None
    #: When the call ended, on the job's clock (what its duration was measured to).
    ended: datetime | None = None

    @property
    def fatal(self) -> BaseException | None:
        """A failure that is not an ``Exception`` (``SystemExit``, ...): to raise once it
        is recorded. (A ``KeyboardInterrupt`` is never an outcome: see the module.)"""
        error = self.error
        return error if error is not None and not isinstance(error, Exception) else None


class _Timer:
    __slots__ = ("at", "done", "fired", "scope")

    def __init__(self, at: datetime, scope: trio.CancelScope) -> None:
        self.at = at
        self.scope = scope
        self.done = False
        self.fired = False


def interrupt_of(error: BaseException) -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` that ``error`` is, or that a group ``error`` holds
    (the first), else None."""
    if isinstance(error, KeyboardInterrupt):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = interrupt_of(inner)
            if found is not None:
                return found
    return None


def _really_cancelled() -> bool:
    """Whether the current task is inside a cancelled scope (shutdown, say)."""
    return trio.current_effective_deadline() == -math.inf


async def _invoke(
    fn: Callable[..., Any], args: tuple[Any, ...], then: Callable[[Any], Any] | None
) -> Any:
    value = fn(*args)
    if type(value) is CoroutineType or inspect.isawaitable(value):
        value = await value
    return value if then is None else then(value)


class HandlerCalls:
    """Calls handlers (see the module) and enforces their timeouts on ``clock``."""

    def __init__(
        self, clock: Clock, on_interrupt: Callable[[KeyboardInterrupt], None] | None = None
    ) -> None:
        self.clock = clock
        #: Told of a call that raised a ``KeyboardInterrupt`` (see the module).
        self.on_interrupt = on_interrupt
        self._timers: list[tuple[datetime, int, _Timer]] = []
        self._seq = 0
        self._wake = trio.Event()
        #: Handler calls in progress.
        self.running = 0
        #: Raises :class:`LockLost` if the session holding an instance's lock (uuid,
        #: scope) is known lost (see :meth:`LockGuards.check`); set by the runtime.
        self.check_lock: Callable[[UUID, str], None] | None = None

    async def call(
        self,
        job: JobDefinition,
        role: Role,
        fn: Callable[..., Any],
        *args: Any,
        instance_id: str,
        then: Callable[[Any], Any] | None = None,
        run_count: int | None = None,
        attempt: int | None = None,
        due_at: datetime | None = None,
        link: str | None = None,
        started: datetime | None = None,
        lock: UUID | None = None,
        lock_scope: str = "instance",
    ) -> Outcome:
        """``fn(*args)`` (awaited if it returns an awaitable), then ``then(value)``.

        Returns its :class:`Outcome`; raises only a real cancellation or a
        ``KeyboardInterrupt`` (after telling ``on_interrupt``). The call is
        traced, measured and logged (see :mod:`durable_jobs._telemetry`): ``run_count``
        and ``attempt`` say which run it is, ``due_at`` is the time of the alarm that
        started it (an alarm run), ``link`` the stored traceparent of the client call
        that made it due. ``started``: the clock's time as the caller read it just
        before (else it is read here); the outcome says when the call ended.

        ``lock``: the instance whose ``lock_scope`` lock the call is made under; if its
        session is known lost by now, :class:`LockLost` is raised and ``fn`` is not
        called (it would run beside whoever took the instance over).
        """
        if lock is not None and self.check_lock is not None:
            self.check_lock(lock, lock_scope)
        kind, name = job.kind, job.name
        clock = self.clock
        started = started or clock.now()  # (a datetime is never false)
        if due_at is not None:
            telemetry.record_lateness(kind, name, (started - due_at).total_seconds())
        traced = telemetry.handler_call(
            kind, name, role, instance_id, run_count=run_count, attempt=attempt, link=link
        )
        if traced is _UNTRACED and (role not in TIMED or job.timeout is None):
            # No span (no tracer provider set: nothing to enter, finish or leave) and no
            # timeout: what _call does then, inline (a coroutine less on every run).
            self.running += 1
            inside = IN_HANDLER.set(
                (kind, name, instance_id, _holds(kind, role), IN_HANDLER.get())
            )
            try:
                value = fn(*args)
                if type(value) is CoroutineType or inspect.isawaitable(value):
                    value = await value
                if then is not None:
                    value = then(value)
            except trio.Cancelled as exc:
                if _really_cancelled():
                    raise
                outcome = Outcome(error=self._stray_cancel(job, role, instance_id, exc))
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, BaseExceptionGroup)) and self._interrupted(
                    job, role, instance_id, started, exc
                ):
                    raise
                outcome = Outcome(error=exc)
            else:
                outcome = Outcome(value=value)
            finally:
                IN_HANDLER.reset(inside)
                self.running -= 1
            error = outcome.error
            result = "succeeded" if error is None else outcome_name(error)
        elif traced is _UNTRACED:
            outcome = await self._call(
                job, role, fn, args, instance_id=instance_id, then=then, started=started
            )
            error = outcome.error
            result = "succeeded" if error is None else outcome_name(error)
        else:
            outcome = await self._traced(
                traced, job, role, fn, args, instance_id=instance_id, then=then, started=started
            )
            error = outcome.error
            result = outcome_name(error)
        ended = outcome.ended = clock.now()
        duration = (ended - started).total_seconds()
        telemetry.record_run(kind, name, role, result, duration)
        if error is not None:
            log.warning(
                "%s of %s job %r instance %r %s: %s",
                role,
                kind,
                name,
                instance_id,
                result.replace("_", " "),
                error_repr(error),
                # Where in the handler it raised (a timeout's or an interruption's
                # traceback is the runtime's own: nothing to show).
                exc_info=error if result == "failed" else None,
                extra=log_fields(kind, name, instance_id, run_count=run_count, attempt=attempt),
            )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s of %s job %r instance %r succeeded in %.3fs",
                role,
                kind,
                name,
                instance_id,
                duration,
                extra=log_fields(kind, name, instance_id, run_count=run_count, attempt=attempt),
            )
        return outcome

    async def _traced(
        self,
        traced: Any,
        job: JobDefinition,
        role: Role,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        instance_id: str,
        then: Callable[[Any], Any] | None,
        started: datetime,
    ) -> Outcome:
        """:meth:`_call` in the handler's span, which says its outcome; a call cancelled
        from outside (shutdown) is ``interrupted`` (its span and its count)."""
        with traced as span:
            try:
                outcome = await self._call(
                    job, role, fn, args, instance_id=instance_id, then=then, started=started
                )
            except trio.Cancelled:
                span.finish("interrupted", None)
                duration = (self.clock.now() - started).total_seconds()
                telemetry.record_run(job.kind, job.name, role, "interrupted", duration)
                raise
            except BaseException:
                # A KeyboardInterrupt (counted and logged by _interrupted).
                span.finish("interrupted", None)
                raise
            span.finish(outcome_name(outcome.error), outcome.error)
            return outcome

    async def _call(
        self,
        job: JobDefinition,
        role: Role,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        instance_id: str,
        then: Callable[[Any], Any] | None,
        started: datetime,
    ) -> Outcome:
        timeout = job.timeout if role in TIMED else None
        timer: _Timer | None = None
        self.running += 1
        inside = IN_HANDLER.set(
            (job.kind, job.name, instance_id, _holds(job.kind, role), IN_HANDLER.get())
        )
        try:
            if timeout is None:
                # No cancel scope of its own: entering one costs on every run (and
                # _invoke inline: a coroutine less).
                value = fn(*args)
                if type(value) is CoroutineType or inspect.isawaitable(value):
                    value = await value
                if then is not None:
                    value = then(value)
            else:
                with trio.CancelScope() as scope:
                    timer = self._arm(scope, started + timeout)
                    try:
                        value = await _invoke(fn, args, then)
                    finally:
                        timer.done = True
                        self._wake.set()
        except trio.Cancelled as exc:
            if _really_cancelled():
                raise
            return Outcome(error=self._stray_cancel(job, role, instance_id, exc))
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, BaseExceptionGroup)) and self._interrupted(
                job, role, instance_id, started, exc
            ):
                raise
            if timer is not None and timer.fired:
                return Outcome(error=self._timed_out(job, role, instance_id, exc))
            return Outcome(error=exc)
        finally:
            IN_HANDLER.reset(inside)
            self.running -= 1
        if timer is not None and (timer.fired or self.clock.now() > timer.at):
            # Fired, or the call returned past its deadline without a checkpoint to
            # cancel (a blocking call: time.sleep, a synchronous client, a CPU loop): a
            # call past its timeout fails either way, whether or not it awaited after.
            return Outcome(error=self._timed_out(job, role, instance_id, None))
        return Outcome(value=value)

    def _interrupted(
        self,
        job: JobDefinition,
        role: Role,
        instance_id: str,
        started: datetime,
        exc: BaseException,
    ) -> bool:
        """Whether ``exc`` is (or holds) a ``KeyboardInterrupt``; if so the call is counted
        and logged as interrupted and ``on_interrupt`` is told (the caller raises it on)."""
        interrupt = interrupt_of(exc)
        if interrupt is None:
            return False
        duration = (self.clock.now() - started).total_seconds()
        telemetry.record_run(job.kind, job.name, role, "interrupted", duration)
        log.warning(
            "%s of %s job %r instance %r was interrupted (KeyboardInterrupt: Ctrl+C?); its "
            "run commits nothing and the runtime shuts down",
            role,
            job.kind,
            job.name,
            instance_id,
            extra=log_fields(job.kind, job.name, instance_id),
        )
        if self.on_interrupt is not None:
            self.on_interrupt(interrupt)
        return True

    def _stray_cancel(
        self, job: JobDefinition, role: Role, instance_id: str, cause: trio.Cancelled
    ) -> HandlerError:
        """The failure of a call that raised a ``trio.Cancelled`` not of its own."""
        msg = (
            f"{role} of {job.kind} job {job.name!r} (instance {instance_id!r}) raised "
            "trio.Cancelled that did not come from cancelling it (one caught elsewhere "
            "and re-raised?); the call counts as failed"
        )
        error = HandlerError(msg)
        error.__cause__ = cause
        return error

    def _timed_out(
        self, job: JobDefinition, role: Role, instance_id: str, cause: BaseException | None
    ) -> HandlerTimeout:
        error = HandlerTimeout(
            f"{role} of {job.kind} job {job.name!r} (instance {instance_id!r}) did not "
            f"finish within its timeout of {job.timeout} and was cancelled"
        )
        error.__cause__ = cause
        return error

    async def exhausted_action(
        self,
        job: JobDefinition,
        error: BaseException,
        ctx: object,
        *,
        instance_id: str,
        run_count: int | None = None,
        attempt: int | None = None,
        link: str | None = None,
    ) -> tuple[ExhaustedAction, BaseException | None]:
        """What the retry policy does once the last try failed, and a fatal error of its
        hook (to raise once the outcome is recorded)."""
        assert job.retry is not None
        hook = job.retry.on_exhausted
        if isinstance(hook, str):
            return hook, None
        outcome = await self.call(
            job,
            "on_exhausted",
            hook,
            error,
            ctx,
            instance_id=instance_id,
            run_count=run_count,
            attempt=attempt,
            link=link,
        )
        fields = log_fields(job.kind, job.name, instance_id, run_count=run_count, attempt=attempt)
        if outcome.error is not None:
            # A handler failure (logged by call()): say what it means for the instance.
            log.warning(
                "The on_exhausted hook of %s job %r instance %r raised; the instance is paused",
                job.kind,
                job.name,
                instance_id,
                exc_info=outcome.error,
                extra=fields,
            )
            return "pause", outcome.fatal
        decision = outcome.value
        if decision is None:
            return "pause", None
        valid = _EXHAUSTED_ACTIONS.get(job.kind, ("terminate", "pause"))
        if decision not in valid:
            # "continue" on a debounce job would drop its batch: never done silently.
            expected = ", ".join(repr(v) for v in valid)
            why = "; 'continue' is for continuous jobs" if decision == "continue" else ""
            log.warning(
                "The on_exhausted hook of %s job %r instance %r returned %r (expected "
                "%s or None%s); the instance is paused",
                job.kind,
                job.name,
                instance_id,
                decision,
                expected,
                why,
                extra=fields,
            )
            return "pause", None
        return cast(ExhaustedAction, decision), None

    # ---- timeouts ----------------------------------------------------------------------

    def _arm(self, scope: trio.CancelScope, at: datetime) -> _Timer:
        timer = _Timer(at, scope)
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, timer))
        self._wake.set()
        return timer

    def _kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Cancel the calls that run past their timeout (runs until cancelled)."""
        unsubscribe = self.clock.on_jump(self._kick)
        try:
            while True:
                now = self.clock.now()
                timers = self._timers
                while timers and (timers[0][2].done or timers[0][0] <= now):
                    _, _, timer = heapq.heappop(timers)
                    if not timer.done:
                        timer.fired = True
                        timer.scope.cancel()
                deadline = self.clock.deadline(timers[0][0]) if timers else math.inf
                with trio.move_on_at(deadline):
                    await self._wake.wait()
                self._wake = trio.Event()
        finally:
            unsubscribe()
