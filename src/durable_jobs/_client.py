"""The jobs client: ``open_jobs``/``serve``, the per-kind clients and their result types."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, final, overload

import trio
import trio.testing

from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.ids import check_instance_id
from durable_jobs._domain.task import TaskInstance
from durable_jobs._domain.values import (
    DEFAULT_LIMITS,
    Limits,
    check_idempotency_key,
    check_reason,
    limits_in_effect,
)
from durable_jobs._errors import ConfigurationError
from durable_jobs._evolution import refuse_unreadable_versions
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime.clock import Clock, SystemClock, in_thread
from durable_jobs._runtime.guards import DEFAULT_LEASE, MIN_LEASE
from durable_jobs._runtime.runtime import Observer, Runtime
from durable_jobs._runtime.statistics import RuntimeStatistics
from durable_jobs._store.base import Store
from durable_jobs._store.registry import open_store
from durable_jobs._telemetry import telemetry

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

log = logging.getLogger("durable_jobs.runtime")

S = TypeVar("S")
E = TypeVar("E")
P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="_KindClient")


# ---- result types ------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ContinuousStatus:
    """``status`` is ``running`` (also while a retry waits), ``failed`` or ``not_found``."""

    status: Literal["running", "failed", "not_found"]
    run_count: int
    next_run_at: datetime | None


@final
@dataclass(frozen=True, slots=True)
class StartResult:
    """``created`` is False when the instance already existed (it is left unchanged)."""

    created: bool
    status: ContinuousStatus


@final
@dataclass(frozen=True, slots=True)
class TriggerResult:
    """What a run started by hand did."""

    triggered: bool
    terminated: bool
    retry_scheduled: bool


@final
@dataclass(frozen=True, slots=True)
class TerminateResult:
    terminated: bool


@final
@dataclass(frozen=True, slots=True)
class AddResult:
    """``created``: this add opened a batch; ``duplicate``: its idempotency key was seen."""

    event_count: int
    will_flush_at: datetime | None
    created: bool
    duplicate: bool


@final
@dataclass(frozen=True, slots=True)
class FlushResult:
    """``reason`` is ``manual`` (flushed), ``empty`` (nothing ran) or ``failed``."""

    flushed: bool
    event_count: int
    reason: Literal["manual", "empty", "failed"]
    retry_scheduled: bool


@final
@dataclass(frozen=True, slots=True)
class ClearResult:
    cleared: bool
    discarded_events: int


@final
@dataclass(frozen=True, slots=True)
class DebounceStatus:
    """``status`` is ``debouncing``, ``failed``, ``idle`` or ``not_found``."""

    status: Literal["debouncing", "failed", "idle", "not_found"]
    event_count: int
    started_at: datetime | None
    will_flush_at: datetime | None


@final
@dataclass(frozen=True, slots=True)
class SendResult:
    """``scheduled_at`` is the alarm as committed after ``on_event`` (and ``on_idle``)."""

    created: bool
    scheduled_at: datetime | None
    duplicate: bool


@final
@dataclass(frozen=True, slots=True)
class TaskStatus:
    """``status`` is ``active`` (an alarm is set), ``idle`` or ``not_found``."""

    status: Literal["active", "idle", "not_found"]
    scheduled_at: datetime | None
    event_count: int
    execute_count: int
    created_at: datetime | None


@final
@dataclass(frozen=True, slots=True)
class TaskState(Generic[S]):
    state: S | None
    scheduled_at: datetime | None


# ---- per-kind clients --------------------------------------------------------------------


def _continuous_status(agg: ContinuousInstance | None) -> ContinuousStatus:
    if agg is None or not agg.live:
        return ContinuousStatus("not_found", 0, None)
    return ContinuousStatus(agg.status, agg.d.run_count, agg.d.alarm_at)  # type: ignore[arg-type]


def _limited(
    method: Callable[Concatenate[C, P], Awaitable[R]],
) -> Callable[Concatenate[C, P], Awaitable[R]]:
    """Run a client method with its ``open_jobs``'s size limits in effect (they apply to
    the values it checks and to the handlers it runs in the caller's task), in a span of
    its own (see ``durable_jobs._telemetry``)."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        job = self._definition
        instance_id = args[0] if args else kwargs.get("id")
        with (
            limits_in_effect(self._limits),
            telemetry.client_call(job.kind, job.name, name, instance_id),
        ):
            return await method(self, *args, **kwargs)

    return wrapper


