"""After its ``open_jobs`` block, every call on ``jobs`` and its clients raises
``RuntimeClosed`` (exported, a ``DurableJobsError``) naming the call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import running


def registry() -> dj.Registry:
    reg = dj.Registry()

    @reg.continuous("beat", state=int, schedule=dj.every(timedelta(hours=1)))
    async def beat(ctx: dj.ContinuousContext[int]) -> None: ...

    @reg.debounce("batch", event=int, flush_after=timedelta(minutes=1))
    async def batch(ctx: dj.DebounceContext[int]) -> None: ...

    @reg.task("todo", event=int, state=int)
    async def todo(ctx: dj.TaskContext[int]) -> None: ...

    @todo.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None: ...

    return reg


async def test_every_call_after_the_block_names_itself(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    async with running(registry(), sqlite_url) as jobs:
        c, d, t = jobs.continuous("beat"), jobs.debounce("batch"), jobs.task("todo")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "jobs.continuous('beat').start()": lambda: c.start("x", 0),
        "jobs.continuous('beat').trigger()": lambda: c.trigger("x"),
        "jobs.continuous('beat').status()": lambda: c.status("x"),
        "jobs.continuous('beat').get_state()": lambda: c.get_state("x"),
        "jobs.continuous('beat').terminate()": lambda: c.terminate("x"),
        "jobs.continuous('beat').history()": lambda: c.history("x"),
        "jobs.debounce('batch').add()": lambda: d.add("x", 1),
        "jobs.debounce('batch').flush()": lambda: d.flush("x"),
        "jobs.debounce('batch').clear()": lambda: d.clear("x"),
        "jobs.debounce('batch').status()": lambda: d.status("x"),
        "jobs.task('todo').send()": lambda: t.send("x", 1),
        "jobs.task('todo').trigger()": lambda: t.trigger("x"),
        "jobs.task('todo').get_state()": lambda: t.get_state("x"),
        "jobs.wait_idle()": jobs.wait_idle,
    }
    for name, call in calls.items():
        with pytest.raises(dj.RuntimeClosed) as info:
            await call()
        assert isinstance(info.value, dj.DurableJobsError)
        assert info.value.call == name
        message = str(info.value)
        assert message.startswith(f"{name} was refused: this jobs runtime is closed")
        assert "no new run starts" not in message


async def test_the_facade_refuses_after_the_block_too(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    async with running(registry(), sqlite_url) as jobs:
        pass
    refused: dict[str, Callable[[], object]] = {
        "jobs.continuous()": lambda: jobs.continuous("beat"),
        "jobs.debounce()": lambda: jobs.debounce("batch"),
        "jobs.task()": lambda: jobs.task("todo"),
        "jobs.subscribe()": lambda: jobs.subscribe(print),
        "jobs.statistics()": jobs.statistics,
    }
    for name, call in refused.items():
        with pytest.raises(dj.RuntimeClosed) as info:
            call()
        assert str(info.value).startswith(f"{name} was refused")
    # What describes the block stays readable.
    assert jobs.registry.names("task") == ["todo"]
