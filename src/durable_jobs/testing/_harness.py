"""A virtual-time harness: serve a registry on a store, advance time, restart, read what ran.

:func:`open_harness` is an async context manager for trio tests that run on
``trio.testing.MockClock`` (pytest-trio's ``autojump_clock`` fixture);
:func:`run_harness` is the same for synchronous code (one ``trio.run`` per
call, e.g. per hypothesis example). Neither needs hypothesis.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, final, overload

import trio
import trio.testing

from durable_jobs._client import (
    ContinuousClient,
    DebounceClient,
    Jobs,
    TaskClient,
    open_jobs,
)
from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.ids import KINDS, Kind
from durable_jobs._domain.values import LATEST_ALARM
from durable_jobs._errors import ConfigurationError, DurableJobsError, JobNotFound, ValidationError
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime import clock as _clock_module
from durable_jobs._runtime.clock import VIRTUAL_EPOCH, VirtualClock, in_thread
from durable_jobs._runtime.runtime import Observer
from durable_jobs._store.base import Store
from durable_jobs._store.registry import open_store
from durable_jobs.testing._failures import FailurePlan, InjectedFailure, check_handler_name
from durable_jobs.testing._readouts import _RUN_NAMES, Flush, Run

__all__ = [
    "FailurePlan",
    "Flush",
    "Harness",
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
        with autojumping():
            await self.jobs.wait_idle()

    async def advance(self, delta: timedelta | float) -> None:
        """Let ``delta`` (a timedelta or seconds) of virtual time pass, then :meth:`wait_idle`.

        Every alarm that comes due meanwhile runs at its own time, in order.
        """
        seconds = self._within_reach("delta", delta)
        jobs = self.jobs
        with autojumping():
            await trio.sleep(seconds)
            await jobs.wait_idle()

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
        await self._restarted.wait()
        self.restarts += 1
        await self.wait_idle()

    async def _serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Serve until stopped; each restart request leaves the block and opens a new one."""
        first = True
        while True:
            self._request = request = trio.Event()
            async with self._serving():
                if first:
                    task_status.started()
                    first = False
                else:
                    self._restarted.set()
                await request.wait()
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

        A ``job`` the registry does not have is :class:`~durable_jobs.JobNotFound`.
        """
        self._job_filter(job)
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
    **options: Any,
) -> AsyncIterator[Harness]:
    """Serve ``registry`` on ``store`` in virtual time, starting at ``start`` (UTC).

    trio must run on ``trio.testing.MockClock`` (pytest-trio's
    ``autojump_clock`` fixture, or :func:`run_harness`). ``store`` is a URL or
    an open :class:`~durable_jobs.Store`; a ``memory://`` store is kept open
    across :meth:`Harness.restart` (a durable one is reopened from its URL,
    like a new process would). ``options`` go to :func:`durable_jobs.open_jobs`
    (``poll_interval`` defaults to None: one process serves the store).
    """
    _mock_clock()
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
    harness = Harness(registry, target, clock, options, observers)
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
