"""A virtual-time harness: serve a registry on a store, advance time, restart, read what ran.

:func:`open_harness` is an async context manager for trio tests that run on
``trio.testing.MockClock`` (pytest-trio's ``autojump_clock`` fixture);
:func:`run_harness` is the same for synchronous code (one ``trio.run`` per
call, e.g. per hypothesis example). Neither needs hypothesis.
"""

from __future__ import annotations

import inspect
import linecache
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import CodeType
from typing import Any, Literal, TypeVar, final, overload

import trio
import trio.testing

from durable_jobs._client import (
    ContinuousClient,
    DebounceClient,
    Jobs,
    TaskClient,
    open_jobs,
)
from durable_jobs._definitions.contexts import _Context
from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.events import Event as DomainEvent
from durable_jobs._domain.ids import KINDS, Kind
from durable_jobs._domain.values import LATEST_ALARM
from durable_jobs._errors import (
    ConfigurationError,
    DurableJobsError,
    HarnessStalled,
    JobNotFound,
    ValidationError,
)
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime import clock as _clock_module
from durable_jobs._runtime.clock import VIRTUAL_EPOCH, VirtualClock, in_thread
from durable_jobs._runtime.runtime import Observer
from durable_jobs._store.base import Store
from durable_jobs._store.registry import open_store
from durable_jobs.testing._failures import FailurePlan, InjectedFailure, check_handler_name
from durable_jobs.testing._readouts import _RUN_NAMES, Flush, Run
from durable_jobs.testing._watch import THREAD_CODE, Watch, all_tasks, coroutine_frames

__all__ = [
    "FailurePlan",
    "Flush",
    "Harness",
    "HarnessStalled",
    "InjectedFailure",
    "Run",
    "open_harness",
    "run_harness",
]

T = TypeVar("T")
S = TypeVar("S")
E = TypeVar("E")


# ---- virtual time ------------------------------------------------------------------------


def _mock_clock() -> trio.testing.MockClock:
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock):
        msg = (
            "The durable_jobs testing harness runs in virtual time: run trio with "
            "clock=trio.testing.MockClock(autojump_threshold=0) (with pytest-trio, take the "
            "autojump_clock fixture), or call durable_jobs.testing.run_harness() from "
            "synchronous code."
        )
        raise ConfigurationError(msg)
    return clock


def _set_autojump(clock: trio.testing.MockClock, threshold: float) -> float:
    """Set ``clock``'s autojump threshold; returns the one it replaces.

    Cooperates with the runtime's ``hold_virtual_time`` (store I/O in worker
    threads): while a hold is active the value to restore is updated, so the
    I/O still takes no virtual time and the new threshold applies afterwards.
    """
    holds = _clock_module._holds
    held = holds.get(clock)
    if held is not None:
        count, saved = held
        holds[clock] = (count, threshold)
        return saved
    saved = clock.autojump_threshold
    clock.autojump_threshold = threshold
    return saved


@contextmanager
def autojumping() -> Iterator[None]:
    """Let the current ``MockClock`` autojump (threshold 0) while the block runs."""
    clock = _mock_clock()
    saved = _set_autojump(clock, 0)
    try:
        yield
    finally:
        _set_autojump(clock, saved)


#: The latest start of a harness: alarms up to 100 years ahead fit before year 10000.
_LATEST_START = datetime(9899, 1, 1, tzinfo=UTC)


def _seconds(name: str, value: timedelta | float) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        msg = f"{name} must be a timedelta or a number of seconds, got {value!r}"
        raise ValidationError(msg)
    if not math.isfinite(seconds) or seconds < 0:
        msg = f"{name} must be finite and >= 0, got {value!r}"
        raise ValidationError(msg)
    return seconds


# ---- what the jobs wait on ---------------------------------------------------------------


