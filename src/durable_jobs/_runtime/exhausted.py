"""The end of a run whose last try failed: the retry policy's ``on_exhausted`` decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from durable_jobs._definitions.jobs import JobDefinition
from durable_jobs._domain.instance import ExhaustedAction
from durable_jobs._domain.policy import RunEnd

if TYPE_CHECKING:
    from durable_jobs._runtime.runtime import Runtime

__all__ = ["finish_exhausted"]


class _Finish(Protocol):
    def __call__(self, *, exhausted: ExhaustedAction) -> RunEnd: ...


async def finish_exhausted(
    rt: Runtime,
    job: JobDefinition,
    error: BaseException | None,
    ctx: object,
    *,
    instance_id: str,
    fatal: BaseException | None,
    finish: _Finish,
) -> tuple[RunEnd, BaseException | None]:
    """Asks the job's ``on_exhausted`` (with ``ctx``) what to do, finishes the run with its
    answer through ``finish``; returns that result and the first fatal error (``fatal``, else
    the hook's), to raise once the outcome is recorded."""
    assert error is not None
    exhausted, hook_fatal = await rt.handlers.exhausted_action(
        job, error, ctx, instance_id=instance_id
    )
    return finish(exhausted=exhausted), fatal or hook_fatal
