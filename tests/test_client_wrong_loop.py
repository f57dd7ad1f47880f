"""Client calls from outside the trio run that serves them.

A call from another ``trio.run`` (a thread running its own loop) or from
asyncio is refused with a ConfigurationError saying where calls belong,
before it touches the runtime, which goes on serving. From a thread,
``trio.from_thread.run`` is the way in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import durable_jobs as dj
from _runtime import note_registry


def _other_trio(call: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await call()

    return trio.run(main)


def _asyncio(call: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await call()

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("runner", "where"),
    [(_other_trio, "from another trio.run"), (_asyncio, "outside trio")],
)
async def test_a_call_from_another_loop_is_refused_and_the_runtime_goes_on(
    sqlite_url: str, runner: Callable[..., Any], where: str
) -> None:
    async with dj.open_jobs(note_registry(), sqlite_url) as jobs:
        notes = jobs.task("note")
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: notes.send("a", "elsewhere"),
            lambda: notes.get_state("a"),
            lambda: notes.status("a"),
            jobs.wait_idle,
        ]
        for call in calls:
            with pytest.raises(dj.ConfigurationError, match=where) as caught:
                await trio.to_thread.run_sync(runner, call)
            assert "trio.from_thread.run" in str(caught.value)
        assert await notes.get_state("a") is None  # nothing was sent
        await notes.send("a", "here")
        state = await notes.get_state("a")
        assert state is not None
        assert state.state == "here"


async def test_a_thread_calls_in_with_from_thread_run(sqlite_url: str) -> None:
    async with dj.open_jobs(note_registry(), sqlite_url) as jobs:

        def in_a_thread() -> Any:
            client = jobs.task("note")  # a client may be got anywhere
            return trio.from_thread.run(client.send, "b", "from a thread")

        result = await trio.to_thread.run_sync(in_a_thread)
        assert result.created
        state = await jobs.task("note").get_state("b")
        assert state is not None
        assert state.state == "from a thread"
