"""The in-process keyed locks without a ``trio.Lock`` per key: waiters take the lock
in turn, a waiter cancelled while waiting leaves the queue, and nothing is left
behind once nobody holds or waits."""

from __future__ import annotations

from uuid import uuid4

import trio
import trio.testing

from durable_jobs._runtime.locks import KeyedLocks


async def test_waiters_take_the_lock_in_turn_and_a_cancelled_one_leaves() -> None:
    locks, key = KeyedLocks(), uuid4()
    order: list[str] = []
    release = trio.Event()
    scopes: dict[str, trio.CancelScope] = {}

    async def holder() -> None:
        async with locks(key):
            order.append("holder")
            await release.wait()

    async def waiter(name: str) -> None:
        with trio.CancelScope() as scope:
            scopes[name] = scope
            async with locks(key):
                order.append(name)
                await trio.lowlevel.checkpoint()
        if scope.cancelled_caught:
            order.append(f"{name} cancelled")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await trio.testing.wait_all_tasks_blocked()
        for name in ("a", "b", "c"):
            nursery.start_soon(waiter, name)
            await trio.testing.wait_all_tasks_blocked()
        scopes["b"].cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["holder", "b cancelled"]
        release.set()
    assert order == ["holder", "b cancelled", "a", "c"]
    assert not locks._locks


async def test_a_refused_take_releases_the_lock_for_the_next() -> None:
    locks, key = KeyedLocks(), uuid4()

    def refuse() -> None:
        raise RuntimeError("closed")

    hold = locks(key)
    hold.on_taken = refuse
    try:
        async with hold:
            raise AssertionError("held")
    except RuntimeError:
        pass
    assert not locks._locks
    async with locks(key) as held:
        assert held
    assert not locks._locks
