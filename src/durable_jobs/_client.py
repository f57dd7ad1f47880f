"""The jobs client: ``open_jobs``/``serve`` and :class:`Jobs`, which hands out the
per-kind clients (``_clients/``); their names and result types are re-exported here."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Literal, TypeVar, final, overload

import trio

from durable_jobs._clients.continuous import ContinuousClient
from durable_jobs._clients.debounce import DebounceClient
from durable_jobs._clients.results import (
    AddResult,
    ClearResult,
    ContinuousStatus,
    DebounceStatus,
    FlushResult,
    SendResult,
    StartResult,
    TaskState,
    TaskStatus,
    TerminateResult,
    TriggerResult,
)
from durable_jobs._clients.task import TaskClient
from durable_jobs._definitions.checks import is_async
from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.backoff import MAX_DURATION, from_seconds
from durable_jobs._domain.values import DEFAULT_LIMITS, Limits, limits_in_effect
from durable_jobs._errors import ConfigurationError, RuntimeClosed
from durable_jobs._evolution import refuse_unreadable_versions
from durable_jobs._runtime.clock import Clock, SystemClock, current_mock_clock, in_thread
from durable_jobs._runtime.guards import DEFAULT_LEASE, MIN_LEASE
from durable_jobs._runtime.runtime import Observer, Runtime
from durable_jobs._runtime.statistics import RuntimeStatistics
from durable_jobs._store.base import Store
from durable_jobs._store.registry import adapter_for, open_store
from durable_jobs._store.urls import StoreURL

__all__ = [
    "AddResult",
    "ClearResult",
    "ContinuousClient",
    "ContinuousStatus",
    "DebounceClient",
    "DebounceStatus",
    "FlushResult",
    "Jobs",
    "SendResult",
    "StartResult",
    "TaskClient",
    "TaskState",
    "TaskStatus",
    "TerminateResult",
    "TriggerResult",
    "open_jobs",
    "serve",
]

#: The longest lease: its share sets TCP keepalive (at most 32767 s on Linux) and the
#: server's idle_session_timeout of the lock session; a day keeps both in range.
_MAX_LEASE = timedelta(days=1)

log = logging.getLogger("durable_jobs.runtime")

S = TypeVar("S")
E = TypeVar("E")


@final
class Jobs:
    """The client of a running registry; get it from :func:`open_jobs` or :func:`serve`."""

    def __init__(self, runtime: Runtime, limits: Limits = DEFAULT_LIMITS) -> None:
        self._rt = runtime
        self._limits = limits

    @property
    def limits(self) -> Limits:
        """The size limits of states, events and idempotency keys (``open_jobs`` options)."""
        return self._limits

    @property
    def registry(self) -> Registry:
        """The registry being served."""
        return self._rt.registry

    def _check_open(self, method: str, *, here: bool = False) -> None:
        # Only the awaited calls must come from the serving trio run: a client may be
        # got anywhere (say, in a thread, for trio.from_thread.run(client.send, ...)).
        self._rt.check_open(f"jobs.{method}()", here=here)

    @property
    def store(self) -> Store:
        """The open store the jobs are kept in."""
        return self._rt.store

    @property
    def clock(self) -> Clock:
        """The clock the jobs run on."""
        return self._rt.clock

    @overload
    def continuous(self, job: ContinuousJob[S]) -> ContinuousClient[S]: ...
    @overload
    def continuous(self, job: str) -> ContinuousClient[Any]: ...
    def continuous(self, job: str | ContinuousJob[Any]) -> ContinuousClient[Any]:
        """The client of a continuous job (by name or definition); JobNotFound if unknown."""
        self._check_open("continuous")
        name = _job_name("continuous", job)
        return ContinuousClient(self._rt, self._rt.registry.get("continuous", name), self._limits)

    @overload
    def debounce(self, job: DebounceJob[E, S]) -> DebounceClient[E, S]: ...
    @overload
    def debounce(self, job: str) -> DebounceClient[Any, Any]: ...
    def debounce(self, job: str | DebounceJob[Any, Any]) -> DebounceClient[Any, Any]:
        """The client of a debounce job (by name or definition); JobNotFound if unknown."""
        self._check_open("debounce")
        name = _job_name("debounce", job)
        return DebounceClient(self._rt, self._rt.registry.get("debounce", name), self._limits)

    @overload
    def task(self, job: TaskJob[E, S]) -> TaskClient[E, S]: ...
    @overload
    def task(self, job: str) -> TaskClient[Any, Any]: ...
    def task(self, job: str | TaskJob[Any, Any]) -> TaskClient[Any, Any]:
        """The client of a task job (by name or definition); JobNotFound if unknown."""
        self._check_open("task")
        name = _job_name("task", job)
        return TaskClient(self._rt, self._rt.registry.get("task", name), self._limits)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(record)`` for every event committed from now on; returns an
        unsubscribe function. Observers run synchronously after each commit; one that
        raises is logged and ignored."""
        self._check_open("subscribe")
        _check_observer(observer)
        return self._rt.subscribe(observer)

    async def wait_idle(self) -> None:
        """Return once every due alarm has run and committed (for tests and scripts)."""
        self._check_open("wait_idle", here=True)
        await self._rt.wait_idle()

    def statistics(self) -> RuntimeStatistics:
        """The runtime's live figures: runs in flight, alarms due, commits and their
        batch sizes, cache hits and misses, and (on a shared store) the locks held."""
        self._check_open("statistics")
        return self._rt.statistics()

    def __repr__(self) -> str:
        return f"<Jobs {self._rt.registry!r} on {self._rt.store!r}>"


