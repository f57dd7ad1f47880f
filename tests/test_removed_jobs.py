"""Alarms of a job the registry does not define (a job removed, or added by a newer
release that this worker does not run yet) wait for a process that defines it, and
never keep the other jobs' alarms from running.

They did: the window of the next alarms (``alarm_window``, 1,000 by default) filled
with them, each was dropped when due, the window was read again and held the same
ones: no other alarm ran, and the scheduler spun (a thousand index reads a second on
Postgres; virtual time never moved on).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import trio
import trio.testing

import durable_jobs as dj
from durable_jobs._store.index import InstanceIndex

MINUTE = timedelta(minutes=1)
WINDOW = 5


def _old_release() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("report", state=int, schedule=dj.every(MINUTE), start_immediately=False)
    async def report(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    return registry


def _new_release(ran: list[str]) -> dj.Registry:
    registry = dj.Registry()  # "report" removed

    @registry.task("reminder", event=str, state=str)
    async def remind(ctx: dj.TaskContext[str]) -> None:
        ran.append(ctx.instance_id)

    @remind.on_event
    async def on_event(event: str, ctx: dj.TaskContext[str]) -> None:
        ctx.set_state(event)
        ctx.schedule(10 * MINUTE)

    return registry


async def test_alarms_of_a_removed_job_do_not_stop_the_others(
    store_url: str, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = dj.open_store(store_url)
    try:
        clock = dj.VirtualClock()
        async with dj.open_jobs(_old_release(), store, clock=clock) as jobs:
            for n in range(2 * WINDOW):
                await jobs.continuous("report").start(f"r{n}", 0)
        ran: list[str] = []
        async with dj.open_jobs(
            _new_release(ran), store, clock=clock, alarm_window=WINDOW
        ) as jobs:
            await jobs.task("reminder").send("x", "call mom")
            # It spun without end before, and virtual time stood still: a limit in
            # real time (a thread cancels the wait).
            token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as limit:
                timer = threading.Timer(
                    60, lambda: trio.from_thread.run_sync(limit.cancel, trio_token=token)
                )
                timer.start()
                try:
                    await trio.sleep((20 * MINUTE).total_seconds())
                finally:
                    timer.cancel()
            assert not limit.cancelled_caught, "20 virtual minutes did not pass in 60 s"
            assert ran == ["x"]
            status = await jobs.task("reminder").status("x")
            assert status is not None
            assert status.execute_count == 1
        said = [r for r in caplog.records if "which this registry does not define" in r.message]
        assert len(said) == 1
        # The removed job's instances are left as they were, for a process that defines it.
        async with dj.open_jobs(_old_release(), store, clock=clock) as jobs:
            await jobs.wait_idle()
            assert await jobs.continuous("report").get_state("r0") == 1
    finally:
        store.close()


def test_the_default_read_of_some_jobs_alarms_reads_on_until_it_has_enough(
    sqlite_url: str,
) -> None:
    """A store adapter that does not filter in its query gets ``next_alarms_of`` from
    ``InstanceIndex``: it reads more of ``next_alarms`` until it has ``limit`` rows."""

    async def fill() -> None:
        async with dj.open_jobs(_old_release(), sqlite_url, clock=dj.VirtualClock()) as jobs:
            for n in range(7):
                await jobs.continuous("report").start(f"r{n}", 0)
        async with dj.open_jobs(_new_release([]), sqlite_url, clock=dj.VirtualClock()) as jobs:
            for n in range(3):
                await jobs.task("reminder").send(f"x{n}", "later")

    trio.run(fill)
    with dj.open_store(sqlite_url) as store:
        index = store.index
        wanted = [("task", "reminder")]
        for limit in (1, 2, 3, 10):
            default = InstanceIndex.next_alarms_of(index, wanted, limit)
            assert [r.instance_id for r in default] == [f"x{n}" for n in range(min(limit, 3))]
            assert index.next_alarms_of(wanted, limit) == default
        assert index.next_alarms_of([("continuous", "report")], 100) == index.next_alarms(7)
        assert index.next_alarms_of([], 10) == []