#: Code objects that tell what a waiting handler waits for (see :func:`_waits`).
_SLEEP_CODE: CodeType | None = getattr(trio.sleep_until, "__code__", None)
#: How often (real seconds) advance looks again while a worker thread or I/O is in flight.
_POLL = 0.02


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A handler call in flight, and what it waits for."""

    what: str
    on: Literal["time", "thread", "busy", "other"]


def _handlers(job: JobDefinition) -> dict[str, Callable[..., Any]]:
    """The handlers ``job`` has, by the name its calls are recorded under."""
    retry = getattr(job, "retry", None)
    return {
        role: fn
        for role, fn in (
            ("execute", getattr(job, "execute", None)),
            ("reducer", getattr(job, "reducer", None)),
            ("on_event", getattr(job, "event_handler", None)),
            ("on_idle", getattr(job, "idle_handler", None)),
            ("on_error", getattr(job, "error_handler", None)),
            ("on_exhausted", getattr(retry, "on_exhausted", None)),
        )
        if callable(fn)
    }


def _jobs(registry: Registry) -> Iterator[JobDefinition]:
    for kind in KINDS:
        for name in registry.names(kind):
            yield registry.get(kind, name)


def _handler_codes(registry: Registry) -> dict[CodeType, tuple[JobDefinition, str]]:
    """The code object of each handler of the registry's jobs: (job, handler name)."""
    codes: dict[CodeType, tuple[JobDefinition, str]] = {}
    for job in _jobs(registry):
        for role, fn in _handlers(job).items():
            code = getattr(inspect.unwrap(fn), "__code__", None)
            if code is not None:
                codes.setdefault(code, (job, role))
    return codes


def _record_names() -> list[str]:
    """Every name a record can have (``started``, ``run_failed``, ...; docs/events.md)."""
    names: set[str] = set()
    todo: list[type[DomainEvent]] = [DomainEvent]
    while todo:
        cls = todo.pop()
        if cls.NAME:
            names.add(cls.NAME)
        todo.extend(cls.__subclasses__())
    return sorted(names)


_Wait = Literal["time", "thread", "busy", "other"]


def _how(job: JobDefinition, below: set[CodeType], busy: bool) -> tuple[_Wait, str]:
    """What a handler call of ``job`` waits for, given the code of the frames it is in."""
    if busy:
        return "busy", (
            "keeps running without waiting (a busy loop: each await returns at once), so "
            "virtual time cannot pass and no timeout= ends it"
        )
    if THREAD_CODE is not None and THREAD_CODE in below:
        return "thread", "waits for a worker thread (trio.to_thread.run_sync)"
    if _SLEEP_CODE is not None and _SLEEP_CODE in below:
        return "time", "sleeps"
    if job.timeout is not None:
        return "time", f"waits (its timeout of {job.timeout} ends it)"
    return "other", "waits on something other than virtual time"


def _waits(registry: Registry, busy: Collection[trio.lowlevel.Task] = ()) -> list[_Waiting]:
    """The handler calls in flight in this trio run, and what each waits for (those in
    the ``busy`` tasks: nothing, they keep running)."""
    codes = _handler_codes(registry)
    found: list[_Waiting] = []
    for task in all_tasks():
        frames = list(coroutine_frames(task.coro))
        for i, frame in enumerate(frames):
            hit = codes.get(frame.f_code)
            if hit is None:
                continue
            job, role = hit
            on, how = _how(job, {f.f_code for f in frames[i + 1 :]}, task in busy)
            ctx = next((v for v in frame.f_locals.values() if isinstance(v, _Context)), None)
            who = f" instance {ctx.instance_id!r}" if ctx is not None else ""
            # The innermost frame in the handler's own file: the line it loops or waits at.
            at = next(
                (
                    f
                    for f in reversed(frames[i:])
                    if f.f_code.co_filename == frame.f_code.co_filename
                ),
                frame,
            )
            line = linecache.getline(at.f_code.co_filename, at.f_lineno).strip()
            found.append(
                _Waiting(
                    f"{job.kind} job {job.name!r}{who}: {role} {how}, at "
                    f"{at.f_code.co_filename}:{at.f_lineno} ({line})",
                    on,
                )
            )
            break
    return found


# ---- the harness -------------------------------------------------------------------------


