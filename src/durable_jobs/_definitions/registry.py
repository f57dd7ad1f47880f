"""Job definitions and the :class:`Registry` that holds them.

A definition is made once, at import time, by a decorator on the job's main
handler; everything that can be checked without running the job is checked
there (names, schedules, handler signatures, types), so a mistake is a
:class:`~durable_jobs.ConfigurationError` when the module loads, not at the
first run. Handlers added afterwards (``.on_event`` and friends) are checked
when they are attached, and :meth:`Registry.check` (run by ``open_jobs``)
catches a job that is still missing one.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar, cast, final, overload

import pydantic
import pydantic_core

from durable_jobs._definitions.contexts import ContinuousContext, DebounceContext, TaskContext
from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.ids import KINDS, Kind, check_job_name, check_kind
from durable_jobs._domain.policy import ContinuousPolicy, DebouncePolicy, Window
from durable_jobs._domain.schedules import MisfirePolicy, Schedule
from durable_jobs._domain.values import check_finite, check_json_value, check_size
from durable_jobs._errors import ConfigurationError, JobNotFound, ValidationError

__all__ = [
    "ContinuousJob",
    "DebounceJob",
    "JobDefinition",
    "Registry",
    "TaskJob",
]

S = TypeVar("S")
E = TypeVar("E")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_IDEMPOTENCY_WINDOW = timedelta(hours=24)


Upcaster = Callable[[Any], Any]


class TypeVersionError(Exception):
    """Stored JSON cannot be brought to the code's type version (callers wrap it)."""


