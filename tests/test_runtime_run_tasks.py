"""Run tasks: one task runs the waiting alarms one after another, each run in a context
of its own (as if it had a task of its own), and every step of a run in that context."""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine, Generator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import trio
import trio.testing
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import advance, running
from durable_jobs._runtime.scheduler import _in_context

HOUR = timedelta(hours=1)
#: Later than any alarm of these tests.
T_FAR = datetime(2100, 1, 1, tzinfo=UTC)

_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("_RUN", default=None)


async def test_a_runs_context_holds_across_its_awaits_and_never_reaches_the_next_run(
    autojump_clock: MockClock,
) -> None:
    """With one run task, four runs share it: each starts from a fresh context, and what
    its handler sets stays set across the handler's own awaits (every step of the run
    is in its context, not only the first)."""
    registry = dj.Registry()
    seen: list[tuple[str | None, str | None]] = []

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        before = _RUN.get()
        _RUN.set(ctx.instance_id)
        await trio.sleep(1)
        await trio.lowlevel.checkpoint()
        seen.append((before, _RUN.get()))

    async with running(registry, "memory://", max_concurrent_runs=1) as jobs:
        for k in range(4):
            await jobs.continuous("c").start(f"c{k}", 0)
        await advance(jobs, HOUR)
        assert jobs.statistics().runs_in_flight == 0
    assert sorted(seen) == [(None, f"c{k}") for k in range(4)]


async def test_a_timeout_cancels_a_run_on_a_shared_run_task_and_the_next_runs_go_on(
    autojump_clock: MockClock,
) -> None:
    """A cancellation reaches a run through its context (the run task's cancel scope is
    the run's): the run that overstays its timeout fails, the others run after it."""
    registry = dj.Registry()
    ran: list[str] = []

    @registry.continuous(
        "c",
        state=int,
        schedule=dj.every(HOUR),
        start_immediately=False,
        timeout=timedelta(seconds=5),
        retry=None,
    )
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        if ctx.instance_id == "c0":
            await trio.sleep(60)
        ran.append(ctx.instance_id)

    async with running(registry, "memory://", max_concurrent_runs=1) as jobs:
        for k in range(3):
            await jobs.continuous("c").start(f"c{k}", 0)
        await advance(jobs, HOUR + timedelta(minutes=1))
        history = await jobs.continuous("c").history("c0")
    failed = [r.data["error_type"] for r in history if r.name == "run_failed"]
    assert failed == [f"{dj.HandlerTimeout.__module__}.HandlerTimeout"]
    assert sorted(ran) == ["c1", "c2"]


def _steps(
    context: contextvars.Context, coro: Coroutine[Any, Any, None]
) -> Generator[Any, Any, bool]:
    """``_in_context(context, coro)`` as the generator that trio drives."""
    return cast("Generator[Any, Any, bool]", _in_context(context, coro))


def test_in_context_runs_every_step_in_the_context_and_passes_values_and_errors() -> None:
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=0)
    steps: list[int] = []

    class Thrown(Exception):
        pass

    async def inner() -> None:
        var.set(1)
        steps.append(var.get())
        got = await _Yield("a")
        steps.append(got)
        try:
            await _Yield("b")
        except Thrown:
            steps.append(var.get() + 10)
        var.set(var.get() + 1)
        steps.append(var.get())

    context = contextvars.copy_context()
    outer = _steps(context, inner())
    assert next(outer) == "a"
    assert var.get() == 0  # the caller's context is untouched
    assert outer.send(7) == "b"
    with pytest.raises(StopIteration) as end:
        outer.throw(Thrown())
    assert end.value.value is True  # it yielded on the way
    assert steps == [1, 7, 11, 2]
    assert var.get() == 0 and context[var] == 2


def test_in_context_closes_the_inner_coroutine_when_closed() -> None:
    closed: list[bool] = []

    async def inner() -> None:
        try:
            await _Yield("a")
        finally:
            closed.append(True)

    outer = _steps(contextvars.copy_context(), inner())
    assert next(outer) == "a"
    outer.close()
    assert closed == [True]


def test_in_context_passes_the_inner_coroutines_error_out() -> None:
    async def inner() -> None:
        await _Yield("a")
        raise KeyError("boom")

    outer = _steps(contextvars.copy_context(), inner())
    assert next(outer) == "a"
    with pytest.raises(KeyError, match="boom"):
        outer.send(None)


class _Yield:
    """An awaitable that yields ``value`` once and returns what is sent back."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __await__(self) -> Any:
        return (yield self.value)


async def test_an_idle_run_task_waits_for_the_next_alarm_and_runs_it_in_a_fresh_context(
    autojump_clock: MockClock,
) -> None:
    """Runs an hour apart (nothing to run in between) take turns on one run task, which
    waited idle for each, and each starts from a fresh context; the block still ends
    at once with the task idle."""
    registry = dj.Registry()
    tasks: list[object] = []
    seen: list[str | None] = []

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        tasks.append(trio.lowlevel.current_task())
        seen.append(_RUN.get())
        _RUN.set(ctx.instance_id)

    async with running(registry, "memory://", max_concurrent_runs=1) as jobs:
        await jobs.continuous("c").start("a", 0)
        await advance(jobs, HOUR)
        await jobs.continuous("c").start("b", 0)
        await advance(jobs, 3 * HOUR)
        start = trio.current_time()
    assert trio.current_time() - start < 1
    assert len(tasks) == 1 + 3 + 3 and len(set(map(id, tasks))) == 1
    assert seen == [None] * len(tasks)


def test_in_context_says_when_the_coroutine_never_yielded() -> None:
    async def inner() -> None:
        pass

    outer = _steps(contextvars.copy_context(), inner())
    with pytest.raises(StopIteration) as end:
        next(outer)
    assert end.value.value is False


async def test_alarms_count_as_waiting_for_a_run_task_only_beyond_the_idle_ones_woken(
    autojump_clock: MockClock,
) -> None:
    """An alarm handed to an idle run task does not wait for a run task (the index is
    read, and a preferred worker's alarm is put off, as with free run tasks); one
    beyond ``max_concurrent_runs`` does."""
    registry = dj.Registry()
    gate = trio.Event()
    entered: list[str] = []

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        entered.append(ctx.instance_id)
        await gate.wait()

    async with running(registry, "memory://", max_concurrent_runs=2) as jobs:
        scheduler = jobs._rt.scheduler
        for k in range(3):
            await jobs.continuous("c").start(f"c{k}", 0)
        await trio.sleep(HOUR.total_seconds())
        await trio.testing.wait_all_tasks_blocked()
        assert len(entered) == 2 and scheduler._backlog()  # the third waits for a slot
        gate.set()
        await jobs.wait_idle()
        assert not scheduler._backlog() and len(scheduler._parked) == 2
        # Both run tasks idle: the next alarms are handed to them, not queued behind.
        gate = trio.Event()
        await trio.sleep(HOUR.total_seconds() - 1)
        scheduler._dispatch(scheduler.window.pop_due(T_FAR)[0], T_FAR)
        assert scheduler._woken == 1 and not scheduler._backlog()
        gate.set()
