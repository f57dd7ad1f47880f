"""What a task's caller is told when a follow-up handler (on_idle, on_error) is the
one that failed: the error names that handler, the history records it, and the
message says truly what was kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio.testing

import durable_jobs as dj
from _runtime import running


def _registry(seen: list[str]) -> dj.Registry:
    registry = dj.Registry()

    @registry.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        seen.append("execute")
        ctx.set_state(100)

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        seen.append("on_event")
        ctx.set_state(event)  # no alarm left: on_idle follows

    @run.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        seen.append("on_idle")
        ctx.set_state(999)
        raise ConnectionError("archive down")

    return registry


def _failures(records: list[dj.RecordedEvent]) -> list[str]:
    return [r.data["handler"] for r in records if r.name == "run_failed"]


async def test_a_send_whose_on_idle_fails_names_on_idle(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[str] = []
    records: list[dj.RecordedEvent] = []
    async with running(_registry(seen), store_url, records=records) as jobs:
        client = jobs.task("t")
        with pytest.raises(dj.HandlerError) as raised:
            await client.send("a", 5)
        assert seen == ["on_event", "on_idle"]
        message = str(raised.value)
        assert message.startswith("on_idle of task job 't' raised for instance 'a'"), message
        assert "ConnectionError('archive down')" in message
        # A send keeps nothing of a chain that ends in an unhandled failure.
        assert "the state is unchanged" in message
        state = await client.get_state("a")
        assert state is None or state.state is None
        assert isinstance(raised.value.__cause__, ConnectionError)
    assert _failures(records) == ["on_idle"]


async def test_a_trigger_whose_on_idle_fails_names_on_idle_and_keeps_execute(
    store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[str] = []
    records: list[dj.RecordedEvent] = []
    registry2 = dj.Registry()

    @registry2.task("t", event=int, state=int)
    async def run(ctx: dj.TaskContext[int]) -> None:
        seen.append("execute")
        ctx.set_state(100)
        ctx.cancel_schedule()  # no alarm left: on_idle follows

    @run.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)
        ctx.schedule(timedelta(hours=1))

    @run.on_idle
    async def on_idle(ctx: dj.TaskContext[int]) -> None:
        seen.append("on_idle")
        ctx.set_state(999)
        raise ConnectionError("archive down")

    async with running(registry2, store_url, records=records) as jobs:
        client = jobs.task("t")
        await client.send("a", 5)
        with pytest.raises(dj.HandlerError) as raised:
            await client.trigger("a")
        assert seen == ["execute", "on_idle"]
        message = str(raised.value)
        assert message.startswith("on_idle of task job 't' raised for instance 'a'"), message
        # execute succeeded and its change is kept; on_idle's is not.
        assert "the state is unchanged" not in message
        assert "execute's changes are kept" in message
        state = await client.get_state("a")
        assert state is not None and state.state == 100
    assert _failures(records) == ["on_idle"]