@final
class Harness:
    """A registry served on one store in virtual time; get one from :func:`open_harness`.

    ``records`` holds every record committed since the harness opened, across
    restarts, in commit order (the observer hook); :meth:`runs` and
    :meth:`flushes` read them.
    """

    def __init__(
        self,
        registry: Registry,
        store: str | Store,
        clock: VirtualClock,
        options: dict[str, Any],
        observers: Sequence[Observer],
        *,
        stall_timeout: float = 5.0,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.records: list[RecordedEvent] = []
        #: How many times :meth:`restart` reopened the runtime.
        self.restarts = 0
        self._store = store
        self._options = options
        self._observers = [self.records.append, *observers]
        self._jobs: Jobs | None = None
        self._request: trio.Event | None = None
        self._restarted = trio.Event()
        self._down_for = 0.0
        self._done = False
        #: Real seconds :meth:`advance` waits for handlers that wait on other than time.
        self.stall_timeout = stall_timeout
        self._watch: Watch | None = None

    # -- lifecycle (used by open_harness) --

    @asynccontextmanager
    async def _serving(self) -> AsyncIterator[Jobs]:
        async with open_jobs(
            self.registry,
            self._store,
            clock=self.clock,
            observers=self._observers,
            **self._options,
        ) as jobs:
            self._jobs = jobs
            try:
                yield jobs
            finally:
                self._jobs = None

    # -- the runtime --

    @property
    def jobs(self) -> Jobs:
        """The running :class:`~durable_jobs.Jobs` (a new one after each restart)."""
        if self._jobs is None:
            msg = "The harness is not serving: it is closed, or restarting"
            raise DurableJobsError(msg)
        return self._jobs

    @property
    def store(self) -> str | Store:
        """What each (re)start opens: the store URL, or the one open store kept across restarts."""
        return self._store

    def now(self) -> datetime:
        """The jobs' current (virtual) time."""
        return self.clock.now()

    @overload
    def continuous(self, job: ContinuousJob[S]) -> ContinuousClient[S]: ...
    @overload
    def continuous(self, job: str) -> ContinuousClient[Any]: ...
    def continuous(self, job: str | ContinuousJob[Any]) -> ContinuousClient[Any]:
        """``harness.jobs.continuous(job)``."""
        return self.jobs.continuous(job)

    @overload
    def debounce(self, job: DebounceJob[E, S]) -> DebounceClient[E, S]: ...
    @overload
    def debounce(self, job: str) -> DebounceClient[Any, Any]: ...
    def debounce(self, job: str | DebounceJob[Any, Any]) -> DebounceClient[Any, Any]:
        """``harness.jobs.debounce(job)``."""
        return self.jobs.debounce(job)

    @overload
    def task(self, job: TaskJob[E, S]) -> TaskClient[E, S]: ...
    @overload
    def task(self, job: str) -> TaskClient[Any, Any]: ...
    def task(self, job: str | TaskJob[Any, Any]) -> TaskClient[Any, Any]:
        """``harness.jobs.task(job)``."""
        return self.jobs.task(job)

    # -- time --

    async def wait_idle(self) -> None:
        """Return once every alarm due by now has run and committed."""
        with self._guarded("harness.wait_idle()"), autojumping():
            await self.jobs.wait_idle()

    @contextmanager
    def _guarded(self, call: str) -> Iterator[None]:
        """Raise HarnessStalled out of the block (``call`` in the message) if a busy loop
        keeps the run from ever waiting, so that virtual time cannot pass, for
        ``stall_timeout`` of real time."""
        watch = self._watch
        if watch is None:  # pragma: no cover - set by open_harness
            yield
            return
        with trio.CancelScope() as scope:
            watch.guard(scope)
            try:
                yield
            finally:
                watch.unguard(scope)
        if scope.cancelled_caught:
            raise self._busy_stalled(call, watch.spinners)

    def _busy_stalled(self, call: str, spinners: list[trio.lowlevel.Task]) -> HarnessStalled:
        lines = [w.what for w in _waits(self.registry, spinners) if w.on == "busy"]
        if not lines:
            lines = [f"task {task.name!r} keeps running without waiting" for task in spinners]
        listed = "".join(f"\n  - {line}" for line in lines)
        msg = (
            f"{call} is stuck at {self.now().isoformat()}: these handler calls keep "
            f"running without ever waiting, and for {self.stall_timeout:g} s of real time "
            f"the clock did not move and nothing was committed:{listed}\nVirtual time passes "
            "only while every task waits, so a busy loop (say `while True: await "
            "trio.sleep(0)`, polling for something) stops the clock, and no timeout= can "
            "end it: wait for what it polls for (a trio.Event, a channel), or sleep between "
            "polls (`await trio.sleep(1)`). From now on the clock jumps over such a loop, "
            "so that the harness can still stop (open_harness(stall_timeout=...) sets the "
            "real-time wait)."
        )
        return HarnessStalled(msg, lines)

    async def advance(self, delta: timedelta | float) -> None:
        """Let ``delta`` (a timedelta or seconds) of virtual time pass; never more.

        Every alarm that comes due meanwhile runs at its own time, in order;
        returns once what is due at the end has committed. A handler call still
        running then, waiting for later time (a ``trio.sleep``, its job's
        ``timeout``), stays in flight: the clock stops at the end anyway. One
        that waits on anything else (a ``trio.Event``, a socket, a worker
        thread) gets :attr:`stall_timeout` real seconds without progress, then
        :class:`HarnessStalled` names it; so does one that never waits (a busy loop,
        which keeps virtual time from passing at all).
        """
        seconds = self._within_reach("delta", delta)
        jobs = self.jobs
        target = trio.current_time() + seconds
        with self._guarded("harness.advance()"):
            with autojumping():
                await trio.sleep_until(target)  # autojump stops at this deadline, if not before
            await self._settle(jobs)

    async def _settle(self, jobs: Jobs) -> None:
        """Wait until ``jobs`` is idle, without moving the clock: a task in
        ``wait_all_tasks_blocked`` keeps trio from autojumping."""
        stalled: HarnessStalled | None = None
        async with trio.open_nursery() as nursery:

            async def idle() -> None:
                await jobs.wait_idle()
                nursery.cancel_scope.cancel()

            nursery.start_soon(idle)
            stalled = await self._until_stalled()
            nursery.cancel_scope.cancel()
        if stalled is not None:
            raise stalled  # out of the nursery: not in an ExceptionGroup

    async def _until_stalled(self) -> HarnessStalled | None:
        """Return once nothing can happen before the clock moves: None, or HarnessStalled
        if handler calls wait on other than time and nothing moved for stall_timeout."""
        watch = self._watch
        assert watch is not None
        watch.watcher = trio.lowlevel.current_task()
        steps: int | None = None
        quiet_since = time.monotonic()
        while True:
            await trio.testing.wait_all_tasks_blocked(0 if steps is None else _POLL)
            threads = trio.testing.active_thread_count()
            waiting = _waits(self.registry)
            if not threads and all(w.on == "time" for w in waiting):
                return None
            if watch.steps != steps:
                steps, quiet_since = watch.steps, time.monotonic()
            elif time.monotonic() - quiet_since >= self.stall_timeout:
                return self._stalled(waiting, threads)

    def _stalled(self, waiting: list[_Waiting], threads: int) -> HarnessStalled:
        lines = [w.what for w in waiting if w.on != "time"]
        if threads and not any(w.on == "thread" for w in waiting):
            lines.append(f"{threads} worker thread(s) still running (store I/O, or your own)")
        listed = "".join(f"\n  - {line}" for line in lines)
        msg = (
            f"harness.advance() reached {self.now().isoformat()}, but these handler calls "
            f"are still running, and nothing moved for {self.stall_timeout:g} s of real "
            f"time:{listed}\nNo virtual time ends such a wait: set what it waits for "
            "before advancing (start the fake server, fill the channel), make the "
            "blocking call return, or give the job a timeout=. The clock stopped there "
            "(open_harness(stall_timeout=...) sets the real-time wait)."
        )
        return HarnessStalled(msg, lines)

    def _within_reach(self, name: str, value: timedelta | float) -> float:
        """``value`` in seconds, checked (see :func:`_seconds`) and short enough that the
        clock stays at or before the latest time a store keeps; else ValidationError,
        before any time passes."""
        seconds = _seconds(name, value)
        left = (LATEST_ALARM - self.now()).total_seconds()
        if seconds > left:
            msg = (
                f"{name} of {value!r} would move the clock past {LATEST_ALARM.date()}, the "
                f"latest time a store keeps: at most {left:.0f} s from now"
            )
            raise ValidationError(msg)
        return seconds

    async def advance_to(self, when: datetime) -> None:
        """:meth:`advance` until the jobs' clock reads ``when`` (nothing if it is past).

        ``when`` is an aware datetime; a naive one (or anything else) is a
        ValidationError, and no time passes: which zone it meant is unknown.
        """
        if not isinstance(when, datetime) or when.utcoffset() is None:
            msg = (
                f"advance_to() takes an aware datetime (with a tzinfo, say "
                f"datetime(2026, 1, 2, tzinfo=UTC)), got {when!r}"
            )
            raise ValidationError(msg)
        await self.advance(max(timedelta(0), when - self.now()))

    async def restart(self, *, down_for: timedelta | float = 0) -> None:
        """Stop the runtime and start it again on the same store: a process restart.

        ``down_for`` is virtual time that passes while nothing runs (alarms
        due meanwhile fire late, after the restart, following each job's
        misfire policy). Runs in flight get the shutdown grace, as in
        production; call :meth:`wait_idle` first for a clean stop. Returns
        once the new runtime has run what is overdue.
        """
        seconds = self._within_reach("down_for", down_for)
        if self._request is None:
            msg = "restart() needs the harness to be serving (inside open_harness)"
            raise DurableJobsError(msg)
        self._down_for = seconds
        self._restarted = trio.Event()
        self._request.set()
        with self._guarded("harness.restart()"):
            await self._restarted.wait()
        self.restarts += 1
        await self.wait_idle()

    async def _serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Serve until stopped; each restart request leaves the block and opens a new one."""
        first = True
        while True:
            self._request = request = trio.Event()
            async with self._serving() as jobs:
                if first:
                    task_status.started()
                    first = False
                else:
                    self._restarted.set()
                await request.wait()
                if not self._done:
                    jobs._rt.closed_advice = (
                        "harness.restart() replaced it with a new one, and clients belong "
                        "to one runtime: after a restart, ask the harness for the client "
                        "again (harness.continuous(job), .debounce(job), .task(job), "
                        "harness.jobs)."
                    )
            if self._done:
                self._request = None
                return
            with autojumping():
                await trio.sleep(self._down_for)

    def _stop(self) -> None:
        self._done = True
        if self._request is not None:
            self._request.set()

    # -- read-outs --

    def _job_filter(
        self, job: str | JobDefinition | None, kind: Kind | None = None
    ) -> tuple[Kind | None, str | None]:
        """The (kind, name) records of ``job`` have; None for what any job's have.

        A name or definition the registry does not have (of ``kind``, if given) is
        JobNotFound, as for the clients: filtering on it would read nothing, and
        an assertion that nothing ran would pass whatever ran.
        """
        wanted: object = job  # callers may pass anything
        if wanted is None:
            return None, None
        kinds: tuple[Kind, ...] = KINDS if kind is None else (kind,)
        if isinstance(wanted, JobDefinition):
            if wanted.kind in kinds:
                self.registry.get(wanted.kind, wanted.name)  # JobNotFound if not registered
                return wanted.kind, wanted.name
            name = wanted.name
        elif isinstance(wanted, str):
            if any(wanted in self.registry.names(k) for k in kinds):
                return None, wanted
            name = wanted
        else:
            msg = f"job must be a job name or definition, got {wanted!r}"
            raise ValidationError(msg)
        what = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"
        known = [n for k in kinds for n in self.registry.names(k)]
        raise JobNotFound(what, name, known)

    def recorded(
        self,
        name: str | None = None,
        *,
        job: str | None = None,
        instance_id: str | None = None,
    ) -> list[RecordedEvent]:
        """The records committed so far, optionally only those with this name, job, id.

        A ``job`` the registry does not have is :class:`~durable_jobs.JobNotFound`,
        a ``name`` that no record has a ValidationError (a typo would read nothing).
        """
        self._job_filter(job)
        if name is not None:
            known = _record_names()
            if name not in known:
                msg = f"{name!r} is not the name of a record; record names: {', '.join(known)}"
                raise ValidationError(msg)
        return [
            r
            for r in self.records
            if (name is None or r.name == name)
            and (job is None or r.job == job)
            and (instance_id is None or r.instance_id == instance_id)
        ]

    def runs(
        self,
        job: str | ContinuousJob[Any] | DebounceJob[Any, Any] | TaskJob[Any, Any] | None = None,
        instance_id: str | None = None,
        *,
        handler: str | None = "execute",
    ) -> list[Run]:
        """Handler calls recorded so far (of ``handler``; None: every handler), in order.

        A ``job`` the registry does not have is :class:`~durable_jobs.JobNotFound`,
        a ``handler`` that no job has a ValidationError (a typo would read nothing).
        """
        kind, name = self._job_filter(job)
        check_handler_name(handler, allow_none=True)
        if handler is not None:
            self._check_handler(handler, kind, name)
        return [
            run
            for r in self.records
            if r.name in _RUN_NAMES
            and (name is None or r.job == name)
            and (kind is None or r.kind == kind)
            and (instance_id is None or r.instance_id == instance_id)
            for run in (Run.from_record(r),)
            if handler is None or run.handler == handler
        ]

    def _check_handler(self, handler: str, kind: Kind | None, name: str | None) -> None:
        """ValidationError unless a job that ``runs`` reads (all, or ``kind``/``name``)
        has ``handler``: no call of it could be recorded."""
        jobs = [
            j
            for j in _jobs(self.registry)
            if (kind is None or j.kind == kind) and (name is None or j.name == name)
        ]
        if any(handler in _handlers(j) for j in jobs):
            return
        whose = f"job {name!r}" if name is not None else "any job of this registry"
        have = sorted({role for j in jobs for role in _handlers(j)})
        msg = (
            f"handler={handler!r} matches no call: {whose} has no {handler} handler "
            f"(handlers: {', '.join(have)}; or handler=None for every handler)"
        )
        raise ValidationError(msg)

    def flushes(
        self,
        job: str | DebounceJob[Any, Any] | None = None,
        instance_id: str | None = None,
    ) -> list[Flush]:
        """Successful debounce flushes recorded so far, in order.

        A ``job`` that is not one of the registry's debounce jobs is
        :class:`~durable_jobs.JobNotFound`.
        """
        kind, name = self._job_filter(job, "debounce")
        return [
            Flush.from_record(r)
            for r in self.records
            if r.name == "flushed"
            and (name is None or r.job == name)
            and (kind is None or r.kind == kind)
            and (instance_id is None or r.instance_id == instance_id)
        ]

    def __repr__(self) -> str:
        try:
            at = self.now().isoformat()
        except RuntimeError:  # outside trio (a failure report after the scenario ended)
            return f"<Harness {self.registry!r}, closed>"
        return f"<Harness {self.registry!r} at {at}>"


@asynccontextmanager
async def open_harness(
    registry: Registry,
    store: str | Store = "memory://",
    *,
    start: datetime = VIRTUAL_EPOCH,
    observers: Sequence[Observer] = (),
    stall_timeout: timedelta | float = 5.0,
    **options: Any,
) -> AsyncIterator[Harness]:
    """Serve ``registry`` on ``store`` in virtual time, starting at ``start`` (UTC).

    trio must run on ``trio.testing.MockClock`` (pytest-trio's
    ``autojump_clock`` fixture, or :func:`run_harness`). ``store`` is a URL or
    an open :class:`~durable_jobs.Store`; a ``memory://`` store is kept open
    across :meth:`Harness.restart` (a durable one is reopened from its URL,
    like a new process would). ``options`` go to :func:`durable_jobs.open_jobs`
    (``poll_interval`` defaults to None: one process serves the store).
    ``stall_timeout`` is how long (real time) :meth:`Harness.advance` waits for
    handler calls that wait on other than virtual time before it raises
    :class:`HarnessStalled`.
    """
    mock = _mock_clock()
    stall = _seconds("stall_timeout", stall_timeout)
    clock = VirtualClock(start)
    if start > _LATEST_START:
        msg = (
            f"open_harness start must be at most {_LATEST_START.isoformat()} (alarms up "
            f"to 100 years ahead must be representable), got {start!r}"
        )
        raise ConfigurationError(msg)
    clock.now()  # pin the clock's origin to the trio time of now
    options.setdefault("poll_interval", None)
    owned: Store | None = None
    target: str | Store = store
    if isinstance(store, str):
        opened = await in_thread(open_store, store)
        if opened.durable:
            await in_thread(opened.close)
        else:
            owned = target = opened
    harness = Harness(registry, target, clock, options, observers, stall_timeout=stall)
    harness._watch = watch = Watch(mock, stall, lambda: len(harness.records))
    trio.lowlevel.add_instrument(watch)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(harness._serve)
            try:
                yield harness
            except BaseException as exc:
                # Re-raised as itself below, not wrapped in an ExceptionGroup.
                body_error = exc
            finally:
                harness._stop()
    finally:
        trio.lowlevel.remove_instrument(watch)
        watch.close()
        if owned is not None:
            with trio.CancelScope(shield=True):
                await in_thread(owned.close)
    if body_error is not None:
        raise body_error


def run_harness(
    test: Callable[[Harness], Awaitable[T]],
    registry: Registry,
    store: str | Store = "memory://",
    **options: Any,
) -> T:
    """Run ``await test(harness)`` in a fresh ``trio.run`` on a ``MockClock``; return its result.

    The synchronous entry point (say, the body of a hypothesis ``@given`` test):
    ``options`` are :func:`open_harness`'s.
    """

    async def main() -> T:
        async with open_harness(registry, store, **options) as harness:
            return await test(harness)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