class _KindClient:
    def __init__(
        self, runtime: Runtime, job: JobDefinition, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._rt = runtime
        self._definition = job
        self._limits = limits

    def _call(self, method: str) -> str:
        """How a call is named in errors, e.g. ``jobs.task('signup').send()``."""
        job = self._definition
        return f"jobs.{job.kind}({job.name!r}).{method}()"

    def _check_open(self, method: str) -> None:
        self._rt.check_open(self._call(method))

    async def _history(self, kind: Any, job: str, instance_id: str) -> list[RecordedEvent]:
        self._check_open("history")
        return await self._rt.history(kind, job, instance_id)


@final
class ContinuousClient(_KindClient, Generic[S]):
    """Commands and reads of one continuous job's instances."""

    def __init__(
        self, runtime: Runtime, job: ContinuousJob[S], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        super().__init__(runtime, job, limits)
        self.job = job

    @_limited
    async def start(self, id: str, input: S) -> StartResult:
        """Create instance ``id`` with ``input`` as its state (an existing one is kept)."""
        check_instance_id(id)
        state_json = self.job.state_codec.to_json(input)

        async def run() -> StartResult:
            agg, created = await self._rt.continuous.start(self.job, id, state_json)
            return StartResult(created, _continuous_status(agg))

        return await self._rt.command(run, self._call("start"))

    @_limited
    async def trigger(self, id: str) -> TriggerResult:
        """Run now, bypassing the schedule, and return after the run committed."""
        check_instance_id(id)

        async def run() -> TriggerResult:
            return TriggerResult(*await self._rt.continuous.run(self.job, id, manual=True))

        return await self._rt.command(run, self._call("trigger"))

    @_limited
    async def status(self, id: str) -> ContinuousStatus:
        """The instance's status, run count and next run time (``not_found`` if none)."""
        check_instance_id(id)
        self._check_open("status")
        return _continuous_status(await self._rt.load(ContinuousInstance, self.job.name, id))

    @_limited
    async def get_state(self, id: str) -> S | None:
        """The committed state, or None if there is no such (live) instance."""
        check_instance_id(id)
        self._check_open("get_state")
        agg = await self._rt.load(ContinuousInstance, self.job.name, id)
        if agg is None or not agg.live:
            return None
        return self._rt.decode_state(  # type: ignore[no-any-return]
            self.job.state_codec, agg, agg.d.state, agg.d.state_version
        )

    @_limited
    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Cancel the alarm and remove the state; the history stays."""
        check_instance_id(id)
        check_reason(reason)

        async def run() -> TerminateResult:
            return TerminateResult(
                await self._rt.terminate(ContinuousInstance, self.job.name, id, reason)
            )

        return await self._rt.command(run, self._call("terminate"))

    @_limited
    async def history(self, id: str) -> list[RecordedEvent]:
        """Every record of the instance's log, oldest first (all its generations)."""
        check_instance_id(id)
        return await self._history("continuous", self.job.name, id)


def _debounce_status(agg: DebounceInstance | None) -> DebounceStatus:
    if agg is None or not agg.live:
        return DebounceStatus("not_found", 0, None, None)
    return DebounceStatus(
        agg.status,  # type: ignore[arg-type]
        agg.buffered_events,
        agg.started_at,
        agg.will_flush_at,
    )


@final
class DebounceClient(_KindClient, Generic[E, S]):
    """Commands and reads of one debounce job's instances."""

    def __init__(
        self, runtime: Runtime, job: DebounceJob[E, S], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        super().__init__(runtime, job, limits)
        self.job = job

    @_limited
    async def add(
        self,
        id: str,
        event: E,
        idempotency_key: str | None = None,
    ) -> AddResult:
        """Add ``event`` to the open batch; returns without waiting for any flush."""
        check_instance_id(id)
        key = check_idempotency_key(idempotency_key)
        value = self.job.event_codec.validate(event)
        event_json = self.job.event_codec.dump(value)

        async def run() -> AddResult:
            agg, opened, duplicate = await self._rt.debounce.add(
                self.job, id, value, event_json, key
            )
            return AddResult(agg.buffered_events, agg.will_flush_at, opened, duplicate)

        return await self._rt.command(run, self._call("add"))

    @_limited
    async def flush(self, id: str) -> FlushResult:
        """Flush the next batch now and return after the flush committed (or failed)."""
        check_instance_id(id)

        async def run() -> FlushResult:
            flush = self._rt.debounce.flush
            flushed, count, reason, retry = await flush(self.job, id, manual=True)
            return FlushResult(flushed, count, reason, retry)  # type: ignore[arg-type]

        return await self._rt.command(run, self._call("flush"))

    @_limited
    async def clear(self, id: str) -> ClearResult:
        """Drop every buffered event unprocessed."""
        check_instance_id(id)

        async def run() -> ClearResult:
            discarded = await self._rt.debounce.clear(self.job, id)
            return ClearResult(discarded > 0, discarded)

        return await self._rt.command(run, self._call("clear"))

    @_limited
    async def status(self, id: str) -> DebounceStatus:
        """The instance's status, pending event count and flush time (``not_found`` if none)."""
        check_instance_id(id)
        self._check_open("status")
        return _debounce_status(await self._rt.load(DebounceInstance, self.job.name, id))

    @_limited
    async def get_state(self, id: str) -> S | None:
        """The state of the batch that flushes next, or None."""
        check_instance_id(id)
        self._check_open("get_state")
        agg = await self._rt.load(DebounceInstance, self.job.name, id)
        if agg is None or not agg.live:
            return None
        return self._rt.decode_state(  # type: ignore[no-any-return]
            self.job.state_codec, agg, agg.current_state, agg.current_state_version
        )

    @_limited
    async def history(self, id: str) -> list[RecordedEvent]:
        """Every record of the instance's log, oldest first (all its generations)."""
        check_instance_id(id)
        return await self._history("debounce", self.job.name, id)


def _task_status(agg: TaskInstance | None) -> TaskStatus:
    if agg is None or not agg.live:
        return TaskStatus("not_found", None, 0, 0, None)
    d = agg.d
    return TaskStatus(agg.status, d.alarm_at, d.event_count, d.execute_count, d.created_at)  # type: ignore[arg-type]


@final
class TaskClient(_KindClient, Generic[E, S]):
    """Commands and reads of one task job's instances."""

    def __init__(
        self, runtime: Runtime, job: TaskJob[E, S], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        super().__init__(runtime, job, limits)
        self.job = job

    @_limited
    async def send(
        self,
        id: str,
        event: E,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Deliver ``event``: runs ``on_event`` (and ``on_idle``) and commits."""
        check_instance_id(id)
        key = check_idempotency_key(idempotency_key)
        value = self.job.event_codec.validate(event)
        event_json = self.job.event_codec.dump(value)

        async def run() -> SendResult:
            agg, created, duplicate = await self._rt.task.send(
                self.job, id, value, event_json, key
            )
            return SendResult(created, agg.d.alarm_at, duplicate)

        return await self._rt.command(run, self._call("send"))

    @_limited
    async def trigger(self, id: str) -> TriggerResult:
        """Run ``execute`` now and return after it committed; the alarm stays."""
        check_instance_id(id)

        async def run() -> TriggerResult:
            return TriggerResult(*await self._rt.task.execute(self.job, id, by_alarm=False))

        return await self._rt.command(run, self._call("trigger"))

    @_limited
    async def status(self, id: str) -> TaskStatus:
        """The instance's status, alarm and counters (``not_found`` if none)."""
        check_instance_id(id)
        self._check_open("status")
        return _task_status(await self._rt.load(TaskInstance, self.job.name, id))

    @_limited
    async def get_state(self, id: str) -> TaskState[S] | None:
        """The committed state and the pending alarm, or None if there is no such instance."""
        check_instance_id(id)
        self._check_open("get_state")
        agg = await self._rt.load(TaskInstance, self.job.name, id)
        if agg is None or not agg.live:
            return None
        state = self._rt.decode_state(self.job.state_codec, agg, agg.d.state, agg.d.state_version)
        return TaskState(state, agg.d.alarm_at)

    @_limited
    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Cancel the alarm and remove the state; the history stays."""
        check_instance_id(id)
        check_reason(reason)

        async def run() -> TerminateResult:
            return TerminateResult(
                await self._rt.terminate(TaskInstance, self.job.name, id, reason)
            )

        return await self._rt.command(run, self._call("terminate"))

    @_limited
    async def history(self, id: str) -> list[RecordedEvent]:
        """Every record of the instance's log, oldest first (all its generations)."""
        check_instance_id(id)
        return await self._history("task", self.job.name, id)


# ---- the facade --------------------------------------------------------------------------


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

    def _check_open(self, method: str) -> None:
        self._rt.check_open(f"jobs.{method}()")

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
        return self._rt.subscribe(observer)

    async def wait_idle(self) -> None:
        """Return once every due alarm has run and committed (for tests and scripts)."""
        self._check_open("wait_idle")
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
    """A timedelta >= 0 from a timedelta or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise ConfigurationError(
            f"{name} must be a timedelta (or seconds) >= 0, got {value!r}; "
            "write e.g. timedelta(seconds=5)"
        )
    return value


def _only_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one error inside nested single-error groups (None if there are several)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        if len(error.exceptions) != 1:
            return None
        error = error.exceptions[0]
    return error


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
    if not isinstance(registry, Registry):
        raise ConfigurationError(f"open_jobs() needs a durable_jobs.Registry, got {registry!r}")
    registry.check()
    if clock is None:
        clock = SystemClock()
        if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
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
    for observer in observers:
        if not callable(observer):
            raise ConfigurationError(
                f"observers must be callables (record) -> None, got {observer!r}"
            )
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
    commit, then are cancelled (they run again after the next start).
    ``poll_interval`` re-reads the alarm index periodically, to see alarms that
    other processes set: ``"auto"`` is 5 s on shared stores (Postgres) and
    never on single-process ones; None turns it off. ``run_alarms=False`` makes
    a client only (say, a web process): its calls work, and ``trigger``/``flush``
    still run their handler in the caller, but alarms (including runs made due
    now by ``start`` or a full batch) are left to the worker processes serving
    the same shared store. ``lease`` (shared stores; default 30 s, at least 1 s)
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
    lease = _duration("lease", lease)
    if lease < MIN_LEASE:
        raise ConfigurationError(
            f"lease must be at least {MIN_LEASE.total_seconds():g} s, got {lease!r}; "
            "write e.g. timedelta(seconds=30)"
        )
    owned = isinstance(store, str)
    opened = await _open_store(store, encryption_key)
    if not isinstance(run_alarms, bool):
        raise ConfigurationError(f"run_alarms must be True or False, got {run_alarms!r}")
    if not run_alarms and not opened.shared:
        msg = (
            f"run_alarms=False needs a store that several processes serve (Postgres); on "
            f"{opened.url} nothing else would run the alarms."
        )
        if owned:
            opened.close()
        raise ConfigurationError(msg)
    if poll_interval == "auto":
        poll_interval = timedelta(seconds=5) if opened.shared else None
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
                    yield Jobs(runtime, limits)
                except BaseException as exc:
                    body_error = exc
                finally:
                    with trio.CancelScope(shield=True):
                        await runtime.shutdown()
        except BaseExceptionGroup as group:
            # The runtime failed (a bug, or a store that broke while starting): one
            # error comes out as itself, so `except dj.StoreError` catches it.
            leaf = _only_error(group)
            if leaf is None:
                raise
            raise leaf from None
        if body_error is not None:
            raise body_error
    finally:
        opened.release_runtime()
        if owned:
            with trio.CancelScope(shield=True):
                await in_thread(opened.close)


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