def _job_name(kind: str, job: object) -> str:
    """The name of ``job`` (a name or a definition); ConfigurationError for anything else."""
    if isinstance(job, str):
        return job
    if isinstance(job, JobDefinition):
        return job.name
    msg = f"jobs.{kind}() takes a job name or definition, not {type(job).__name__}."
    raise ConfigurationError(msg)


def _duration(name: str, value: object) -> timedelta:
    """A timedelta from 0 to 100 years from a timedelta or a number of seconds."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= MAX_DURATION.total_seconds()
    ):
        value = from_seconds(name, value)
    if not isinstance(value, timedelta) or not timedelta(0) <= value <= MAX_DURATION:
        raise ConfigurationError(
            f"{name} must be a timedelta (or seconds) from 0 to 100 years, got {value!r:.60}; "
            "write e.g. timedelta(seconds=5)"
        )
    return value


def _only_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What nested single-error groups (the runtime's nurseries) hold: the one error,
    or the first group of several (say, a handler's own nursery's)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _check_observer(observer: object) -> None:
    if not callable(observer):
        raise ConfigurationError(f"observers must be callables (record) -> None, got {observer!r}")
    if is_async(observer):
        raise ConfigurationError(
            f"observers are called synchronously, so an async one would never be "
            f"awaited: {observer!r}; make it a plain function (it may start a task)"
        )


def _check_options(
    registry: object,
    *,
    clock: Clock | None,
    counts: dict[str, object],
    shutdown_grace: object,
    poll_interval: object,
    observers: Sequence[object],
) -> tuple[Clock, timedelta, timedelta | Literal["auto"] | None]:
    """``open_jobs``'s arguments checked (ConfigurationError) and normalised."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        # Under asyncio.run (say), trio's own "must be called from async context" said
        # nothing a newcomer could act on.
        msg = (
            "open_jobs() runs in a trio program: start it with trio.run(main), not "
            "asyncio.run() or another event loop (durable-jobs is built on trio)."
        )
        raise ConfigurationError(msg) from None
    if not isinstance(registry, Registry):
        raise ConfigurationError(f"open_jobs() needs a durable_jobs.Registry, got {registry!r}")
    registry.check()
    if clock is None:
        clock = SystemClock()
        if current_mock_clock() is not None:
            log.warning(
                "trio runs on a MockClock but these jobs use the system clock, so their "
                "alarms wait for real time; pass clock=durable_jobs.VirtualClock() to run "
                "them in the mock clock's virtual time"
            )
    if not isinstance(clock, Clock):
        raise ConfigurationError(f"clock must be a durable_jobs.Clock, got {clock!r}")
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
    if isinstance(observers, str | bytes) or not isinstance(observers, Iterable):
        raise ConfigurationError(
            f"observers must be a list of callables (record) -> None, got {observers!r}"
        )
    for observer in observers:
        _check_observer(observer)
    poll: timedelta | Literal["auto"] | None = None
    if poll_interval == "auto":
        poll = "auto"
    elif poll_interval is not None:
        poll = _duration("poll_interval", poll_interval)
        if poll == timedelta(0):
            raise ConfigurationError("poll_interval must be positive, 'auto' or None")
    return clock, _duration("shutdown_grace", shutdown_grace), poll


