"""A handler that calls the client on its own instance.

Its run holds the instance's lock, so such a call would wait for itself
forever (the instance stuck, nothing logged). It is refused at once with a
ConfigurationError saying what to do instead, and the run fails as with any
error; a call on another instance of the same job goes through.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import running

MINUTE = timedelta(minutes=1)


def _failures(records: list[dj.RecordedEvent]) -> list[str]:
    return [r.data["error_type"] for r in records if r.name == "run_failed"]


async def test_task_and_continuous_handlers_calling_their_own_instance_fail_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()
    jobs_of: dict[str, Any] = {}
    errors: list[str] = []

    @registry.task("t", event=str, state=str)
    async def t(ctx: dj.TaskContext[str]) -> None:
        try:
            await jobs_of["jobs"].task("t").send(ctx.instance_id, "again")
        except dj.ConfigurationError as exc:
            errors.append(str(exc))
            raise
        await jobs_of["jobs"].task("t").send("other", "fine")  # another instance: allowed

    @t.on_event
    async def keep(event: str, ctx: dj.TaskContext[str]) -> None:
        ctx.set_state(event)
        if event == "go":
            ctx.schedule(MINUTE)

    @registry.continuous("c", state=int, schedule=dj.every(timedelta(hours=1)))
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        await jobs_of["jobs"].continuous("c").trigger(ctx.instance_id)

    records: list[dj.RecordedEvent] = []
    async with running(registry, "memory://", records=records) as jobs:
        jobs_of["jobs"] = jobs
        await jobs.task("t").send("a", "go")
        with trio.fail_after(600):  # virtual time: it would hang forever before
            await trio.sleep(2 * 60)
            await jobs.wait_idle()
            await jobs.continuous("c").start("b", 0)
            await jobs.wait_idle()
    assert _failures(records)[:2] == ["durable_jobs.ConfigurationError"] * 2
    assert "task job 't' instance 'a' called the client on its own instance" in errors[0]
    assert "through the handler's ctx" in errors[0]


async def test_on_event_sending_to_its_own_instance_raises_in_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = dj.Registry()
    jobs_of: dict[str, Any] = {}

    @registry.task("t", event=str, state=str)
    async def t(ctx: dj.TaskContext[str]) -> None:
        pass

    @t.on_event
    async def echo(event: str, ctx: dj.TaskContext[str]) -> None:
        if event == "echo":
            await jobs_of["jobs"].task("t").send(ctx.instance_id, "echoed")
        ctx.set_state(event)

    async with running(registry, "memory://") as jobs:
        jobs_of["jobs"] = jobs
        with trio.fail_after(60), pytest.raises(dj.HandlerError) as caught:
            await jobs.task("t").send("a", "echo")
        assert isinstance(caught.value.__cause__, dj.ConfigurationError)
        await jobs.task("t").send("a", "plain")
        state = await jobs.task("t").get_state("a")
        assert state is not None
        assert state.state == "plain"


async def test_a_chain_of_calls_back_to_a_waiting_handler_raises_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """x's on_event sends to y, whose on_event sends back to x: x's call holds x's lock
    while it waits for y's on_event, so the call back would wait for itself. Refused
    at once, through any number of hops; a chain that does not come back is fine."""
    registry = dj.Registry()
    jobs_of: dict[str, Any] = {}
    hops = {"x": "y", "y": "z", "z": "x", "p": "q", "q": "r"}  # x->y->z->x is a cycle

    @registry.task("u", event=str, state=str)
    async def u(ctx: dj.TaskContext[str]) -> None:
        pass

    @u.on_event
    async def notify(event: str, ctx: dj.TaskContext[str]) -> None:
        ctx.set_state(event)
        following = hops.get(ctx.instance_id)
        if following is not None:
            await jobs_of["jobs"].task("u").send(following, f"{event}>{ctx.instance_id}")

    async with running(registry, "memory://") as jobs:
        jobs_of["jobs"] = jobs
        with trio.fail_after(60), pytest.raises(dj.HandlerError) as caught:  # virtual time
            await jobs.task("u").send("x", "go")
        cause: BaseException = caught.value
        while not isinstance(cause, dj.ConfigurationError):
            assert cause.__cause__ is not None
            cause = cause.__cause__
        assert "A handler of task job 'u' instance 'z' called the client on task job 'u' " in (
            str(cause)
        )
        assert "instance 'z' <- task job 'u' instance 'y' <- task job 'u' instance 'x'" in (
            str(cause)
        )
        # Nothing is left waiting: each instance can be called again at once.
        with trio.fail_after(60):
            hops.clear()
            for name in "xyz":
                await jobs.task("u").send(name, "later")
            await jobs.task("u").send("p", "go")  # no cycle: p -> q -> r
        hops.update({"p": "q", "q": "r"})
        with trio.fail_after(60):
            await jobs.task("u").send("p", "again")
        state = await jobs.task("u").get_state("r")
        assert state is not None and state.state == "again>p>q"


async def test_a_chain_back_to_a_debounce_flush_may_add_but_not_flush(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A debounce flush runs holding the flush lock only: an add that comes back to it
    through a chain (the flush sends to a task whose on_event adds to the batch) goes
    through, as adds do during a flush; a flush that comes back would wait for it, and
    is refused."""
    registry = dj.Registry()
    jobs_of: dict[str, Any] = {}
    flushed: list[int] = []
    refused: list[str] = []

    @registry.debounce("d", event=str, flush_after=MINUTE)
    async def d(ctx: dj.DebounceContext[str]) -> None:
        flushed.append(ctx.event_count)
        if len(flushed) == 1:
            await jobs_of["jobs"].task("t").send("y", ctx.instance_id)

    @registry.task("t", event=str, state=str)
    async def t(ctx: dj.TaskContext[str]) -> None:
        pass

    @t.on_event
    async def back(event: str, ctx: dj.TaskContext[str]) -> None:
        await jobs_of["jobs"].debounce("d").add(event, "follow-up")
        try:
            await jobs_of["jobs"].debounce("d").flush(event)
        except dj.ConfigurationError as exc:
            refused.append(str(exc))

    async with running(registry, "memory://") as jobs:
        jobs_of["jobs"] = jobs
        await jobs.debounce("d").add("x", "first")
        with trio.fail_after(3600):  # virtual time
            while len(flushed) < 2:
                await trio.sleep(10)
    assert flushed == [1, 1]  # the follow-up was added and flushed in its own batch
    assert len(refused) == 1 and "debounce job 'd' instance 'x'" in refused[0]
