"""``jobs.statistics()``: the runtime's live figures as a frozen value."""

from __future__ import annotations

import contextvars
import dataclasses
from datetime import timedelta

import pytest
import trio
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import MINUTE, advance, running

HOUR = timedelta(hours=1)


def gated_registry(gate: trio.Event, entered: trio.Event) -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(MINUTE))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    @registry.continuous("slow", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        entered.set()
        await gate.wait()

    return registry


async def test_statistics_count_runs_commits_and_cache(
    durable_store_url: str, autojump_clock: MockClock
) -> None:
    gate, entered = trio.Event(), trio.Event()
    async with running(gated_registry(gate, entered), durable_store_url) as jobs:
        first = jobs.statistics()
        assert first.runs_in_flight == first.handlers_running == 0
        assert (first.commits, first.commit_batches, first.largest_batch) == (0, 0, 0)
        assert first.mean_batch_size == 0.0
        assert (first.cache_hits, first.cache_misses) == (0, 0)
        shared = durable_store_url.startswith("postgres")
        assert first.locks_held == (0 if shared else None)

        for k in range(5):
            await jobs.continuous("tick").start(f"t{k}", 0)
        await jobs.continuous("slow").start("s", 0)
        await advance(jobs, 3 * MINUTE)
        idle = jobs.statistics()
        # 6 starts, then 4 runs of each tick instance (at 0, 1, 2 and 3 minutes).
        assert idle.commits == 6 + 5 * 4
        assert 1 <= idle.commit_batches <= idle.commits
        assert idle.largest_batch >= 1
        assert idle.mean_batch_size == idle.commits / idle.commit_batches
        assert idle.cache_misses == 6  # each instance read from the store once
        assert idle.cache_hits == 5 * 4
        assert idle.cached_instances == 6
        assert idle.alarms_in_window == 6
        assert idle.alarms_due == 0
        assert idle.runs_in_flight == idle.handlers_running == 0

        for k in range(5):
            await jobs.continuous("tick").terminate(f"t{k}")
        await trio.sleep(HOUR.total_seconds())  # the slow run is due: it waits at the gate
        await entered.wait()
        busy = jobs.statistics()
        assert busy.runs_in_flight == 1
        assert busy.handlers_running == 1
        assert busy.locks_held == (1 if shared else None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            busy.commits = 0  # type: ignore[misc]
        gate.set()
        await jobs.wait_idle()
        done = jobs.statistics()
        assert done.runs_in_flight == done.handlers_running == 0
        assert done.locks_held == (0 if shared else None)
        assert done.commits > busy.commits


async def test_alarms_due_counts_what_waits_for_a_run_slot(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    gate, entered = trio.Event(), trio.Event()
    registry = gated_registry(gate, entered)
    async with running(registry, sqlite_url, max_concurrent_runs=1) as jobs:
        for k in range(3):
            await jobs.continuous("slow").start(f"s{k}", 0)
        await trio.sleep(HOUR.total_seconds())
        await entered.wait()
        stats = jobs.statistics()
        assert stats.runs_in_flight == 3  # started, two of them wait for the one slot
        assert stats.handlers_running == 1
        gate.set()


def test_the_repr_shows_every_figure() -> None:
    stats = dj.RuntimeStatistics(
        runs_in_flight=2,
        handlers_running=1,
        alarms_due=3,
        alarms_in_window=40,
        commits=120,
        commit_batches=30,
        largest_batch=9,
        cache_hits=500,
        cache_misses=7,
        cached_instances=44,
        locks_held=2,
    )
    assert repr(stats) == (
        "<RuntimeStatistics runs in flight 2 (handlers running 1), alarms due 3 of 40 in "
        "the window, commits 120 in 30 batches (mean 4.0, largest 9), cache 500 hits / 7 "
        "misses (44 cached), locks held 2>"
    )
    assert "locks" not in repr(dataclasses.replace(stats, locks_held=None))


_SEEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("_SEEN", default=None)


async def test_a_run_that_waited_for_a_slot_does_not_see_the_previous_runs_context(
    autojump_clock: MockClock,
) -> None:
    """Runs beyond ``max_concurrent_runs`` wait their turn; each still starts from a
    fresh context, not from the run that freed its slot (a handler's context variables)."""
    registry = dj.Registry()
    seen: list[str | None] = []

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        seen.append(_SEEN.get())
        _SEEN.set(ctx.instance_id)

    async with running(registry, "memory://", max_concurrent_runs=1) as jobs:
        for k in range(4):
            await jobs.continuous("c").start(f"c{k}", 0)
        await advance(jobs, HOUR)
    assert seen == [None] * 4


async def test_runs_waiting_for_a_slot_at_shutdown_leave_nothing_in_flight(
    autojump_clock: MockClock,
) -> None:
    """Shutdown stops the scheduler: alarms still waiting for a run slot stay in the
    store, and the block ends without waiting out its grace for them."""
    gate, entered = trio.Event(), trio.Event()
    registry = gated_registry(gate, entered)
    async with running(registry, "memory://", max_concurrent_runs=1) as jobs:
        for k in range(3):
            await jobs.continuous("slow").start(f"s{k}", 0)
        await trio.sleep(HOUR.total_seconds())
        await entered.wait()
        assert jobs.statistics().runs_in_flight == 3
        gate.set()
        start = trio.current_time()
    # The run in flight ended at once (gate open); the two waiting did not run.
    assert trio.current_time() - start < 1
