"""Job definitions: what a decorator on a registry makes, one class per kind.

A definition is made once, at import time; everything that can be checked
without running the job is checked there (names, schedules, handler
signatures, types). Handlers added afterwards (``.on_event`` and friends) are
checked when they are attached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, final

from durable_jobs._definitions.checks import (
    DEFAULT_IDEMPOTENCY_WINDOW,
    DEFAULT_MAX_BACKLOG,
    check_debounce_window,
    check_handler,
    check_retry,
    check_timeout,
    check_version,
    check_window,
    is_async,
)
from durable_jobs._definitions.codecs import TypeCodec
from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.ids import Kind, check_job_name
from durable_jobs._domain.policy import ContinuousPolicy, DebouncePolicy, Window
from durable_jobs._domain.schedules import MisfirePolicy, Schedule
from durable_jobs._errors import ConfigurationError, HandlerError, ValidationError

if TYPE_CHECKING:
    from durable_jobs._definitions.contexts import DebounceEventContext, TaskContext

__all__ = ["ContinuousJob", "DebounceJob", "JobDefinition", "TaskJob"]

S = TypeVar("S")
E = TypeVar("E")
F = TypeVar("F", bound=Callable[..., Any])


class JobDefinition:
    """What all job definitions share: a kind, a name, a type version and a state type."""

    kind: Kind
    name: str
    version: int
    state_type: Any
    retry: Retry | None
    state_codec: TypeCodec[Any]
    #: The longest a call of one of the job's async handlers may run (None: no limit).
    timeout: timedelta | None = None
    event_codec: TypeCodec[Any] | None = None

    def _check_common(self, name: str, timeout: object, version: object) -> None:
        """Check and keep what every kind takes: the name, the timeout and the version."""
        self.name = check_job_name(name)
        self.timeout = check_timeout(timeout, name)
        self.version = check_version(version, name)

    def missing(self) -> list[str]:
        """Handlers this job still needs (empty when it is complete)."""
        return []

    def problems(self) -> list[str]:
        """What makes this job unusable as it is defined (checked once all its handlers
        could be attached: by ``Registry.check``)."""
        return []

    def _codecs(self) -> list[TypeCodec[Any]]:
        codecs = [self.state_codec]
        if self.event_codec is not None and self.event_codec is not self.state_codec:
            codecs.append(self.event_codec)
        return codecs

    def _add_upcaster(self, codec: TypeCodec[Any], from_version: object, fn: Any) -> None:
        role = f"upcast_{codec.what}"
        if (
            isinstance(from_version, bool)
            or not isinstance(from_version, int)
            or not 1 <= from_version < self.version
        ):
            msg = (
                f"from_version of {role} on job {self.name!r} must be an int from 1 to "
                f"{self.version - 1} (the job is version {self.version}; an upcaster turns "
                f"JSON of version N into JSON of version N + 1), got {from_version!r}."
            )
            raise ConfigurationError(msg)
        check_handler(fn, job=self.name, role=role, params="data", may_be_sync=True)
        if is_async(fn):
            msg = f"The {role} function of job {self.name!r} must be a plain (not async) function."
            raise ConfigurationError(msg)
        if from_version in codec.upcasters:
            msg = f"Job {self.name!r} already has an {role} from version {from_version}."
            raise ConfigurationError(msg)
        codec.upcasters[from_version] = fn

    def upcast_state(self, *, from_version: int) -> Callable[[F], F]:
        """Decorator: ``def up(data) -> data`` turning stored state JSON of version
        ``from_version`` into the JSON of version ``from_version + 1``."""
        if self.event_codec is self.state_codec:
            msg = (
                f"Debounce job {self.name!r} has no state type of its own (its state is the "
                "event type): register @job.upcast_event instead."
            )
            raise ConfigurationError(msg)

        def register(fn: F) -> F:
            self._add_upcaster(self.state_codec, from_version, fn)
            return fn

        return register

    def upcast_event(self, *, from_version: int) -> Callable[[F], F]:
        """Decorator: ``def up(data) -> data`` turning stored event JSON of version
        ``from_version`` into the JSON of version ``from_version + 1``."""
        codec = self.event_codec
        if codec is None:
            msg = f"{self.kind.capitalize()} job {self.name!r} has no event type to upcast."
            raise ConfigurationError(msg)

        def register(fn: F) -> F:
            self._add_upcaster(codec, from_version, fn)
            return fn

        return register

    def missing_upcasters(self, version: int) -> list[str]:
        """The upcasters (``upcast_state(from_version=N)``) that reading JSON of
        ``version`` needs and this job lacks."""
        out: list[str] = []
        for codec in self._codecs():
            # Runs of missing steps, found from the upcasters there are: never a loop over
            # range(version, self.version), which may be huge (version=10**12).
            start = version
            runs: list[tuple[int, int]] = []
            for step in sorted(s for s in codec.upcasters if version <= s < self.version):
                if step > start:
                    runs.append((start, step - 1))
                start = step + 1
            if start < self.version:
                runs.append((start, self.version - 1))
            for first, last in runs:
                if last - first < 3:
                    steps = range(first, last + 1)
                    out.extend(f"upcast_{codec.what}(from_version={n})" for n in steps)
                else:
                    out.append(f"upcast_{codec.what}(from_version=N) for N = {first} to {last}")
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.name!r}>"


@final
class ContinuousJob(JobDefinition, Generic[S]):
    """A continuous job: ``execute(ctx)`` runs on a schedule."""

    kind: Kind = "continuous"

    def __init__(
        self,
        name: str,
        *,
        state: Any,
        schedule: Schedule,
        execute: Callable[[Any], Awaitable[None]],
        start_immediately: bool = True,
        retry: Retry | None = None,
        misfire: MisfirePolicy = "run_once",
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> None:
        self._check_common(name, timeout, version)
        if not isinstance(cast(object, schedule), Schedule):
            msg = (
                f"schedule of continuous job {name!r} must come from durable_jobs.every() "
                f"or durable_jobs.cron(), got {schedule!r}."
            )
            raise ConfigurationError(msg)
        if misfire not in ("run_once", "skip"):
            msg = f"misfire of job {name!r} must be 'run_once' or 'skip', got {misfire!r}."
            raise ConfigurationError(msg)
        if not isinstance(cast(object, start_immediately), bool):
            msg = f"start_immediately of job {name!r} must be True or False."
            raise ConfigurationError(msg)
        check_handler(execute, job=name, role="execute", params="ctx")
        self.state_type = state
        self.state_codec = TypeCodec(state, what="state", job=name, version=self.version)
        self.schedule = schedule
        self.execute = execute
        self.start_immediately = start_immediately
        self.retry = check_retry(retry, name)
        self.misfire: MisfirePolicy = misfire
        #: What the domain reads to plan and finish runs.
        self.policy = ContinuousPolicy(schedule, misfire, self.retry, start_immediately)


@final
class DebounceJob(JobDefinition, Generic[E, S]):
    """A debounce job: events are collected and ``execute(ctx)`` flushes each batch once."""

    kind: Kind = "debounce"

    def __init__(
        self,
        name: str,
        *,
        event: Any,
        state: Any,
        flush_after: timedelta,
        execute: Callable[[Any], Awaitable[None]],
        max_events: int | None = None,
        retry: Retry | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
        window: Window = "fixed",
        max_wait: timedelta | None = None,
        max_backlog: int | None = DEFAULT_MAX_BACKLOG,
    ) -> None:
        self._check_common(name, timeout, version)
        check_debounce_window(window, max_wait, flush_after, name)
        for option, value in (("max_events", max_events), ("max_backlog", max_backlog)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                msg = f"{option} of debounce job {name!r} must be an int >= 1 or None: {value!r}."
                raise ConfigurationError(msg)
        retry = check_retry(retry, name)
        if retry is not None and retry.on_exhausted == "continue":
            msg = (
                f"on_exhausted='continue' is for continuous jobs; debounce job {name!r} "
                "would drop a batch. Use 'pause' (keep it, status failed), 'terminate' "
                "or a hook."
            )
            raise ConfigurationError(msg)
        check_handler(execute, job=name, role="execute", params="ctx")
        self.event_type = event
        self.event_codec: TypeCodec[E] = TypeCodec(
            event, what="event", job=name, version=self.version
        )
        self.state_type = event if state is None else state
        self.state_codec = (
            self.event_codec
            if state is None
            else TypeCodec(state, what="state", job=name, version=self.version)
        )
        self.flush_after = flush_after
        self.max_events = max_events
        self.execute = execute
        self.retry = retry
        self.idempotency_window = check_window(idempotency_window, name)
        self.reducer: Callable[[Any], Any] | None = None
        #: What the domain reads to plan and finish flushes.
        self.window: Window = window
        self.max_wait = max_wait
        self.max_backlog = max_backlog
        self.policy = DebouncePolicy(
            flush_after, max_events, retry, self.idempotency_window, window, max_wait, max_backlog
        )

    def on_event(
        self, fn: Callable[[DebounceEventContext[E, S]], S | Awaitable[S]]
    ) -> Callable[[DebounceEventContext[E, S]], S | Awaitable[S]]:
        """Decorator: the reducer ``on_event(ctx) -> new_state`` (plain or async).

        Typed with the job's event and state types: a type checker refuses a reducer
        whose context or returned state does not fit them."""
        check_handler(fn, job=self.name, role="on_event", params="ctx", may_be_sync=True)
        if self.reducer is not None:
            msg = f"Debounce job {self.name!r} already has an on_event reducer."
            raise ConfigurationError(msg)
        self.reducer = fn
        return fn

    def problems(self) -> list[str]:
        """A job with no reducer keeps each event as its state: refused when the state
        type can never read an event (event=str, state=list[str])."""
        if self.reducer is not None or self.state_codec is self.event_codec:
            return []
        dumped = self.event_codec.dumped_kind()
        only = self.state_codec.only_kind()
        if dumped is None or only is None or dumped == only:
            return []
        return [
            f"debounce job {self.name!r} has no on_event reducer, so its state is the latest "
            f"event, but its event type ({self.event_type!r}) is stored as a JSON {dumped} "
            f"and its state type ({self.state_type!r}) reads only a JSON {only}: add an "
            "on_event reducer (@<the job's definition>.on_event) that builds the state, or "
            "make the state type match the event type"
        ]

    def event_as_state(self, event_json: Any, instance_id: str) -> Any:
        """The state JSON after an event when the job has no reducer: the event's own
        JSON, or :class:`HandlerError` if it does not fit the state type (as a reducer's
        state that does not fit), and the event is not added."""
        codec = self.state_codec
        if codec is not self.event_codec:
            try:
                codec.check_json(event_json)
            except ValidationError as invalid:
                msg = (
                    f"Debounce job {self.name!r} has no on_event reducer, so its state is the "
                    f"latest event, and the event added to instance {instance_id!r} does not "
                    f"fit its state type: {invalid} Add an on_event reducer that builds the "
                    "state, or make the state type accept the event. The event was not added."
                )
                raise HandlerError(msg) from invalid
        return event_json


@final
class TaskJob(JobDefinition, Generic[E, S]):
    """A task job: ``on_event(event, ctx)`` reacts to events, ``execute(ctx)`` to its alarm."""

    kind: Kind = "task"

    def __init__(
        self,
        name: str,
        *,
        event: Any,
        state: Any,
        execute: Callable[[Any], Awaitable[None]],
        on_event: Callable[[E, TaskContext[S]], Awaitable[None]] | None = None,
        on_idle: Callable[[TaskContext[S]], Awaitable[None]] | None = None,
        on_error: Callable[[Exception, TaskContext[S]], Awaitable[None]] | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> None:
        self._check_common(name, timeout, version)
        check_handler(execute, job=name, role="execute", params="ctx")
        self.event_type = event
        self.event_codec: TypeCodec[E] = TypeCodec(
            event, what="event", job=name, version=self.version
        )
        self.state_type = state
        self.state_codec = TypeCodec(state, what="state", job=name, version=self.version)
        self.execute = execute
        self.retry = None
        self.idempotency_window = check_window(idempotency_window, name)
        self.event_handler: Callable[[Any, Any], Awaitable[None]] | None = None
        self.idle_handler: Callable[[Any], Awaitable[None]] | None = None
        self.error_handler: Callable[[BaseException, Any], Awaitable[None]] | None = None
        if on_event is not None:
            self.on_event(on_event)
        if on_idle is not None:
            self.on_idle(on_idle)
        if on_error is not None:
            self.on_error(on_error)

    def _attach(self, attr: str, role: str, params: str, fn: Any) -> None:
        check_handler(fn, job=self.name, role=role, params=params)
        if getattr(self, attr) is not None:
            msg = f"Task job {self.name!r} already has an {role} handler."
            raise ConfigurationError(msg)
        setattr(self, attr, fn)

    def on_event(
        self, fn: Callable[[E, TaskContext[S]], Awaitable[None]]
    ) -> Callable[[E, TaskContext[S]], Awaitable[None]]:
        """Decorator: ``async def on_event(event, ctx)``, run for every ``send``
        (typed with the job's event and state types, as the next two)."""
        self._attach("event_handler", "on_event", "event, ctx", fn)
        return fn

    def on_idle(
        self, fn: Callable[[TaskContext[S]], Awaitable[None]]
    ) -> Callable[[TaskContext[S]], Awaitable[None]]:
        """Decorator: ``async def on_idle(ctx)``, run after a handler that left no alarm."""
        self._attach("idle_handler", "on_idle", "ctx", fn)
        return fn

    def on_error(
        self, fn: Callable[[Exception, TaskContext[S]], Awaitable[None]]
    ) -> Callable[[Exception, TaskContext[S]], Awaitable[None]]:
        """Decorator: ``async def on_error(error, ctx)``, run when a handler raised."""
        self._attach("error_handler", "on_error", "error, ctx", fn)
        return fn

    def missing(self) -> list[str]:
        """``["on_event"]`` until the task's event handler is added, then empty."""
        return [] if self.event_handler is not None else ["on_event"]
