"""Planned handler failures for tests: :class:`FailurePlan` and :class:`InjectedFailure`."""

from __future__ import annotations

from typing import Any, final

from durable_jobs._errors import ValidationError

__all__ = ["FailurePlan", "InjectedFailure"]


class InjectedFailure(Exception):
    """The failure a :class:`FailurePlan` makes a handler raise."""


InjectedFailure.__module__ = "durable_jobs.testing"


@final
class FailurePlan:
    """Which upcoming handler calls fail: a switch a job's handlers consult.

    Call :meth:`check` first thing in a handler; it raises
    :class:`InjectedFailure` when a failure is planned for that instance (and
    handler). Plans count calls per ``(instance_id, handler)``, so concurrent
    runs of other instances do not change which call fails::

        failures = FailurePlan()

        @registry.continuous("sync", state=int, schedule=dj.every(timedelta(minutes=5)))
        async def sync(ctx: dj.ContinuousContext[int]) -> None:
            failures.check(ctx)
            ...

        failures.fail_next("user-1", times=2)  # the next two runs of user-1 raise
    """

    def __init__(self) -> None:
        self._planned: dict[tuple[str, str], int] = {}
        self.injected: list[tuple[str, str]] = []

    def fail_next(self, instance_id: str, times: int = 1, *, handler: str = "execute") -> None:
        """Make the next ``times`` calls of ``handler`` for ``instance_id`` raise."""
        if isinstance(times, bool) or not isinstance(times, int) or times < 0:
            msg = f"times must be an int >= 0, got {times!r}"
            raise ValidationError(msg)
        named: list[tuple[str, object]] = [("instance_id", instance_id), ("handler", handler)]
        for name, value in named:
            if not isinstance(value, str):
                msg = f"{name} must be a string, got {value!r}"
                raise ValidationError(msg)
        key = (instance_id, handler)
        self._planned[key] = self._planned.get(key, 0) + times

    def pending(self, instance_id: str, *, handler: str = "execute") -> int:
        """How many planned failures of ``handler`` for ``instance_id`` are still to come."""
        return self._planned.get((instance_id, handler), 0)

    def clear(self) -> None:
        """Forget every planned failure (and what was injected)."""
        self._planned.clear()
        self.injected.clear()

    def check(self, ctx: Any, handler: str = "execute") -> None:
        """Raise :class:`InjectedFailure` if a failure of this call is planned.

        ``ctx`` is the handler's context (or an instance id string).
        """
        instance_id = ctx if isinstance(ctx, str) else str(ctx.instance_id)
        key = (instance_id, handler)
        left = self._planned.get(key, 0)
        if left <= 0:
            return
        if left == 1:
            del self._planned[key]
        else:
            self._planned[key] = left - 1
        self.injected.append(key)
        msg = f"injected failure of {handler} for instance {instance_id!r}"
        raise InjectedFailure(msg)
