"""The in-process instance locks: a free one is taken without a task switch, a
busy one is waited for, a cancelled task takes none."""

from __future__ import annotations

from uuid import uuid4

import pytest
import trio
import trio.testing

from durable_jobs._runtime.locks import KeyedLocks


async def test_a_free_lock_is_taken_without_a_task_switch() -> None:
    locks, key = KeyedLocks(), uuid4()
    order: list[str] = []

    async def other() -> None:
        order.append("other ran")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        async with locks(key) as held:
            assert held
            order.append("held")
    assert order == ["held", "other ran"]
    assert not locks._locks  # dropped once nobody holds or waits


async def test_a_busy_lock_is_waited_for() -> None:
    locks, key = KeyedLocks(), uuid4()
    order: list[str] = []
    first_holds = trio.Event()
    release = trio.Event()

    async def first() -> None:
        async with locks(key):
            order.append("first")
            first_holds.set()
            await release.wait()
            order.append("first done")

    async def second() -> None:
        await first_holds.wait()
        async with locks(key):
            order.append("second")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        nursery.start_soon(second)
        await first_holds.wait()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert order == ["first", "first done", "second"]
    assert not locks._locks


async def test_a_cancelled_task_takes_no_lock() -> None:
    locks, key = KeyedLocks(), uuid4()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            async with locks(key):
                pytest.fail("held while cancelled")
    assert not locks._locks
