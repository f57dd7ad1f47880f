"""A client call whose read is queued for the batched reader waits for that read even
if it is cancelled meanwhile (the read is on its way in a worker thread); the call
then goes on uncancelled to its commit and result (the cancellation shows at the
caller's next checkpoint), the other reads queued behind it are answered, and the
runtime goes on."""

from __future__ import annotations

import threading
from typing import Any

import trio
import trio.testing

import durable_jobs as dj
from _runtime import HOUR, running
from durable_jobs import open_store


def registry() -> dj.Registry:
    reg = dj.Registry()

    @reg.continuous("c", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        pass

    return reg


async def test_a_call_cancelled_during_its_read_waits_for_it_then_sees_the_cancellation(
    sqlite_url: str,
) -> None:
    with open_store(sqlite_url) as store:
        async with running(registry(), store) as jobs:
            client = jobs.continuous("c")
            await client.start("warm", 1)  # the reader task is serving
            entered, release = threading.Event(), threading.Event()
            real = store.get_many

            def held_read(keys: Any) -> Any:
                entered.set()
                release.wait(30)
                return real(keys)

            store.get_many = held_read  # type: ignore[method-assign]
            ended: dict[str, object] = {}
            cancelled: set[str] = set()

            async def start(instance_id: str, scope: trio.CancelScope) -> None:
                with scope:
                    ended[instance_id] = await client.start(instance_id, 2)
                    await trio.lowlevel.checkpoint()
                if scope.cancelled_caught:
                    cancelled.add(instance_id)

            first, second = trio.CancelScope(), trio.CancelScope()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(start, "a", first)
                await trio.to_thread.run_sync(entered.wait)
                nursery.start_soon(start, "b", second)  # queued behind a's read
                await trio.testing.wait_all_tasks_blocked()
                first.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert ended == {}  # a waits for its read: the thread call is on its way
                store.get_many = real  # type: ignore[method-assign]
                release.set()
            assert cancelled == {"a"}
            for instance_id in ("a", "b"):
                result = ended[instance_id]
                assert isinstance(result, dj.StartResult)
                assert result.created
                assert await client.get_state(instance_id) == 2
            assert jobs._rt.loads.reads >= 3
            assert (await client.start("c", 3)).created  # the reader still serves
