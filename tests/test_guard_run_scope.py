"""The guards of a task's runs share its long-lived cancel scope (RunScope) instead of
entering one each: a lost lock stops the run it was lost under (LockLost) exactly as a
guard's own scope does, and never reaches the task's next run or anything after it."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import cast
from uuid import UUID, uuid4

import pytest
import trio

from durable_jobs._errors import LockLost
from durable_jobs._runtime.guards import Guard, LockGuards
from durable_jobs._store.capabilities import CrossProcessLocks

SESSION = 5


class _Sessions:
    """Locks all held in one live session."""

    def lock_session(self, uuid: UUID, scope: str = "instance") -> int | None:
        return SESSION

    def session_alive(self, session: int) -> bool:
        return True


def _guards() -> LockGuards:
    return LockGuards(cast(CrossProcessLocks, _Sessions()), timedelta(seconds=30))


async def _left(guard: Guard, body: Callable[[], Awaitable[None]]) -> str:
    """How leaving ``guard`` around ``body`` went."""
    try:
        with guard:
            await body()
    except LockLost:
        return "lock lost"
    except ValueError:
        return "its error"
    return "left"


async def _outcome(
    guards: LockGuards, body: Callable[[], Awaitable[None]], *, shared: bool
) -> tuple[str, Guard]:
    """What leaving a guard around ``body`` gives, in a task holding a run scope
    (``shared``) or not; then that the task goes on uncancelled."""
    holder: AbstractContextManager[None] = guards.run_scope() if shared else nullcontext()
    with holder:
        guard = guards.guard(uuid4(), "instance")
        assert (guard.run is not None) is shared
        result = await _left(guard, body)
        # Nothing of the cancellation is left for what the task does next.
        await trio.sleep(0)
        with guards.guard(uuid4(), "instance"):
            await trio.sleep(0)
        await trio.sleep(0)
        assert not guards._guards
    return result, guard


async def _lost_then_checkpoint(guards: LockGuards) -> None:
    guards._lost(SESSION)
    await trio.sleep(0)


async def _lost_no_checkpoint(guards: LockGuards) -> None:
    guards._lost(SESSION)


async def _lost_then_error(guards: LockGuards) -> None:
    guards._lost(SESSION)
    raise ValueError


async def _nothing_lost(guards: LockGuards) -> None:
    await trio.sleep(0)


async def _other_session_lost(guards: LockGuards) -> None:
    guards._lost(SESSION + 1)
    await trio.sleep(0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_lost_then_checkpoint, "lock lost"),
        (_lost_no_checkpoint, "left"),
        (_lost_then_error, "its error"),
        (_nothing_lost, "left"),
        (_other_session_lost, "left"),
    ],
)
async def test_a_shared_scope_ends_a_run_as_its_own_scope_does(
    body: Callable[[LockGuards], Awaitable[None]], expected: str
) -> None:
    outcomes = []
    for shared in (False, True):
        guards = _guards()
        outcome, _ = await _outcome(guards, functools.partial(body, guards), shared=shared)
        outcomes.append(outcome)
    assert outcomes == [expected, expected]


async def test_the_next_run_of_the_task_gets_a_fresh_scope() -> None:
    guards = _guards()
    with guards.run_scope():
        first = guards.guard(uuid4(), "instance")
        assert await _left(first, lambda: _lost_then_checkpoint(guards)) == "lock lost"
        second = guards.guard(uuid4(), "instance")
        assert second.run is first.run
        assert second.cancel_scope is not first.cancel_scope
        assert not second.cancel_scope.cancel_called
        with second:
            await trio.sleep(0)


async def test_a_guard_inside_a_guard_has_its_own_scope() -> None:
    """The flush lock's guard holds the task's scope; the instance lock's guard taken
    inside it has its own. A lost session stops both: LockLost, raised once."""
    guards = _guards()
    with guards.run_scope():
        outer = guards.guard(uuid4(), "flush")
        inners: list[Guard] = []

        async def inside() -> None:
            inner = guards.guard(uuid4(), "instance")  # taken while the outer one holds
            inners.append(inner)
            with inner:
                await _lost_then_checkpoint(guards)

        assert await _left(outer, inside) == "lock lost"
        [inner] = inners
        assert outer.run is not None and inner.run is None
        assert inner.cancel_scope.cancel_called
        await trio.sleep(0)


async def test_a_cancellation_from_outside_is_not_a_lost_lock() -> None:
    guards = _guards()
    with trio.CancelScope() as outside, guards.run_scope():
        guard = guards.guard(uuid4(), "instance")
        with guard:
            outside.cancel()
            await trio.sleep(0)
    assert outside.cancelled_caught
    assert not guards._runs


async def test_a_lost_lock_while_shutting_down_stays_a_cancellation() -> None:
    """Cancelled from outside too: the outer cancellation goes on (not LockLost), as
    with a guard's own scope."""
    for shared in (False, True):
        guards = _guards()
        with trio.CancelScope() as outside:
            holder: AbstractContextManager[None] = guards.run_scope() if shared else nullcontext()
            with holder, guards.guard(uuid4(), "instance"):
                outside.cancel()
                guards._lost(SESSION)
                await trio.sleep(0)
        assert outside.cancelled_caught
