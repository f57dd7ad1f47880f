"""Handler timeouts: ``timeout=`` on every definition bounds each call of the job's
async handlers, on the job's clock (virtual time here).

A call past it is cancelled and fails with ``HandlerTimeout``, recorded in
``run_failed``; the retry policy, ``on_error`` and ``on_exhausted`` apply.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import trio
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import MINUTE, SECOND, T, advance, running

TIMEOUT_TYPE = f"{dj.HandlerTimeout.__module__}.HandlerTimeout"
RETRY = dj.Retry(2, delay=dj.Backoff.constant(MINUTE), jitter=0)
HOUR = timedelta(hours=1)


def failures(history: list[dj.RecordedEvent]) -> list[tuple[str, str, datetime]]:
    return [
        (r.data["handler"], r.data["error_type"], r.at) for r in history if r.name == "run_failed"
    ]


# ---- the option ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        0,
        -1,
        0.0,
        timedelta(0),
        timedelta(seconds=-1),
        "5",
        True,
        1e300,
        10**30,
        timedelta(days=40_000),
    ],
)
def test_a_timeout_must_be_positive(bad: Any) -> None:
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match="timeout of job 'c'"):
        registry.continuous("c", state=int, schedule=dj.every(MINUTE), timeout=bad)
    with pytest.raises(dj.ConfigurationError, match="timeout"):
        registry.debounce("d", event=int, flush_after=MINUTE, timeout=bad)
    with pytest.raises(dj.ConfigurationError, match="timeout"):
        registry.task("t", event=int, state=int, timeout=bad)
    assert registry.names("continuous") == []


@pytest.mark.parametrize("tiny", [1e-9, 4e-7, 5e-7])
def test_a_timeout_below_a_microsecond_is_refused_not_zero(tiny: float) -> None:
    """A positive number of seconds that a timedelta would round to 0 (every call
    would time out at once) is refused, and the message says why."""
    registry = dj.Registry()
    with pytest.raises(dj.ConfigurationError, match=r"at least a microsecond.*rounds to 0"):
        registry.continuous("c", state=int, schedule=dj.every(MINUTE), timeout=tiny)
    with pytest.raises(dj.ConfigurationError, match="rounds to 0"):
        registry.debounce("d", event=int, flush_after=MINUTE, timeout=tiny)
    with pytest.raises(dj.ConfigurationError, match="rounds to 0"):
        registry.task("t", event=int, state=int, timeout=tiny)

    @registry.task("u", event=int, state=int, timeout=1e-6)
    async def tight(ctx: dj.TaskContext[int]) -> None: ...

    assert tight.timeout == timedelta(microseconds=1)


def test_a_timeout_is_a_timedelta_or_seconds() -> None:
    registry = dj.Registry()

    @registry.continuous("a", state=int, schedule=dj.every(MINUTE), timeout=2.5)
    async def a(ctx: dj.ContinuousContext[int]) -> None: ...

    @registry.task("b", event=int, state=int, timeout=timedelta(minutes=1))
    async def b(ctx: dj.TaskContext[int]) -> None: ...

    @registry.debounce("c", event=int, flush_after=MINUTE)
    async def c(ctx: dj.DebounceContext[int]) -> None: ...

    assert (a.timeout, b.timeout, c.timeout) == (timedelta(seconds=2.5), MINUTE, None)


# ---- continuous ----------------------------------------------------------------------------


async def test_a_continuous_execute_past_its_timeout_fails_and_is_retried(
    sqlite_url: str, autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    registry = dj.Registry()
    tries: list[tuple[int, datetime]] = []

    @registry.continuous(
        "c", state=int, schedule=dj.every(HOUR), retry=RETRY, timeout=timedelta(seconds=30)
    )
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        tries.append((ctx.attempt, ctx_now(jobs)))
        if ctx.attempt == 1:
            await trio.sleep_forever()
        ctx.set_state(ctx.state + 1)

    async with running(registry, sqlite_url) as jobs:
        client = jobs.continuous(c)
        await client.start("x", 0)
        await advance(jobs, 2 * MINUTE)
        assert tries == [(1, T), (2, T + 30 * SECOND + MINUTE)]
        assert await client.get_state("x") == 1  # the timed-out try committed nothing
        history = await client.history("x")
    assert failures(history) == [("execute", TIMEOUT_TYPE, T + 30 * SECOND)]
    (failed,) = [r for r in history if r.name == "run_failed"]
    assert failed.data["will_retry"] is True
    assert "within its timeout of 0:00:30" in failed.data["message"]
    # Its WARNING has no traceback: it would show the runtime's cancellation, not the handler.
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "timed out" in warning.getMessage() and warning.exc_info is None


def ctx_now(jobs: dj.Jobs) -> datetime:
    return jobs.clock.now()


async def test_on_exhausted_sees_the_handler_timeout(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()
    seen: list[BaseException] = []

    def hook(error: BaseException, ctx: Any) -> str:
        seen.append(error)
        return "terminate"

    retry = dj.Retry(1, on_exhausted=hook)

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), retry=retry, timeout=5)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        await trio.sleep(6)

    async with running(registry, sqlite_url) as jobs:
        client = jobs.continuous(c)
        await client.start("x", 0)
        await advance(jobs, MINUTE)
        assert (await client.status("x")).status == "not_found"  # terminated
    assert len(seen) == 1
    assert isinstance(seen[0], dj.HandlerTimeout)
    assert isinstance(seen[0], dj.DurableJobsError)


async def test_a_trigger_past_the_timeout_reports_the_failure(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), retry=RETRY, timeout=1)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        if ctx.run_count > 1:
            await trio.sleep(2)

    async with running(registry, sqlite_url) as jobs:
        client = jobs.continuous(c)
        await client.start("x", 0)
        await jobs.wait_idle()
        started = jobs.clock.now()
        result = await client.trigger("x")
        assert result == dj.TriggerResult(True, False, True)
        assert jobs.clock.now() - started == SECOND


async def test_a_clock_jump_past_the_timeout_cancels_at_once(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    """The timeout is measured on the job's clock, not trio's."""
    registry = dj.Registry()
    clock = dj.VirtualClock(T)
    started = trio.Event()

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), timeout=HOUR)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        started.set()
        await trio.sleep_forever()

    async with running(registry, sqlite_url, clock=clock) as jobs:
        await jobs.continuous(c).start("x", 0)
        await started.wait()
        at = trio.current_time()
        clock.jump(2 * HOUR)
        await jobs.wait_idle()
        assert trio.current_time() == at
        history = await jobs.continuous(c).history("x")
    assert failures(history) == [("execute", TIMEOUT_TYPE, T + 2 * HOUR)]


async def test_a_call_that_blocks_past_its_timeout_and_returns_fails(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    """A blocking call (a synchronous client, time.sleep, a CPU loop: played here by
    moving trio's clock without a checkpoint) cannot be cancelled; when it returns past
    its timeout it fails all the same, with nothing of it committed, as it would had
    it awaited anything after the deadline. It was committed as a success."""
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), retry=RETRY, timeout=1)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        autojump_clock.jump(3 if ctx.attempt == 1 else 0.5)  # blocks 3 s, then 0.5 s
        ctx.set_state(ctx.state + 1)

    async with running(registry, sqlite_url) as jobs:
        await jobs.continuous(c).start("x", 0)
        await advance(jobs, 2 * MINUTE)
        history = await jobs.continuous(c).history("x")
        state = await jobs.continuous(c).get_state("x")
    assert [f[:2] for f in failures(history)] == [("execute", TIMEOUT_TYPE)]
    assert state == 1  # the first try's change was not kept; the retry's was


# ---- debounce ------------------------------------------------------------------------------


async def test_a_debounce_flush_past_its_timeout_is_retried(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()
    flushed: list[tuple[int, int]] = []

    @registry.debounce("d", event=int, flush_after=MINUTE, retry=RETRY, timeout=10)
    async def d(ctx: dj.DebounceContext[int]) -> None:
        if ctx.attempt == 1:
            await trio.sleep(11)
        flushed.append((ctx.attempt, ctx.state))

    async with running(registry, sqlite_url) as jobs:
        client = jobs.debounce(d)
        await client.add("x", 4)
        await advance(jobs, 5 * MINUTE)
        assert flushed == [(2, 4)]
        history = await client.history("x")
    assert failures(history) == [("execute", TIMEOUT_TYPE, T + MINUTE + 10 * SECOND)]
    assert [r.name for r in history].count("flushed") == 1


async def test_the_debounce_reducer_has_no_timeout(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()

    @registry.debounce("d", event=int, flush_after=MINUTE, timeout=1)
    async def d(ctx: dj.DebounceContext[int]) -> None: ...

    @d.on_event
    async def reduce(ctx: dj.DebounceEventContext[int, int]) -> int:
        await trio.sleep(5)
        return (ctx.state or 0) + ctx.event

    async with running(registry, sqlite_url) as jobs:
        await jobs.debounce(d).add("x", 3)
        assert await jobs.debounce(d).get_state("x") == 3


# ---- task ----------------------------------------------------------------------------------


def task_registry(hang: set[str], log: list[tuple[str, object]]) -> tuple[dj.Registry, Any]:
    registry = dj.Registry()

    @registry.task("t", event=int, state=int, timeout=timedelta(seconds=20))
    async def execute(ctx: dj.TaskContext[int]) -> None:
        log.append(("execute", ctx.execute_count))
        if "execute" in hang and ctx.execute_count == 1:
            await trio.sleep_forever()
        ctx.set_state((ctx.state or 0) + 100)

    @execute.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        log.append(("on_event", event))
        if "on_event" in hang:
            await trio.sleep_forever()
        ctx.set_state(event)
        ctx.schedule(MINUTE)

    @execute.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        log.append(("on_error", type(error).__name__))
        if "on_error" in hang:
            await trio.sleep_forever()
        ctx.schedule(MINUTE)

    @execute.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        log.append(("on_idle", ctx.state))
        if "on_idle" in hang:
            await trio.sleep_forever()

    return registry, execute


async def test_a_task_execute_past_its_timeout_goes_to_on_error_which_retries(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    log: list[tuple[str, object]] = []
    registry, job = task_registry({"execute"}, log)
    async with running(registry, sqlite_url) as jobs:
        client = jobs.task(job)
        await client.send("x", 1)
        await advance(jobs, 5 * MINUTE)
        history = await client.history("x")
        assert (await client.get_state("x")) == dj.TaskState(state=101, scheduled_at=None)
    assert log == [
        ("on_event", 1),
        ("execute", 1),
        ("on_error", "HandlerTimeout"),
        ("execute", 2),
        ("on_idle", 101),
    ]
    assert failures(history) == [("execute", TIMEOUT_TYPE, T + MINUTE + 20 * SECOND)]


async def test_a_task_on_event_past_its_timeout_fails_the_send(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    log: list[tuple[str, object]] = []
    registry, job = task_registry({"on_event"}, log)
    async with running(registry, sqlite_url) as jobs:
        client = jobs.task(job)
        # on_error handles it (schedules a run): the send succeeds, the failure is recorded.
        await client.send("x", 1)
        assert log == [("on_event", 1), ("on_error", "HandlerTimeout")]
        history = await client.history("x")
    assert failures(history) == [("on_event", TIMEOUT_TYPE, T + 20 * SECOND)]


async def test_a_task_on_error_past_its_timeout_is_recorded(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    log: list[tuple[str, object]] = []
    registry, job = task_registry({"execute", "on_error"}, log)
    async with running(registry, sqlite_url) as jobs:
        client = jobs.task(job)
        await client.send("x", 1)  # schedules execute in a minute
        await advance(jobs, 5 * MINUTE)
        history = await client.history("x")
    t_exec = T + MINUTE + 20 * SECOND
    assert failures(history) == [
        ("execute", TIMEOUT_TYPE, t_exec),
        ("on_error", TIMEOUT_TYPE, t_exec + 20 * SECOND),
    ]
    assert log[-1] == ("on_error", "HandlerTimeout")


async def test_a_task_on_idle_past_its_timeout_goes_to_on_error(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    log: list[tuple[str, object]] = []
    registry, job = task_registry({"on_idle"}, log)
    async with running(registry, sqlite_url) as jobs:
        client = jobs.task(job)
        await client.send("x", 1)  # schedules execute in a minute
        await advance(jobs, MINUTE + 30 * SECOND)
        history = await client.history("x")
    assert log == [
        ("on_event", 1),
        ("execute", 1),
        ("on_idle", 101),
        ("on_error", "HandlerTimeout"),
    ]
    assert failures(history) == [("on_idle", TIMEOUT_TYPE, T + MINUTE + 20 * SECOND)]


# ---- shutdown ------------------------------------------------------------------------------


async def test_shutdown_cancels_a_hanging_handler_after_the_grace(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    """A timeout longer than the grace does not hold the shutdown up; the run commits
    nothing and runs again after the next start."""
    registry = dj.Registry()
    calls: list[datetime] = []
    started = trio.Event()

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), timeout=HOUR)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        calls.append(ctx_now(jobs))
        started.set()
        await trio.sleep_forever()

    async with running(registry, sqlite_url, shutdown_grace=5) as jobs:
        await jobs.continuous(c).start("x", 0)
        await started.wait()
        begin = trio.current_time()
    assert trio.current_time() - begin == 5
    async with running(registry, sqlite_url, shutdown_grace=5) as jobs:
        history = await jobs.continuous(c).history("x")
        assert [r.name for r in history if r.is_run] == []
        await jobs.wait_idle()
    assert len(calls) == 2


async def test_a_timeout_shorter_than_the_grace_is_recorded_during_shutdown(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()
    started = trio.Event()

    @registry.continuous("c", state=int, schedule=dj.every(HOUR), retry=RETRY, timeout=2)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        if ctx.attempt == 1:
            started.set()
            await trio.sleep_forever()

    async with running(registry, sqlite_url, shutdown_grace=5) as jobs:
        await jobs.continuous(c).start("x", 0)
        await started.wait()
        begin = trio.current_time()
    assert trio.current_time() - begin == 2  # the timed-out run committed, then the block ended
    async with running(registry, sqlite_url) as jobs:
        history = await jobs.continuous(c).history("x")
    assert failures(history) == [("execute", TIMEOUT_TYPE, T + 2 * SECOND)]
