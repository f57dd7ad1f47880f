"""How the runtime treats what a handler raises beyond an ordinary Exception.

A ``trio.Cancelled`` the handler did not get from its own cancellation (one
caught elsewhere and re-raised) is that call's failure; a ``SystemExit`` or
other ``BaseException`` is recorded as the run's failure (retry policy
applied), committed, and then ends ``open_jobs``, so that a restart neither
finds an empty history nor crashes again at once. (A ``KeyboardInterrupt`` is
not the handler's failure: see ``test_runtime_interrupt``.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import MINUTE, SECOND, T, advance, running

RETRY = dj.Retry(3, delay=dj.Backoff.constant(timedelta(minutes=5)), jitter=0)
HANDLER_ERROR = f"{dj.HandlerError.__module__}.HandlerError"


async def stray_cancelled() -> trio.Cancelled:
    """A ``trio.Cancelled`` caught from a scope that is already left."""
    caught: trio.Cancelled | None = None
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            caught = exc
    assert caught is not None
    return caught


class Poison(BaseException):
    """An application's own BaseException."""


async def test_a_stray_cancelled_fails_the_run_and_the_runtime_goes_on(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()
    beats: list[int] = []
    tries: list[int] = []

    @registry.continuous("beat", state=int, schedule=dj.every(MINUTE))
    async def beat(ctx: dj.ContinuousContext[int]) -> None:
        beats.append(ctx.run_count)

    @registry.continuous("odd", state=int, schedule=dj.every(timedelta(hours=1)), retry=RETRY)
    async def odd(ctx: dj.ContinuousContext[int]) -> None:
        tries.append(ctx.attempt)
        if ctx.attempt == 1:
            raise await stray_cancelled()

    async with running(registry, sqlite_url) as jobs:
        await jobs.continuous(beat).start("b", 0)
        await jobs.continuous(odd).start("o", 0)
        with trio.fail_after(3600):  # virtual seconds: a stopped runtime fails, not hangs
            await advance(jobs, 10 * MINUTE)
        assert tries == [1, 2]
        assert len(beats) == 11  # the other job kept running
        assert (await jobs.continuous(odd).status("o")).status == "running"
        history = await jobs.continuous(odd).history("o")
    (failed,) = [r for r in history if r.name == "run_failed"]
    assert failed.data["error_type"] == HANDLER_ERROR
    assert "trio.Cancelled" in failed.data["message"]
    assert failed.data["will_retry"] is True
    assert failed.data["retry_at"] == T + 5 * MINUTE
    assert [r.attempt for r in history if r.name == "run_succeeded"] == [2]


async def test_a_stray_cancelled_in_on_event_is_a_handler_error(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()

    @registry.task("t", event=int, state=int)
    async def execute(ctx: dj.TaskContext[int]) -> None:
        pass

    @execute.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        if event < 0:
            raise await stray_cancelled()
        ctx.set_state(event)

    async with running(registry, sqlite_url) as jobs:
        client = jobs.task(execute)
        raised: BaseException | None = None
        try:
            await client.send("x", -1)
        except BaseException as exc:  # a Cancelled must not get past here
            raised = exc
        assert isinstance(raised, dj.HandlerError)
        assert "trio.Cancelled" in str(raised)
        assert isinstance(raised.__cause__, dj.HandlerError)
        assert isinstance(raised.__cause__.__cause__, trio.Cancelled)
        await client.send("x", 7)  # the runtime still serves
        got = await client.get_state("x")
        assert got is not None
        assert got.state == 7
        history = await client.history("x")
    assert [r.data["error_type"] for r in history if r.name == "run_failed"] == [HANDLER_ERROR]


@pytest.mark.parametrize("error", [SystemExit, Poison])
async def test_a_base_exception_is_recorded_then_ends_open_jobs(
    error: type[BaseException], sqlite_url: str, autojump_clock: MockClock
) -> None:
    """The failed try is in the history with its retry time, so a restart waits for it."""
    registry = dj.Registry()
    tries: list[tuple[int, object]] = []
    poisoned = [True]

    @registry.continuous("c", state=int, schedule=dj.every(timedelta(hours=1)), retry=RETRY)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        tries.append((ctx.attempt, trio.current_time()))
        if poisoned[0]:
            raise error("poison")

    async def session() -> None:
        async with running(registry, sqlite_url) as jobs:
            await jobs.continuous(c).start("x", 0)
            await trio.sleep_forever()  # ended by the handler's exception

    with pytest.raises(error):
        await session()
    assert [t[0] for t in tries] == [1]

    async with running(registry, sqlite_url) as jobs:
        client = jobs.continuous(c)
        history = await client.history("x")
        (failed,) = [r for r in history if r.name == "run_failed"]
        assert failed.data["error_type"].endswith(error.__qualname__)
        assert failed.data["will_retry"] is True
        assert failed.data["retry_at"] == T + 5 * MINUTE
        # No crash loop: the restart waits for the retry time like any failed try.
        await advance(jobs, 4 * MINUTE)
        assert len(tries) == 1
        poisoned[0] = False
        await advance(jobs, MINUTE + SECOND)
        assert [t[0] for t in tries] == [1, 2]
        assert (await client.status("x")).status == "running"


async def test_a_handlers_base_exception_group_ends_open_jobs_as_itself(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    """A group of several errors from a handler's own nursery (one of them not an
    Exception) ends open_jobs as that group, not wrapped in the runtime's nurseries'."""
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(timedelta(hours=1)))
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        async def fails() -> None:
            raise ValueError("child failed")

        async def stops() -> None:
            raise Poison("stop")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fails)
            nursery.start_soon(stops)

    async def session() -> None:
        async with running(registry, sqlite_url) as jobs:
            await jobs.continuous(c).start("x", 0)
            await trio.sleep_forever()  # ended by the handler's exception

    with pytest.raises(BaseExceptionGroup) as info:
        await session()
    kinds = sorted(type(e).__name__ for e in info.value.exceptions)
    assert kinds == ["Poison", "ValueError"]


async def test_a_base_exception_in_a_task_is_recorded_then_raised_to_the_caller(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()

    @registry.task("t", event=int, state=int)
    async def execute(ctx: dj.TaskContext[int]) -> None:
        raise SystemExit(3)

    @execute.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)

    async def session() -> None:
        async with running(registry, sqlite_url) as jobs:
            client = jobs.task(execute)
            await client.send("x", 1)
            await client.trigger("x")

    with pytest.raises(SystemExit):
        await session()
    async with running(registry, sqlite_url) as jobs:
        history = await jobs.task(execute).history("x")
    (failed,) = [r for r in history if r.name == "run_failed"]
    assert (failed.data["handler"], failed.data["error_type"]) == ("execute", "SystemExit")


async def test_a_base_exception_in_a_debounce_flush_keeps_the_batch(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    registry = dj.Registry()
    flushed: list[int] = []
    poisoned = [True]

    @registry.debounce("d", event=int, flush_after=MINUTE, retry=RETRY)
    async def d(ctx: dj.DebounceContext[int]) -> None:
        if poisoned[0]:
            raise Poison
        flushed.append(ctx.state)

    async def session() -> None:
        async with running(registry, sqlite_url) as jobs:
            await jobs.debounce(d).add("x", 5)
            await trio.sleep_forever()

    with pytest.raises(Poison):
        await session()
    poisoned[0] = False
    async with running(registry, sqlite_url) as jobs:
        history = await jobs.debounce(d).history("x")
        (failed,) = [r for r in history if r.name == "run_failed"]
        assert failed.data["retry_at"] == T + MINUTE + 5 * MINUTE
        await advance(jobs, 10 * MINUTE)
        assert flushed == [5]


async def test_an_on_idle_that_always_fails_runs_once_per_chain(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    """on_idle fails, on_error handles it without an alarm: the chain ends there."""
    registry = dj.Registry()
    calls: list[str] = []

    @registry.task("t", event=int, state=int)
    async def execute(ctx: dj.TaskContext[int]) -> None:
        pass

    @execute.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        calls.append("on_event")

    @execute.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        calls.append("on_idle")
        raise RuntimeError("idle broke")

    @execute.on_error
    async def on_error(error: BaseException, ctx: dj.TaskContext[int]) -> None:
        calls.append("on_error")

    async with running(registry, sqlite_url) as jobs:
        with trio.fail_after(60):
            await jobs.task(execute).send("x", 1)
        history = await jobs.task(execute).history("x")
    assert calls == ["on_event", "on_idle", "on_error"]
    assert [r.data["handler"] for r in history if r.name == "run_failed"] == ["on_idle"]
