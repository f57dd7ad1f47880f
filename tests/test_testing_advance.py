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


# ---- busy loops and stuck threads (an outside review: both hung the harness for ever) ----


@contextmanager
def spinning_until_released(seconds: float) -> Iterator[threading.Event]:
    """An event a busy-looping handler polls: set after ``seconds`` of real time, so that
    a harness that cannot stop the loop itself fails the test instead of hanging it."""
    release = threading.Event()
    timer = threading.Timer(seconds, release.set)
    timer.start()
    try:
        yield release
    finally:
        timer.cancel()
        release.set()


@pytest.mark.parametrize("timeout", [None, timedelta(seconds=2)])
async def test_a_busy_looping_handler_fails_advance_naming_it(
    autojump_clock: trio.testing.MockClock, timeout: timedelta | None
) -> None:
    registry = dj.Registry()

    with spinning_until_released(30) as release:

        @registry.continuous(
            "poll", state=int, schedule=dj.every(timedelta(minutes=10)), timeout=timeout
        )
        async def poll(ctx: dj.ContinuousContext[int]) -> None:
            while not release.is_set():
                await trio.sleep(0)  # a polling loop that never waits

        async with open_harness(registry, start=T, stall_timeout=0.05) as harness:
            await harness.continuous(poll).start("a", 0)
            with pytest.raises(HarnessStalled) as caught:
                await harness.advance(timedelta(minutes=30))
            assert not release.is_set(), "advance only returned once the loop was released"
            message = str(caught.value)
            assert "continuous job 'poll' instance 'a': execute keeps running" in message
            assert "await trio.sleep(0)" in message
            assert "test_testing_advance.py" in message
            assert len(caught.value.waiting) == 1
        # The harness stopped the loop itself (its shutdown cancelled it).
        assert not release.is_set(), "the harness only stopped once the loop was released"


async def test_a_busy_loop_fails_wait_idle_and_a_timeout_then_ends_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()

    with spinning_until_released(30) as release:

        @registry.task("t", event=int, state=int, timeout=timedelta(seconds=2))
        async def t(ctx: dj.TaskContext[int]) -> None:
            while not release.is_set():
                await trio.sleep(0)

        @t.on_event
        async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
            ctx.schedule(timedelta(seconds=1))

        async with open_harness(registry, start=T, stall_timeout=0.05) as harness:
            await harness.task(t).send("x", 1)
            with pytest.raises(HarnessStalled, match=r"harness\.advance"):
                await harness.advance(timedelta(seconds=10))
            assert harness.now() == T + timedelta(seconds=1)  # where the loop began
            # From now on the clock jumps over the loop: its timeout ends it.
            await harness.jobs.wait_idle()
            [run] = harness.runs(t, "x")
            assert run.error_type == "durable_jobs.HandlerTimeout"
            assert run.at == T + timedelta(seconds=3)
        assert not release.is_set()


async def test_a_handler_that_polls_with_sleeps_is_not_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()
    polls: list[int] = []

    @registry.continuous("poll", state=int, schedule=dj.every(timedelta(hours=1)))
    async def poll(ctx: dj.ContinuousContext[int]) -> None:
        for n in range(600):  # ten minutes of polling, once a second
            polls.append(n)
            await trio.sleep(1)
        ctx.set_state(ctx.state + 1)

    with real_time_limit(60), trio.fail_after(DAY):
        # The smallest stall_timeout: the clock moves at every poll, which is progress.
        async with open_harness(registry, start=T, stall_timeout=0.001) as harness:
            await harness.continuous(poll).start("a", 0)
            await harness.advance(timedelta(hours=2))
            assert [r.outcome for r in harness.runs(poll, "a")] == ["succeeded"] * 2
            assert len(polls) == 1200


async def test_a_stuck_worker_thread_does_not_keep_the_harness_from_stopping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()
    release = threading.Event()
    timer = threading.Timer(30, release.set)  # a harness that waits for it fails, not hangs

    @registry.continuous("fetch", state=int, schedule=dj.every(timedelta(minutes=10)))
    async def fetch(ctx: dj.ContinuousContext[int]) -> None:
        await trio.to_thread.run_sync(release.wait)  # not abandon_on_cancel

    timer.start()
    try:
        async with open_harness(registry, start=T, stall_timeout=0.05) as harness:
            await harness.continuous(fetch).start("b", 0)
            with pytest.raises(HarnessStalled, match="waits for a worker thread"):
                await harness.advance(timedelta(minutes=5))
        assert not release.is_set(), "the harness waited for the stuck thread to return"
    finally:
        timer.cancel()
        release.set()


def test_a_state_machine_reports_a_busy_looping_handler() -> None:
    from hypothesis import Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    from durable_jobs.testing.machines import ContinuousMachine

    reg = dj.Registry()

    with spinning_until_released(60) as release:

        @reg.continuous("poll", state=int, schedule=dj.every(timedelta(minutes=10)))
        async def poll(ctx: dj.ContinuousContext[int]) -> None:
            while not release.is_set():
                await trio.sleep(0)

        class PollMachine(ContinuousMachine):
            registry = reg
            job = poll
            harness_options = {"stall_timeout": 0.05}

        with pytest.raises((HarnessStalled, ExceptionGroup)) as caught:
            run_state_machine_as_test(
                PollMachine,
                settings=settings(
                    max_examples=10,
                    stateful_step_count=3,
                    deadline=None,
                    database=None,
                    derandomize=True,  # the same examples every time: some start "poll"
                    phases=[Phase.generate],  # no shrinking: each try waits stall_timeout
                ),
            )
        # (Distinct stalls, say in start_instance and in trigger, come as a group.)
        group = caught.value
        found = group.exceptions if isinstance(group, ExceptionGroup) else [group]
        assert all(isinstance(e, HarnessStalled) for e in found), found
        assert all(
            "job 'poll' instance" in str(e) and "execute keeps running" in str(e) for e in found
        ), [str(e)[:300] for e in found]
        assert not release.is_set()