class TypeCodec(Generic[S]):
    """Validates and (de)serialises one user type with a ``pydantic.TypeAdapter``.

    ``version`` is the job's type version: what :meth:`dump` writes. Stored
    JSON of an older version is brought to it by ``upcasters`` (by the version
    they read) before it is validated; see :meth:`read`.
    """

    def __init__(
        self,
        tp: Any,
        *,
        what: str,
        job: str,
        version: int = 1,
        upcasters: dict[int, Upcaster] | None = None,
    ) -> None:
        self.tp = tp
        self.what = what
        self.job = job
        self.version = version
        self.upcasters: dict[int, Upcaster] = {} if upcasters is None else upcasters
        try:
            self.adapter: pydantic.TypeAdapter[S] = pydantic.TypeAdapter(tp)
            self.adapter.json_schema()  # a type pydantic cannot serialise fails now
        except Exception as exc:
            msg = (
                f"The {what} type of job {job!r} ({tp!r}) is not a type pydantic can "
                f"validate and store as JSON: {exc}. Use a pydantic model, a dataclass, "
                "a TypedDict or a plain type such as int or dict[str, Any]."
            )
            raise ConfigurationError(msg) from exc

    def validate(self, value: Any) -> S:
        """``value`` as the type, or :class:`ValidationError` (caller's input)."""
        try:
            return self.adapter.validate_python(value)
        except ValidationError:
            raise
        except Exception as exc:  # pydantic's error, or one a custom validator raised
            msg = f"Invalid {self.what} for job {self.job!r}: {exc}"
            raise ValidationError(msg) from exc

    def to_json(self, value: Any) -> Any:
        """``value`` validated, as plain JSON data (what the log stores)."""
        return self.dump(self.validate(value))

    def dump(self, value: S) -> Any:
        """A value :meth:`validate` returned, as plain JSON data.

        The JSON is validated again, as it will be read back: a model instance
        built without validation (``model_construct``) is passed through by
        pydantic's first check, and must not be stored if it cannot be read.
        What JSON cannot hold exactly (NaN, infinities, lone surrogates, bytes
        that are not UTF-8, nesting deeper than the readers accept) and values
        over the size limit are refused with :class:`ValidationError`.
        """
        try:
            check_finite(self.adapter.dump_python(value, warnings="error"), self.what)
            data = self.adapter.dump_python(value, mode="json", warnings="error")
        except ValidationError as exc:
            raise ValidationError(f"Invalid {self.what} for job {self.job!r}: {exc}") from None
        except Exception as exc:  # pydantic's error, bytes not UTF-8, too deep, ...
            msg = f"Invalid {self.what} for job {self.job!r}: it cannot be stored as JSON: {exc}"
            raise ValidationError(msg) from exc
        try:
            check_json_value(data, self.what)
            encoded = pydantic_core.to_json(data)
            check_size(encoded, self.what)
            self.adapter.validate_json(encoded)
        except ValidationError as exc:
            raise ValidationError(f"Invalid {self.what} for job {self.job!r}: {exc}") from None
        except Exception as exc:
            msg = f"Invalid {self.what} for job {self.job!r}: {exc}"
            raise ValidationError(msg) from exc
        return data

    def from_json(self, data: Any) -> S:
        """JSON data of the current version as the type; raises pydantic's error if it
        does not fit."""
        return self.adapter.validate_json(pydantic_core.to_json(data))

    def missing_upcaster(self, version: int) -> int | None:
        """The first step with no upcaster on the way from ``version`` (None: complete)."""
        for step in range(version, self.version):
            if step not in self.upcasters:
                return step
        return None

    def upcast(self, data: Any, version: int) -> Any:
        """Stored JSON of ``version`` as JSON of the current version.

        Raises :class:`TypeVersionError` for a version newer than the code's, a
        missing upcaster, or an upcaster that raised. The stored data is never
        changed: each upcaster gets a copy.
        """
        if version > self.version:
            msg = (
                f"it was written at version {version} of job {self.job!r}, but this code is "
                f"version {self.version} (was the code rolled back?)"
            )
            raise TypeVersionError(msg)
        if version == self.version:
            return data
        missing = self.missing_upcaster(version)
        if missing is not None:
            msg = (
                f"it was written at version {version} of job {self.job!r} and there is no "
                f"upcaster from version {missing} (register one with "
                f"@job.upcast_{self.what}(from_version={missing}))"
            )
            raise TypeVersionError(msg)
        data = copy.deepcopy(data)
        for step in range(version, self.version):
            try:
                data = self.upcasters[step](data)
            except Exception as exc:
                msg = f"the {self.what} upcaster from version {step} raised {exc!r}"
                raise TypeVersionError(msg) from exc
        return data

    def read(self, data: Any, version: int) -> S:
        """Stored JSON of ``version`` as the type: upcast, then validated.

        Raises :class:`TypeVersionError` or pydantic's error if it does not fit.
        """
        return self.from_json(self.upcast(data, version))


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects too
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _check_handler(
    fn: object, *, job: str, role: str, params: str, may_be_sync: bool = False
) -> None:
    """Raise ConfigurationError unless ``fn`` is a handler taking ``params``."""
    count = len(params.split(","))
    usage = f"{'def' if may_be_sync else 'async def'} {role}({params})"
    if not callable(fn):
        msg = f"The {role} handler of job {job!r} must be callable, like `{usage}`; got {fn!r}."
        raise ConfigurationError(msg)
    if not may_be_sync and not _is_async(fn):
        msg = (
            f"The {role} handler of job {job!r} ({getattr(fn, '__qualname__', fn)!r}) must be "
            f"an async function: `{usage}: ...`."
        )
        raise ConfigurationError(msg)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        sig.bind(*([None] * count))
    except TypeError:
        msg = (
            f"The {role} handler of job {job!r} ({getattr(fn, '__qualname__', fn)!r}) must "
            f"take {count} positional argument{'s' if count > 1 else ''}: `{usage}`; "
            f"its signature is {sig}."
        )
        raise ConfigurationError(msg) from None


def _check_retry(retry: object, job: str) -> Retry | None:
    if retry is not None and not isinstance(retry, Retry):
        msg = f"retry of job {job!r} must be a durable_jobs.Retry or None, got {retry!r}."
        raise ConfigurationError(msg)
    return retry