@asynccontextmanager
async def open_jobs(
    registry: Registry,
    store: str | Store,
    *,
    clock: Clock | None = None,
    max_concurrent_runs: int = 100,
    shutdown_grace: timedelta | float = timedelta(seconds=5),
    alarm_window: int = 1000,
    poll_interval: timedelta | float | Literal["auto"] | None = "auto",
    cache_size: int = 10_000,
    observers: Sequence[Observer] = (),
    run_alarms: bool = True,
    lease: timedelta | float = DEFAULT_LEASE,
    encryption_key: str | Sequence[str] | None = None,
    max_event_bytes: int = DEFAULT_LIMITS.max_event_bytes,
    max_state_bytes: int = DEFAULT_LIMITS.max_state_bytes,
    max_key_bytes: int = DEFAULT_LIMITS.max_key_bytes,
) -> AsyncIterator[Jobs]:
    """Open ``store``, load its pending alarms and serve ``registry`` until the block ends.

    ``store`` is a URL (opened and closed here) or an open :class:`Store` (left
    open). On exit no new run starts; runs in flight get ``shutdown_grace`` to
    commit, then are cancelled (they run again after the next start). A
    ``KeyboardInterrupt`` raised in a handler (Ctrl+C while it ran synchronous
    code) ends the block the same way (its run commits nothing), then is raised.
    ``poll_interval`` re-reads the alarm index periodically, to see alarms that
    other processes set: ``"auto"`` is 5 s on shared stores (Postgres) and
    never on single-process ones; None turns it off. ``run_alarms=False`` makes
    a client only (say, a web process): its calls work, and ``trigger``/``flush``
    still run their handler in the caller, but alarms (including runs made due
    now by ``start`` or a full batch) are left to the worker processes serving
    the same shared store. ``lease`` (shared stores; default 30 s, 1 s to 1 day)
    bounds how long a worker that stops responding without dying (frozen, paused,
    cut off) keeps its instances: then the others take them, and whatever it
    tries to commit afterwards is refused. ``encryption_key`` (a key from
    :func:`durable_jobs.generate_key`, or a list: the first encrypts, all
    decrypt) encrypts every event and snapshot written, with AES-256-GCM; for a
    :class:`Store` passed in, give it to ``open_store`` instead.

    ``max_event_bytes`` and ``max_state_bytes`` (default 1 MiB each) bound an
    event and a state as UTF-8 JSON, ``max_key_bytes`` (default 1024) an
    idempotency key as UTF-8: a larger one is a ValidationError naming the
    limit, and nothing is written (a handler setting a state that is too
    large fails its run).
    """
    clock, shutdown_grace, poll_interval = _check_options(
        registry,
        clock=clock,
        counts={
            "max_concurrent_runs": max_concurrent_runs,
            "alarm_window": alarm_window,
            "cache_size": cache_size,
        },
        shutdown_grace=shutdown_grace,
        poll_interval=poll_interval,
        observers=observers,
    )
    limits = Limits(
        max_event_bytes=max_event_bytes,
        max_state_bytes=max_state_bytes,
        max_key_bytes=max_key_bytes,
    )
    if limits == DEFAULT_LIMITS:
        # The very object in effect outside any open_jobs: a client call made with the
        # defaults need not set them again (see _clients.base.limited).
        limits = DEFAULT_LIMITS
    lease = _check_lease(lease)
    owned = isinstance(store, str)
    _check_run_alarms(run_alarms, store)
    opened = await _open_store(store, encryption_key)
    if not run_alarms and not opened.shared:
        if owned:
            opened.close()
        raise ConfigurationError(_alone_msg(opened.url))
    if poll_interval == "auto":
        poll_interval = timedelta(seconds=5) if opened.shared else None
    opened.begin_serving()
    try:
        opened.claim_runtime()
        # Before any run: the store must hold no instance this code cannot read.
        await in_thread(refuse_unreadable_versions, opened, registry)
        runtime = Runtime(
            registry,
            opened,
            clock=clock,
            max_concurrent_runs=max_concurrent_runs,
            shutdown_grace=shutdown_grace,
            alarm_window=alarm_window,
            poll_interval=poll_interval,
            cache_size=cache_size,
            observers=observers,
            run_alarms=run_alarms,
            lease=lease,
        )
        # The block's own exception is re-raised as it is, not wrapped in an
        # ExceptionGroup by the runtime's nursery.
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                with limits_in_effect(limits):  # the runtime's tasks inherit them
                    await nursery.start(runtime.run)
                try:
                    # Cancelled when a handler is interrupted (Ctrl+C while it ran
                    # synchronous code): the block ends as for a Ctrl+C in it.
                    with runtime.body:
                        yield Jobs(runtime, limits)
                except BaseException as exc:
                    body_error = exc
                finally:
                    with trio.CancelScope(shield=True):
                        await runtime.shutdown()
        except BaseExceptionGroup as group:
            # The runtime failed (a bug, or a store that broke while starting), or a
            # handler raised a BaseException: it comes out as itself, not wrapped in
            # the runtime's nurseries' groups, so `except dj.StoreError` catches it.
            error = _only_error(group)
            if error is group:
                raise
            raise error from None
        _raise_after(body_error, runtime.interrupted)
    finally:
        opened.release_runtime()
        opened.end_serving()
        if owned:
            with trio.CancelScope(shield=True):
                await in_thread(opened.close)


