"""What every per-kind client shares: its runtime, its job, its size limits."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from durable_jobs._clients.results import TerminateResult
from durable_jobs._definitions.jobs import JobDefinition
from durable_jobs._domain.ids import check_instance_id
from durable_jobs._domain.instance import JobInstance
from durable_jobs._domain.values import (
    _LIMITS,
    DEFAULT_LIMITS,
    Limits,
    check_reason,
    limits_in_effect,
)
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime.runtime import Runtime
from durable_jobs._telemetry import _UNTRACED, telemetry

__all__ = ["KindClient", "limited"]

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="KindClient")
A = TypeVar("A", bound=JobInstance)


def limited(
    method: Callable[Concatenate[C, P], Awaitable[R]],
) -> Callable[Concatenate[C, P], Awaitable[R]]:
    """Run a client method with its ``open_jobs``'s size limits in effect (they apply to
    the values it checks and to the handlers it runs in the caller's task), in a span of
    its own (see ``durable_jobs._telemetry``). Limits already in effect in the calling
    task (the same object: the defaults, or a call from a handler) are not set again."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        job = self._definition
        instance_id = args[0] if args else kwargs.get("id")
        span = telemetry.client_call(job.kind, job.name, name, instance_id)
        if _LIMITS.get() is self._limits:  # current_limits()
            if span is _UNTRACED:  # no span: nothing to enter nor leave
                return await method(self, *args, **kwargs)
            with span:
                return await method(self, *args, **kwargs)
        with limits_in_effect(self._limits), span:
            return await method(self, *args, **kwargs)

    return wrapper


class KindClient:
    """One job's client: its runtime, its definition and the size limits in effect."""

    def __init__(
        self, runtime: Runtime, job: JobDefinition, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._rt = runtime
        self._definition = job
        self._limits = limits
        self._names: dict[str, str] = {}

    def _call(self, method: str) -> str:
        """How a call is named in errors, e.g. ``jobs.task('signup').send()`` (made once
        per method: every command passes it)."""
        named = self._names.get(method)
        if named is None:
            job = self._definition
            named = self._names[method] = f"jobs.{job.kind}({job.name!r}).{method}()"
        return named

    def _check_open(self, method: str) -> None:
        self._rt.check_open(self._call(method))

    async def _history(self, kind: Any, job: str, instance_id: str) -> list[RecordedEvent]:
        self._check_open("history")
        return await self._rt.history(kind, job, instance_id)

    async def _load(self, cls: type[A], id: str, method: str) -> A | None:
        """The committed instance ``id`` (live or not), for the read ``method``."""
        check_instance_id(id)
        self._check_open(method)
        return await self._rt.load(cls, self._definition.name, id)

    async def _terminate(
        self, cls: type[JobInstance], id: str, reason: str | None
    ) -> TerminateResult:
        check_instance_id(id)
        check_reason(reason)

        async def run() -> TerminateResult:
            return TerminateResult(
                await self._rt.terminate(cls, self._definition.name, id, reason)
            )

        return await self._rt.command(run, self._call("terminate"))