def _check_timeout(timeout: object, job: str) -> timedelta | None:
    """A handler timeout: None, or a positive timedelta (or number of seconds)."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
        and timeout > 0
    ):
        return timedelta(seconds=timeout)
    if isinstance(timeout, timedelta) and timeout > timedelta(0):
        return timeout
    msg = (
        f"timeout of job {job!r} must be None, a positive timedelta or a positive number "
        f"of seconds, got {timeout!r}."
    )
    raise ConfigurationError(msg)


def _check_version(version: object, job: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        msg = f"version of job {job!r} must be an int >= 1 (default 1), got {version!r}."
        raise ConfigurationError(msg)
    return version


def _check_window(window: object, job: str) -> timedelta:
    if not isinstance(window, timedelta) or window <= timedelta(0):
        msg = (
            f"idempotency_window of job {job!r} must be a positive timedelta "
            f"(default 24 hours), got {window!r}."
        )
        raise ConfigurationError(msg)
    return window


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

    def missing(self) -> list[str]:
        """Handlers this job still needs (empty when it is complete)."""
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
        _check_handler(fn, job=self.name, role=role, params="data", may_be_sync=True)
        if _is_async(fn):
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
            out.extend(
                f"upcast_{codec.what}(from_version={step})"
                for step in range(version, self.version)
                if step not in codec.upcasters
            )
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
        self.name = check_job_name(name)
        self.timeout = _check_timeout(timeout, name)
        self.version = _check_version(version, name)
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
        _check_handler(execute, job=name, role="execute", params="ctx")
        self.state_type = state
        self.state_codec = TypeCodec(state, what="state", job=name, version=self.version)
        self.schedule = schedule
        self.execute = execute
        self.start_immediately = start_immediately
        self.retry = _check_retry(retry, name)
        self.misfire: MisfirePolicy = misfire
        #: What the domain reads to plan and finish runs.
        self.policy = ContinuousPolicy(schedule, misfire, self.retry, start_immediately)


def _check_debounce_window(
    window: object, max_wait: object, flush_after: object, name: str
) -> None:
    """``flush_after`` positive; ``window`` fixed or sliding; ``max_wait`` only with
    sliding, a timedelta no shorter than ``flush_after``."""
    if not isinstance(flush_after, timedelta) or flush_after <= timedelta(0):
        msg = (
            f"flush_after of debounce job {name!r} must be a positive timedelta, "
            f"got {flush_after!r}."
        )
        raise ConfigurationError(msg)
    if window not in ("fixed", "sliding"):
        msg = f'window of debounce job {name!r} must be "fixed" or "sliding", got {window!r}.'
        raise ConfigurationError(msg)
    if max_wait is None:
        return
    if window != "sliding":
        msg = (
            f"max_wait of debounce job {name!r} caps a sliding window: it needs "
            'window="sliding" (a fixed window flushes flush_after after the first event).'
        )
        raise ConfigurationError(msg)
    if not isinstance(max_wait, timedelta) or max_wait < flush_after:
        msg = (
            f"max_wait of debounce job {name!r} must be a timedelta >= flush_after "
            f"({flush_after}), got {max_wait!r}."
        )
        raise ConfigurationError(msg)


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
    ) -> None:
        self.name = check_job_name(name)
        self.timeout = _check_timeout(timeout, name)
        self.version = _check_version(version, name)
        _check_debounce_window(window, max_wait, flush_after, name)
        if max_events is not None and (
            isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1
        ):
            msg = f"max_events of debounce job {name!r} must be an int >= 1 or None."
            raise ConfigurationError(msg)
        retry = _check_retry(retry, name)
        if retry is not None and retry.on_exhausted == "continue":
            msg = (
                f"on_exhausted='continue' is for continuous jobs; debounce job {name!r} "
                "would drop a batch. Use 'pause' (keep it, status failed), 'terminate' "
                "or a hook."
            )
            raise ConfigurationError(msg)
        _check_handler(execute, job=name, role="execute", params="ctx")
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
        self.idempotency_window = _check_window(idempotency_window, name)
        self.reducer: Callable[[Any], Any] | None = None
        #: What the domain reads to plan and finish flushes.
        self.window: Window = window
        self.max_wait = max_wait
        self.policy = DebouncePolicy(
            flush_after, max_events, retry, self.idempotency_window, window, max_wait
        )

    def on_event(self, fn: F) -> F:
        """Decorator: the reducer ``on_event(ctx) -> new_state`` (plain or async)."""
        _check_handler(fn, job=self.name, role="on_event", params="ctx", may_be_sync=True)
        if self.reducer is not None:
            msg = f"Debounce job {self.name!r} already has an on_event reducer."
            raise ConfigurationError(msg)
        self.reducer = fn
        return fn


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
        on_event: Callable[[Any, Any], Awaitable[None]] | None = None,
        on_idle: Callable[[Any], Awaitable[None]] | None = None,
        on_error: Callable[[BaseException, Any], Awaitable[None]] | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> None:
        self.name = check_job_name(name)
        self.timeout = _check_timeout(timeout, name)
        self.version = _check_version(version, name)
        _check_handler(execute, job=name, role="execute", params="ctx")
        self.event_type = event
        self.event_codec: TypeCodec[E] = TypeCodec(
            event, what="event", job=name, version=self.version
        )
        self.state_type = state
        self.state_codec = TypeCodec(state, what="state", job=name, version=self.version)
        self.execute = execute
        self.retry = None
        self.idempotency_window = _check_window(idempotency_window, name)
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
        _check_handler(fn, job=self.name, role=role, params=params)
        if getattr(self, attr) is not None:
            msg = f"Task job {self.name!r} already has an {role} handler."
            raise ConfigurationError(msg)
        setattr(self, attr, fn)

    def on_event(self, fn: F) -> F:
        """Decorator: ``async def on_event(event, ctx)``, run for every ``send``."""
        self._attach("event_handler", "on_event", "event, ctx", fn)
        return fn

    def on_idle(self, fn: F) -> F:
        """Decorator: ``async def on_idle(ctx)``, run after a handler that left no alarm."""
        self._attach("idle_handler", "on_idle", "ctx", fn)
        return fn

    def on_error(self, fn: F) -> F:
        """Decorator: ``async def on_error(error, ctx)``, run when a handler raised."""
        self._attach("error_handler", "on_error", "error, ctx", fn)
        return fn

    def missing(self) -> list[str]:
        """``["on_event"]`` until the task's event handler is added, then empty."""
        return [] if self.event_handler is not None else ["on_event"]


