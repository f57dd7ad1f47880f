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

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal, TypeVar, final, overload

from durable_jobs._definitions.checks import (
    DEFAULT_IDEMPOTENCY_WINDOW,
    DEFAULT_MAX_BACKLOG,
    check_debounce_window,
    check_timeout,
)
from durable_jobs._definitions.contexts import ContinuousContext, DebounceContext, TaskContext
from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._domain.backoff import Retry
from durable_jobs._domain.ids import KINDS, Kind, check_job_name, check_kind
from durable_jobs._domain.policy import Window
from durable_jobs._domain.schedules import MisfirePolicy, Schedule
from durable_jobs._errors import ConfigurationError, JobNotFound

__all__ = ["Registry"]

S = TypeVar("S")
E = TypeVar("E")
F = TypeVar("F", bound=Callable[..., Any])


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
        check_timeout(timeout, name)

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
        max_backlog: int | None = DEFAULT_MAX_BACKLOG,
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
        max_backlog: int | None = DEFAULT_MAX_BACKLOG,
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
        max_backlog: int | None = DEFAULT_MAX_BACKLOG,
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
        max_backlog: int | None = DEFAULT_MAX_BACKLOG,
    ) -> Callable[[Callable[[Any], Awaitable[None]]], DebounceJob[Any, Any]]:
        """Decorator: register ``async def execute(ctx)`` as a debounce job's flush.

        ``state`` defaults to the event type; add a reducer with ``@job.on_event``.
        ``window="fixed"`` (the default) makes a batch's flush due ``flush_after``
        after its first event; ``window="sliding"`` moves it to ``flush_after``
        after every accepted event, but never later than ``max_wait`` after the
        first (``max_wait=None``: no cap, a steady stream then never flushes).
        ``max_backlog`` bounds the closed batches an instance keeps while their
        flush fails, retries or runs: an ``add`` that would close one more raises
        :class:`~durable_jobs.BacklogFull` (``None``: no bound).
        """
        check_job_name(name)
        check_timeout(timeout, name)
        check_debounce_window(window, max_wait, flush_after, name)

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
                max_backlog=max_backlog,
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
        on_error: Callable[[Exception, Any], Awaitable[None]] | None = None,
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
        on_error: Callable[[Exception, Any], Awaitable[None]] | None = None,
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
        on_error: Callable[[Exception, Any], Awaitable[None]] | None = None,
        idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        timeout: timedelta | float | None = None,
        version: int = 1,
    ) -> Callable[[Callable[[Any], Awaitable[None]]], TaskJob[Any, Any]]:
        """Decorator: register ``async def execute(ctx)`` (run by the alarm) as a task job.

        Attach ``@job.on_event`` (required), ``@job.on_idle`` and ``@job.on_error``,
        or pass them here.
        """
        check_job_name(name)
        check_timeout(timeout, name)

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
            others: list[str] = [k for k, of_kind in self._jobs.items() if name in of_kind]
            raise JobNotFound(kind, name, list(jobs), other_kinds=others) from None

    def check(self) -> None:
        """Raise :class:`ConfigurationError` if a job is missing a required handler, or
        cannot work as defined (see :meth:`JobDefinition.problems`)."""
        problems = [
            f"{job.kind} job {job.name!r} has no {handler} handler (decorate one with "
            f"@<the job's definition>.{handler}, or pass {handler}= to registry.{job.kind}())"
            for jobs in self._jobs.values()
            for job in jobs.values()
            for handler in job.missing()
        ]
        if problems:
            raise ConfigurationError("Incomplete job definitions: " + "; ".join(problems) + ".")
        problems = [
            p for jobs in self._jobs.values() for job in jobs.values() for p in job.problems()
        ]
        if problems:
            raise ConfigurationError("Unusable job definitions: " + "; ".join(problems) + ".")

    def __repr__(self) -> str:
        counts = ", ".join(f"{len(v)} {k}" for k, v in self._jobs.items())
        return f"<Registry {counts}>"
