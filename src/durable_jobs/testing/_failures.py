"""Planned handler failures for tests: :class:`FailurePlan` and :class:`InjectedFailure`."""

from __future__ import annotations

import weakref
from typing import Any, final, get_args

from durable_jobs._definitions.jobs import JobDefinition
from durable_jobs._errors import ValidationError
from durable_jobs._runtime.handlers import Role

__all__ = ["FailurePlan", "InjectedFailure"]

#: The handler names a job's calls are recorded under (``Run.handler``), which are
#: also the names :meth:`FailurePlan.check` and :meth:`FailurePlan.fail_next` take.
HANDLERS: tuple[str, ...] = get_args(Role)


class InjectedFailure(Exception):
    """The failure a :class:`FailurePlan` makes a handler raise."""


InjectedFailure.__module__ = "durable_jobs.testing"


def check_handler_name(handler: object, *, allow_none: bool = False) -> None:
    """ValidationError unless ``handler`` names a handler: a typo would otherwise match
    no call at all, and the failure it plans (or the calls it reads) silently never be."""
    if handler is None and allow_none:
        return
    if not isinstance(handler, str) or handler not in HANDLERS:
        also = ", or None for every handler" if allow_none else ""
        msg = f"handler must be one of {', '.join(HANDLERS)}{also}; got {handler!r}"
        raise ValidationError(msg)


def _job_name(job: object) -> str | None:
    """The name ``job=`` aims at: a job name or definition, or None (any job)."""
    if job is None or isinstance(job, str):
        return job
    if isinstance(job, JobDefinition):
        return job.name
    msg = f"job must be a job name, a job definition or None (any job), got {job!r}"
    raise ValidationError(msg)


@final
class FailurePlan:
    """Which upcoming handler calls fail: a switch a job's handlers consult.

    Call :meth:`check` first thing in a handler; it raises
    :class:`InjectedFailure` when a failure is planned for that instance (and
    handler). Plans count calls per ``(instance_id, handler)`` (and job, with
    ``job=``), so concurrent runs of other instances do not change which call
    fails::

        failures = FailurePlan()

        @registry.continuous("sync", state=int, schedule=dj.every(timedelta(minutes=5)))
        async def sync(ctx: dj.ContinuousContext[int]) -> None:
            failures.check(ctx)
            ...

        failures.fail_next("user-1", times=2)  # the next two runs of user-1 raise
        failures.fail_next("user-1", job=sync)  # ... of sync's user-1 only

    Instance ids are per job, so the same id may name instances of several of
    your jobs. Without ``job=`` a planned failure goes to the first matching
    call of *any* job that checks this plan; with ``job=`` only that job's
    calls take it (and they take such failures before the ones planned for
    any job).
    """

    def __init__(self) -> None:
        # (job name or None for any job, instance id, handler) -> failures left.
        self._planned: dict[tuple[str | None, str, str], int] = {}
        self.injected: list[tuple[str, str]] = []
        _PLANS.add(self)

    def fail_next(
        self,
        instance_id: str,
        times: int = 1,
        *,
        handler: str = "execute",
        job: str | JobDefinition | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``handler`` for ``instance_id`` raise.

        ``job`` (a name or definition) aims the failures at that job's
        instance; without it the next matching calls of any job take them.
        ``handler`` names the handler (``execute``, ``on_event``, ``on_idle``,
        ``on_error``, ``reducer``, ``on_exhausted``); any other name is a
        ValidationError, as no call would ever take the failure.
        """
        if isinstance(times, bool) or not isinstance(times, int) or times < 0:
            msg = f"times must be an int >= 0, got {times!r}"
            raise ValidationError(msg)
        given: object = instance_id  # callers may pass anything
        if not isinstance(given, str):
            msg = f"instance_id must be a string, got {instance_id!r}"
            raise ValidationError(msg)
        check_handler_name(handler)
        key = (_job_name(job), instance_id, handler)
        self._planned[key] = self._planned.get(key, 0) + times

    def pending(
        self,
        instance_id: str,
        *,
        handler: str = "execute",
        job: str | JobDefinition | None = None,
    ) -> int:
        """How many failures planned by ``fail_next`` with these arguments are still to come.

        ``job=None`` counts those planned for any job, not those aimed at one.
        """
        check_handler_name(handler)
        return self._planned.get((_job_name(job), instance_id, handler), 0)

    def clear(self) -> None:
        """Forget every planned failure (and what was injected)."""
        self._planned.clear()
        self.injected.clear()

    def unused(self) -> list[str]:
        """The failures planned and not taken yet, one line each (what ``fail_next`` got)."""
        return [
            f"fail_next({instance_id!r}, times={left}, handler={handler!r}"
            + (f", job={job!r})" if job is not None else ")")
            for (job, instance_id, handler), left in self._planned.items()
            if left > 0
        ]

    def check(self, ctx: Any, handler: str = "execute") -> None:
        """Raise :class:`InjectedFailure` if a failure of this call is planned.

        ``ctx`` is the handler's context (or an instance id string, which
        takes only failures planned for any job: it does not say which job
        calls). A failure aimed at the context's job is taken first.
        """
        check_handler_name(handler)
        if isinstance(ctx, str):
            instance_id, job_name = ctx, None
        else:
            instance_id = str(ctx.instance_id)
            job_name = getattr(ctx, "job_name", None)
        targets: list[tuple[str | None, str, str]] = [(None, instance_id, handler)]
        if isinstance(job_name, str):
            targets.insert(0, (job_name, instance_id, handler))
        for key in targets:
            left = self._planned.get(key, 0)
            if left <= 0:
                continue
            if left == 1:
                del self._planned[key]
            else:
                self._planned[key] = left - 1
            self.injected.append((instance_id, handler))
            msg = f"injected failure of {handler} for instance {instance_id!r}"
            raise InjectedFailure(msg)


#: Every FailurePlan alive: the pytest plugin checks them after each harness test.
_PLANS: weakref.WeakSet[FailurePlan] = weakref.WeakSet()


def take_unused_failures() -> list[str]:
    """The failures every :class:`FailurePlan` has planned and not used; clears those plans.

    The pytest plugin calls it after each test that took its harness: a planned
    failure that no call took would otherwise be taken by the next test's run.
    """
    unused: list[str] = []
    for plan in list(_PLANS):
        left = plan.unused()
        if left:
            unused.extend(left)
            plan.clear()
    return unused
