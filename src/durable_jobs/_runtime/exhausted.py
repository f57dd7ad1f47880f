"""The end of a run whose last try failed: the retry policy's ``on_exhausted`` decides."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from durable_jobs._definitions.jobs import JobDefinition
from durable_jobs._domain.instance import ExhaustedAction, error_repr
from durable_jobs._domain.policy import RunEnd
from durable_jobs._telemetry import log_fields

if TYPE_CHECKING:
    from durable_jobs._runtime.runtime import Runtime

__all__ = ["finish_exhausted"]

log = logging.getLogger("durable_jobs.runtime")


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
    statement_failed: BaseException | None = None,
    run_count: int | None = None,
    attempt: int | None = None,
    link: str | None = None,
) -> tuple[RunEnd, BaseException | None]:
    """Asks the job's ``on_exhausted`` (with ``ctx``) what to do, finishes the run with its
    answer through ``finish``; returns that result and the first fatal error (``fatal``, else
    the hook's), to raise once the outcome is recorded.

    ``statement_failed``: the hook was asked already and one of its ``ctx.execute``
    statements failed at the commit. That is the hook failing, as if it had raised: it is
    not asked again, and the instance is paused. ``run_count``, ``attempt`` and ``link``
    are the failed run's, for the hook's span (see :meth:`HandlerCalls.call`).
    """
    assert error is not None
    if statement_failed is not None:
        job_kind, name = job.kind, job.name
        log.warning(
            "A statement of the on_exhausted hook of %s job %r instance %r failed when "
            "committed (%s); the instance is paused",
            job_kind,
            name,
            instance_id,
            error_repr(statement_failed),
            extra=log_fields(job_kind, name, instance_id, run_count=run_count, attempt=attempt),
        )
        return finish(exhausted="pause"), fatal
    exhausted, hook_fatal = await rt.handlers.exhausted_action(
        job, error, ctx, instance_id=instance_id, run_count=run_count, attempt=attempt, link=link
    )
    return finish(exhausted=exhausted), fatal or hook_fatal