def _raise_after(body_error: BaseException | None, interrupted: KeyboardInterrupt | None) -> None:
    """What ends ``open_jobs`` once shut down: the block's own exception, unless a
    handler was interrupted (then its ``KeyboardInterrupt``, as for a Ctrl+C that came
    while the block awaited, unless the block raised an error of its own). A call the
    block made once the interruption had begun shutting the runtime down was refused
    (RuntimeClosed): a consequence of the Ctrl+C, not an error of the block's own."""
    if interrupted is not None and (
        body_error is None or isinstance(body_error, trio.Cancelled | RuntimeClosed)
    ):
        if body_error is not None and interrupted.__context__ is None:
            interrupted.__context__ = body_error
        raise interrupted
    if body_error is not None:
        raise body_error


def _check_lease(lease: timedelta | float) -> timedelta:
    checked = (
        _duration("lease", lease)  # (its own error for a duration that rounds to 0)
        if isinstance(lease, timedelta)
        or (
            isinstance(lease, int | float)
            and not isinstance(lease, bool)
            and math.isfinite(lease)
            and abs(lease) <= MAX_DURATION.total_seconds()
        )
        else None  # not a duration at all: the message below says what is
    )
    if checked is None or not MIN_LEASE <= checked <= _MAX_LEASE:
        shown = lease if checked is None else checked
        raise ConfigurationError(
            f"lease must be a timedelta (or seconds) of at least "
            f"{MIN_LEASE.total_seconds():g} s and at most one day, got {shown!r:.60}; "
            "write e.g. timedelta(seconds=30)"
        )
    return checked


def _check_run_alarms(run_alarms: object, store: object) -> None:
    """``run_alarms`` is a bool, and False only with a store URL of a shared store:
    refused before the store is opened (opening a new SQLite path creates the file)."""
    if not isinstance(run_alarms, bool):
        raise ConfigurationError(f"run_alarms must be True or False, got {run_alarms!r}")
    if not run_alarms and isinstance(store, str):
        parsed = StoreURL.parse(store)
        if not adapter_for(parsed).shared:
            raise ConfigurationError(_alone_msg(parsed))


def _alone_msg(url: object) -> str:
    return (
        f"run_alarms=False needs a store that several processes serve (Postgres); on "
        f"{url} nothing else would run the alarms."
    )


async def _open_store(store: object, encryption_key: str | Sequence[str] | None) -> Store:
    """``store`` opened (a URL) or as given (a Store)."""
    if isinstance(store, str):
        return await in_thread(functools.partial(open_store, store, encryption_key=encryption_key))
    if isinstance(store, Store):
        if encryption_key is not None:
            msg = (
                "encryption_key is for a store URL; an open Store has its own: pass "
                "encryption_key to open_store() instead."
            )
            raise ConfigurationError(msg)
        return store
    raise ConfigurationError(
        f"store must be a store URL (e.g. 'sqlite:///jobs.db') or a Store, got {store!r}"
    )


async def serve(
    registry: Registry,
    store: str | Store,
    *,
    task_status: trio.TaskStatus[Jobs] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve ``registry`` until cancelled: ``jobs = await nursery.start(serve, registry, url)``."""
    async with open_jobs(registry, store, **options) as jobs:
        task_status.started(jobs)
        await trio.sleep_forever()
