"""harness.advance() in virtual time: it never moves the clock past the time asked for, a
handler's wait on anything but virtual time fails it with HarnessStalled (it used to hang
the test for ever), and a handler's work in a worker thread takes no virtual time (it used
to: autojump counted the wait for the thread as idle time).

Each test bounds itself twice: a virtual ``trio.fail_after`` (which the old advance reached
by autojumping, instead of hanging), and a real-time watchdog thread that cancels the test
should the harness itself hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

import durable_jobs as dj
from durable_jobs.testing import HarnessStalled, open_harness

T = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1).total_seconds()


@contextmanager
def real_time_limit(seconds: float) -> Iterator[None]:
    """Cancel the block after ``seconds`` of real time (a MockClock's fail_after is virtual)."""
    token = trio.lowlevel.current_trio_token()
    with trio.CancelScope() as scope:
        timer = threading.Timer(
            seconds, lambda: trio.from_thread.run_sync(scope.cancel, trio_token=token)
        )
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
    assert not scope.cancelled_caught, f"the harness hung for {seconds} s of real time"


async def test_advance_stops_at_its_time_while_a_run_sleeps_past_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()

    @registry.continuous("slow", state=int, schedule=dj.every(timedelta(hours=1)))
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        await trio.sleep(timedelta(hours=3).total_seconds())
        ctx.set_state(ctx.state + 1)

    with real_time_limit(60), trio.fail_after(DAY):
        async with open_harness(registry, start=T) as harness:
            await harness.continuous(slow).start("a", 0)
            await harness.advance(timedelta(minutes=30))
            assert harness.now() == T + timedelta(minutes=30)  # was T + 3 h
            assert harness.runs(slow, "a") == []  # still in flight
            await harness.advance(timedelta(hours=2, minutes=30))
            assert harness.now() == T + timedelta(hours=3)
            [run] = harness.runs(slow, "a")
            assert run.outcome == "succeeded"
            assert await harness.continuous(slow).get_state("a") == 1


async def test_a_handler_waiting_on_an_event_fails_advance_naming_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()
    never = trio.Event()

    @registry.continuous("c", state=int, schedule=dj.every(timedelta(minutes=10)))
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        await never.wait()

    with real_time_limit(60), trio.fail_after(DAY):
        async with open_harness(registry, start=T, stall_timeout=0.2) as harness:
            await harness.continuous(c).start("a", 0)
            with pytest.raises(HarnessStalled) as caught:
                await harness.advance(timedelta(minutes=30))
            assert harness.now() == T + timedelta(minutes=30)
            message = str(caught.value)
            assert "continuous job 'c' instance 'a': execute" in message
            assert "await never.wait()" in message
            assert "test_testing_advance.py" in message
            assert len(caught.value.waiting) == 1
            assert isinstance(caught.value, dj.DurableJobsError)
            never.set()  # the run can end now
            await harness.advance(0)
            assert [r.outcome for r in harness.runs(c, "a")] == ["succeeded"]


async def test_a_handler_with_a_timeout_is_left_to_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()
    never = trio.Event()

    @registry.continuous(
        "c", state=int, schedule=dj.every(timedelta(hours=1)), timeout=timedelta(minutes=45)
    )
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        await never.wait()

    with real_time_limit(60), trio.fail_after(DAY):
        async with open_harness(registry, start=T, stall_timeout=0.2) as harness:
            await harness.continuous(c).start("a", 0)
            await harness.advance(timedelta(minutes=30))  # the timeout will end it: no error
            assert harness.runs(c, "a") == []
            await harness.advance(timedelta(minutes=15))
            [run] = harness.runs(c, "a")
            assert run.error_type == "durable_jobs.HandlerTimeout"
            assert run.at == T + timedelta(minutes=45)  # when it timed out


def blocking_work() -> int:
    """Stands for a blocking HTTP call or database query."""
    time.sleep(0.02)
    return 1


@pytest.mark.parametrize("timeout", [timedelta(seconds=30), None])
async def test_work_in_a_worker_thread_takes_no_virtual_time(
    autojump_clock: trio.testing.MockClock, timeout: timedelta | None
) -> None:
    registry = dj.Registry()

    @registry.continuous(
        "sync", state=int, schedule=dj.every(timedelta(minutes=10)), timeout=timeout
    )
    async def sync(ctx: dj.ContinuousContext[int]) -> None:
        n = await trio.to_thread.run_sync(blocking_work, abandon_on_cancel=True)
        ctx.set_state(ctx.state + n)

    with real_time_limit(60), trio.fail_after(DAY):
        async with open_harness(registry, start=T) as harness:
            await harness.continuous(sync).start("a", 0)
            await harness.advance(timedelta(hours=1))
            runs = harness.runs(sync, "a")
            assert [(r.at - T, r.outcome) for r in runs] == [
                (timedelta(minutes=m), "succeeded") for m in range(0, 61, 10)
            ]
            assert await harness.continuous(sync).get_state("a") == 7


async def test_a_worker_thread_that_never_returns_fails_advance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()
    release = threading.Event()

    @registry.continuous("fetch", state=int, schedule=dj.every(timedelta(minutes=10)))
    async def fetch(ctx: dj.ContinuousContext[int]) -> None:
        await trio.to_thread.run_sync(release.wait, abandon_on_cancel=True)

    try:
        with real_time_limit(60), trio.fail_after(DAY):
            async with open_harness(registry, start=T, stall_timeout=0.2) as harness:
                await harness.continuous(fetch).start("b", 0)
                with pytest.raises(HarnessStalled) as caught:
                    await harness.advance(timedelta(minutes=5))
                assert harness.now() == T + timedelta(minutes=5)
                message = str(caught.value)
                assert "job 'fetch' instance 'b': execute waits for a worker thread" in message
                assert harness.runs(fetch) == []
    finally:
        release.set()