@final
class Registry:
    """The job definitions of an application, by kind and name.

    Define jobs with the :meth:`continuous`, :meth:`debounce` and :meth:`task`
    decorators, then serve the registry with ``durable_jobs.open_jobs``.
    """

    def __init__(self) -> None:
        self._jobs: dict[Kind, dict[str, JobDefinition]] = {k: {} for k in KINDS}

    def _add(self, job: JobDefinition) -> None:
        jobs = self._jobs[job.kind]
        if job.name in jobs:
            msg = (
                f"A {job.kind} job named {job.name!r} is already registered; job names "
                "are unique per kind."
            )
            raise ConfigurationError(msg)
        jobs[job.name] = job

    @overload
    def continuous(
        self,
        name: str,
        *,
        state: type[S],
        schedule: Schedule,
        start_immediately: bool = True,
        retry: Retry | None = None,
        misfire: MisfirePolicy = "run_once",
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> Callable[[Callable[[ContinuousContext[S]], Awaitable[None]]], ContinuousJob[S]]: ...
    @overload
    def continuous(
        self,
        name: str,
        *,
        state: Any,
        schedule: Schedule,
        start_immediately: bool = True,
        retry: Retry | None = None,
        misfire: MisfirePolicy = "run_once",
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> Callable[[Callable[[ContinuousContext[Any]], Awaitable[None]]], ContinuousJob[Any]]: ...
    def continuous(
        self,
        name: str,
        *,
        state: Any,
        schedule: Schedule,
        start_immediately: bool = True,
        retry: Retry | None = None,
        misfire: MisfirePolicy = "run_once",
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> Callable[[Callable[[Any], Awaitable[None]]], ContinuousJob[Any]]:
        """Decorator: register ``async def execute(ctx)`` as a continuous job."""
        check_job_name(name)
        _check_timeout(timeout, name)

        def register(execute: Callable[[Any], Awaitable[None]]) -> ContinuousJob[Any]:
            job: ContinuousJob[Any] = ContinuousJob(
                name,
                state=state,
                schedule=schedule,
                execute=execute,
                start_immediately=start_immediately,
                retry=retry,
                misfire=misfire,
                timeout=timeout,
                version=version,
            )
            self._add(job)
            return job

        return register

    @overload
    def debounce(
        self,
        name: str,
        *,
        event: type[E],
        state: None = None,
        flush_after: timedelta,
        max_events: int | None = None,
        retry: Retry | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
        window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> Callable[[Callable[[DebounceContext[E]], Awaitable[None]]], DebounceJob[E, E]]: ...
    @overload
    def debounce(
        self,
        name: str,
        *,
        event: type[E],
        state: type[S],
        flush_after: timedelta,
        max_events: int | None = None,
        retry: Retry | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
        window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> Callable[[Callable[[DebounceContext[S]], Awaitable[None]]], DebounceJob[E, S]]: ...
    @overload
    def debounce(
        self,
        name: str,
        *,
        event: Any,
        state: Any = None,
        flush_after: timedelta,
        max_events: int | None = None,
        retry: Retry | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
        window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> Callable[[Callable[[DebounceContext[Any]], Awaitable[None]]], DebounceJob[Any, Any]]: ...
    def debounce(
        self,
        name: str,
        *,
        event: Any,
        state: Any = None,
        flush_after: timedelta,
        max_events: int | None = None,
        retry: Retry | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
        window: Window = "fixed",
        max_wait: timedelta | None = None,
    ) -> Callable[[Callable[[Any], Awaitable[None]]], DebounceJob[Any, Any]]:
        """Decorator: register ``async def execute(ctx)`` as a debounce job's flush.

        ``state`` defaults to the event type; add a reducer with ``@job.on_event``.
        ``window="fixed"`` (the default) makes a batch's flush due ``flush_after``
        after its first event; ``window="sliding"`` moves it to ``flush_after``
        after every accepted event, but never later than ``max_wait`` after the
        first (``max_wait=None``: no cap, a steady stream then never flushes).
        """
        check_job_name(name)
        _check_timeout(timeout, name)
        _check_debounce_window(window, max_wait, flush_after, name)

        def register(execute: Callable[[Any], Awaitable[None]]) -> DebounceJob[Any, Any]:
            job: DebounceJob[Any, Any] = DebounceJob(
                name,
                event=event,
                state=state,
                flush_after=flush_after,
                execute=execute,
                max_events=max_events,
                retry=retry,
                idempotency_window=idempotency_window,
                timeout=timeout,
                version=version,
                window=window,
                max_wait=max_wait,
            )
            self._add(job)
            return job

        return register

    @overload
    def task(
        self,
        name: str,
        *,
        event: type[E],
        state: type[S],
        on_event: Callable[[Any, Any], Awaitable[None]] | None = None,
        on_idle: Callable[[Any], Awaitable[None]] | None = None,
        on_error: Callable[[BaseException, Any], Awaitable[None]] | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> Callable[[Callable[[TaskContext[S]], Awaitable[None]]], TaskJob[E, S]]: ...
    @overload
    def task(
        self,
        name: str,
        *,
        event: Any,
        state: Any,
        on_event: Callable[[Any, Any], Awaitable[None]] | None = None,
        on_idle: Callable[[Any], Awaitable[None]] | None = None,
        on_error: Callable[[BaseException, Any], Awaitable[None]] | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> Callable[[Callable[[TaskContext[Any]], Awaitable[None]]], TaskJob[Any, Any]]: ...
    def task(
        self,
        name: str,
        *,
        event: Any,
        state: Any,
        on_event: Callable[[Any, Any], Awaitable[None]] | None = None,
        on_idle: Callable[[Any], Awaitable[None]] | None = None,
        on_error: Callable[[BaseException, Any], Awaitable[None]] | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> Callable[[Callable[[Any], Awaitable[None]]], TaskJob[Any, Any]]:
        """Decorator: register ``async def execute(ctx)`` (run by the alarm) as a task job.

        Attach ``@job.on_event`` (required), ``@job.on_idle`` and ``@job.on_error``,
        or pass them here.
        """
        check_job_name(name)
        _check_timeout(timeout, name)

        def register(execute: Callable[[Any], Awaitable[None]]) -> TaskJob[Any, Any]:
            job: TaskJob[Any, Any] = TaskJob(
                name,
                event=event,
                state=state,
                execute=execute,
                on_event=on_event,
                on_idle=on_idle,
                on_error=on_error,
                idempotency_window=idempotency_window,
                timeout=timeout,
                version=version,
            )
            self._add(job)
            return job

        return register

    def names(self, kind: Kind) -> list[str]:
        """The names of the registered jobs of ``kind``, sorted."""
        return sorted(self._jobs[check_kind(kind)])

    @overload
    def get(self, kind: Literal["continuous"], name: str) -> ContinuousJob[Any]: ...
    @overload
    def get(self, kind: Literal["debounce"], name: str) -> DebounceJob[Any, Any]: ...
    @overload
    def get(self, kind: Literal["task"], name: str) -> TaskJob[Any, Any]: ...
    @overload
    def get(self, kind: Kind, name: str) -> JobDefinition: ...
    def get(self, kind: Kind, name: str) -> JobDefinition:
        """The definition of the ``kind`` job ``name``, or :class:`JobNotFound`."""
        jobs = self._jobs[check_kind(kind)]
        try:
            return jobs[name]
        except KeyError:
            raise JobNotFound(kind, name, list(jobs)) from None

    def check(self) -> None:
        """Raise :class:`ConfigurationError` if a job is missing a required handler."""
        problems = [
            f"{job.kind} job {job.name!r} has no {handler} handler (decorate one with "
            f"@<the job's definition>.{handler}, or pass {handler}= to registry.{job.kind}())"
            for jobs in self._jobs.values()
            for job in jobs.values()
            for handler in job.missing()
        ]
        if problems:
            raise ConfigurationError("Incomplete job definitions: " + "; ".join(problems) + ".")

    def __repr__(self) -> str:
        counts = ", ".join(f"{len(v)} {k}" for k, v in self._jobs.items())
        return f"<Registry {counts}>"
