"""How client calls read instances: reads queued together go to the store in one
call, a read that fails fails only its own call, and on a shared store a call
that found no index row when it took the lock reads nothing (the instance is new).
"""

from __future__ import annotations

import sqlite3
from contextlib import AsyncExitStack

import pytest
import trio
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import HOUR, running
from durable_jobs import open_store
from durable_jobs._domain.instance import JobInstance
from durable_jobs.adapters import DeletesInstances


def registry() -> dj.Registry:
    reg = dj.Registry()

    @reg.continuous("c", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        pass

    @reg.task("t", event=int, state=int)
    async def t(ctx: dj.TaskContext[int]) -> None:
        pass

    @t.on_event
    async def t_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state((ctx.state or 0) + event)

    return reg


async def test_concurrent_reads_of_stored_instances_are_batched(
    durable_store_url: str, autojump_clock: MockClock
) -> None:
    ids = [f"i{k}" for k in range(40)]
    async with running(registry(), durable_store_url) as jobs:
        for instance_id in ids:
            assert (await jobs.task("t").send(instance_id, 1)).created
    # A new process: nothing is cached, every call reads its instance from the store.
    results: dict[str, dj.SendResult] = {}
    async with running(registry(), durable_store_url) as jobs:

        async def send(instance_id: str) -> None:
            results[instance_id] = await jobs.task("t").send(instance_id, 2)

        async with trio.open_nursery() as nursery:
            for instance_id in ids:
                nursery.start_soon(send, instance_id)
        assert not any(r.created for r in results.values())
        for instance_id in ids:
            assert (await jobs.task("t").get_state(instance_id)).state == 3  # type: ignore[union-attr]
        loads = jobs._rt.loads
        assert loads.reads == len(ids)
        if durable_store_url.startswith("sqlite"):
            # One thread call at a time: the reads that queued meanwhile went together.
            assert loads.batches < loads.reads


def corrupt(url: str, uuid_hex: str) -> None:
    """Overwrite an SQLite store's first event of one instance with bytes that are not JSON."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        changed = conn.execute(
            "UPDATE stored_events SET state = ? "
            "WHERE originator_id = ? AND originator_version = 1",
            (b"\xff not json", uuid_hex),
        ).rowcount
    assert changed == 1


async def test_a_read_that_fails_fails_only_its_own_call(
    sqlite_url: str, autojump_clock: MockClock
) -> None:
    ids = ["a", "bad", "c", "d"]
    async with running(registry(), sqlite_url) as jobs:
        for instance_id in ids:
            await jobs.continuous("c").start(instance_id, 7)
    with open_store(sqlite_url) as store:
        rows = store.list_instances(kind="continuous", job="c")
        corrupt(sqlite_url, next(r.instance_uuid.hex for r in rows if r.instance_id == "bad"))
    found: dict[str, object] = {}
    async with running(registry(), sqlite_url) as jobs:

        async def start(instance_id: str) -> None:
            try:
                found[instance_id] = await jobs.continuous("c").start(instance_id, 8)
            except dj.StoreError as exc:
                found[instance_id] = exc

        async with trio.open_nursery() as nursery:
            for instance_id in ids:
                nursery.start_soon(start, instance_id)
        assert jobs._rt.loads.batches < jobs._rt.loads.reads  # read together
    bad = found.pop("bad")
    assert isinstance(bad, dj.StoreError)
    assert "'bad'" in str(bad)
    for result in found.values():
        assert isinstance(result, dj.StartResult)
        assert not result.created


@pytest.mark.postgres
async def test_a_new_instance_is_not_read_on_a_shared_store(
    pg_url: str, autojump_clock: MockClock
) -> None:
    """The lock call read the index version: no row, no instance, nothing to read."""
    async with running(registry(), pg_url) as jobs:
        for k in range(5):
            assert (await jobs.continuous("c").start(f"n{k}", k)).created
            assert (await jobs.task("t").send(f"n{k}", k)).created
        assert jobs._rt.loads.reads == 0
        # Started again: cached, and the lock call says the cached version is current.
        assert not (await jobs.continuous("c").start("n0", 9)).created
        assert jobs._rt.loads.reads == 0
        assert await jobs.continuous("c").get_state("n0") == 0


@pytest.mark.postgres
async def test_racing_starts_of_one_id_in_two_processes_make_one_instance(
    pg_url: str, autojump_clock: MockClock
) -> None:
    ids = [f"r{k}" for k in range(10)]
    results: list[tuple[int, str, dj.StartResult]] = []
    async with AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(running(registry(), pg_url)) for _ in range(2)]

        async def start(n: int, instance_id: str) -> None:
            result = await workers[n].continuous("c").start(instance_id, n)
            results.append((n, instance_id, result))

        async with trio.open_nursery() as nursery:
            for instance_id in ids:
                for n in (0, 1):
                    nursery.start_soon(start, n, instance_id)
        for instance_id in ids:
            mine = [(n, r) for n, i, r in results if i == instance_id]
            assert sorted(r.created for _, r in mine) == [False, True]
            (winner,) = [n for n, r in mine if r.created]
            # The loser is told of the winner's instance, as it was committed.
            assert mine[0][1].status == mine[1][1].status
            assert mine[0][1].status.run_count == 0
            for worker in workers:
                assert await worker.continuous("c").get_state(instance_id) == winner
                history = await worker.continuous("c").history(instance_id)
                assert [h.name for h in history].count("started") == 1


@pytest.mark.postgres
async def test_a_start_after_another_process_purged_the_instance_makes_a_new_one(
    pg_url: str, autojump_clock: MockClock
) -> None:
    async with running(registry(), pg_url) as a, running(registry(), pg_url) as b:
        assert (await a.continuous("c").start("x", 1)).created  # cached in a
        assert (await b.continuous("c").terminate("x")).terminated
        with open_store(pg_url) as store:
            (row,) = store.list_instances(kind="continuous", job="c")
            store.delete_instance(row.instance_uuid, version=row.version)
        again = await a.continuous("c").start("x", 2)
        assert again.created
        assert await a.continuous("c").get_state("x") == 2
        assert await b.continuous("c").get_state("x") == 2
        assert [h.name for h in await b.continuous("c").history("x")] == ["started", "alarm_set"]


async def test_a_start_after_terminate_or_purge_on_one_process(
    store_url: str, autojump_clock: MockClock
) -> None:
    async with running(registry(), store_url) as jobs:
        c = jobs.continuous("c")
        assert (await c.start("x", 1)).created
        assert not (await c.start("x", 2)).created
        assert await c.get_state("x") == 1
        assert (await c.terminate("x")).terminated
        restarted = await c.start("x", 3)
        assert restarted.created
        assert await c.get_state("x") == 3
        assert (await c.terminate("x")).terminated
        store = jobs.store
        if isinstance(store, DeletesInstances):
            (row,) = store.list_instances(kind="continuous", job="c")
            store.delete_instance(row.instance_uuid, version=row.version)
            jobs._rt.cache.evict(row.instance_uuid)
            assert (await c.status("x")).status == "not_found"
            assert (await c.start("x", 4)).created
            assert await c.get_state("x") == 4


async def test_get_many_reads_each_instance_or_none(
    store_url: str, autojump_clock: MockClock
) -> None:
    async with running(registry(), store_url) as jobs:
        for instance_id in ("a", "c"):
            await jobs.continuous("c").start(instance_id, ord(instance_id))
        store = jobs.store
        keys = [("continuous", "c", i) for i in ("a", "b", "c")] + [("task", "t", "a")]
        found = store.get_many(keys)  # type: ignore[arg-type]
        ids = [f.d.instance_id if isinstance(f, JobInstance) else f for f in found]
        assert ids == ["a", None, "c", None]
        assert found[0] == store.get("continuous", "c", "a")
        assert store.get_many([]) == []
