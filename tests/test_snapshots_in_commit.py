"""Snapshots and the commit they belong to.

SQLite and Postgres write the snapshots a save takes in the save's own
transaction (no transaction, fsync or round trips of their own); the memory
store writes them after the commit, all of one save at once. Either way a snapshot is a
cache: one that cannot be taken is logged and never fails the commit.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import SECOND, advance, running
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.data import Intents
from durable_jobs._domain.instance import InstanceSnapshot
from durable_jobs._runtime.cache import clone

NOW = datetime(2026, 1, 1, tzinfo=UTC)
#: A start writes 2 events and a run 3 (its result, the state, the alarm): 2, 5, 8.
INTERVAL = 8
registry = dj.Registry()


@registry.continuous("snap", state=int, schedule=dj.every(timedelta(seconds=1)))
async def snap(ctx: dj.ContinuousContext[int]) -> None:
    pass


POLICY = registry.get("continuous", "snap").policy


def started(n: int) -> list[ContinuousInstance]:
    return [
        ContinuousInstance.start(None, "snap", f"i{i}", now=NOW, state=0, first_run_at=NOW)[0]
        for i in range(n)
    ]


def ran(inst: ContinuousInstance, at: datetime) -> ContinuousInstance:
    """A copy of ``inst`` after one run at ``at`` (two events)."""
    new = clone(inst)
    ticket = new.begin_run(now=at, manual=False, policy=POLICY)
    assert ticket is not None
    count = inst.d.state
    assert isinstance(count, int)
    new.finish_run(ticket, now=at, policy=POLICY, intents=Intents(state=count + 1))
    return new


def run_until_snapshot(store: dj.Store, insts: list[ContinuousInstance]) -> list[Any]:
    """Save runs of ``insts`` together until their version reaches the interval."""
    store.save(*insts)
    at = NOW
    while insts[0].version < store.snapshot_interval:
        at += timedelta(seconds=1)
        insts = [ran(i, at) for i in insts]
        store.save(*insts)
    return insts


@pytest.fixture
def durable_store(durable_store_url: str) -> Any:
    """A SQLite or Postgres store (a fresh file or schema)."""
    store = dj.open_store(durable_store_url, snapshot_interval=INTERVAL)
    yield store
    store.close()


def test_the_snapshots_are_written_in_the_commit_s_transaction(
    durable_store: dj.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_store = durable_store
    snapshots = sqlite_store._app.snapshots
    assert snapshots is not None

    def separate_put(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a snapshot was written in a transaction of its own")

    monkeypatch.setattr(snapshots, "put", separate_put)
    insts = run_until_snapshot(sqlite_store, started(3))
    for inst in insts:
        assert sqlite_store.snapshot_version(inst.id) == inst.version == INTERVAL
        rebuilt = sqlite_store.get_by_uuid(inst.id)
        assert rebuilt is not None and rebuilt.d == inst.d


def test_a_commit_that_fails_writes_no_snapshot_either(durable_store: dj.Store) -> None:
    sqlite_store = durable_store
    insts = started(2)
    sqlite_store.save(*insts)
    at = NOW + timedelta(seconds=1)
    insts = [ran(i, at) for i in insts]
    sqlite_store.save(*insts)
    assert insts[0].version == 5
    nxt = [ran(i, at + timedelta(seconds=1)) for i in insts]

    def fault() -> None:
        raise dj.StoreError("injected inside the transaction")

    sqlite_store.index.fault_hook = fault
    with pytest.raises(dj.StoreError):
        sqlite_store.save(*nxt)
    sqlite_store.index.fault_hook = None
    for inst in insts:
        assert sqlite_store.snapshot_version(inst.id) is None
        assert sqlite_store.get_by_uuid(inst.id).version == 5  # type: ignore[union-attr]


def test_a_snapshot_that_cannot_be_taken_is_logged_and_the_commit_stands(
    store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = dj.open_store(store_url, snapshot_interval=INTERVAL)
    try:
        insts = started(2)
        store.save(*insts)
        at = NOW + timedelta(seconds=1)
        insts = [ran(i, at) for i in insts]
        store.save(*insts)
        real_take = InstanceSnapshot.take

        def take(inst: Any) -> Any:
            if inst.d.instance_id == "i0":
                raise ValueError("cannot snapshot this one")
            return real_take(inst)

        monkeypatch.setattr(InstanceSnapshot, "take", take)
        insts = [ran(i, at + timedelta(seconds=1)) for i in insts]
        with caplog.at_level(logging.WARNING, logger="durable_jobs.store"):
            store.save(*insts)
        assert [i.version for i in insts] == [INTERVAL, INTERVAL]
        first, second = insts
        assert store.get_by_uuid(first.id).version == INTERVAL  # type: ignore[union-attr]
        assert store.snapshot_version(first.id) is None
        assert store.snapshot_version(second.id) == INTERVAL
        warned = [r for r in caplog.records if "Could not snapshot" in r.getMessage()]
        assert len(warned) == 1 and "'i0'" in warned[0].getMessage()
        assert warned[0].dj_instance_id == "i0"  # type: ignore[attr-defined]
    finally:
        store.close()


def test_memory_writes_the_snapshots_of_one_save_in_one_put(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = dj.open_store("memory://", snapshot_interval=INTERVAL)
    snapshots = store._app.snapshots
    assert snapshots is not None
    puts: list[int] = []
    real_put = snapshots.put

    def put(events: Any, **kwargs: Any) -> Any:
        puts.append(len(events))
        return real_put(events, **kwargs)

    monkeypatch.setattr(snapshots, "put", put)
    insts = run_until_snapshot(store, started(5))
    assert puts == [5]
    assert all(store.snapshot_version(i.id) == INTERVAL for i in insts)


async def test_runs_under_a_cross_process_lock_write_their_snapshots_in_the_fenced_commit(
    durable_store: dj.Store, autojump_clock: trio.testing.MockClock
) -> None:
    """Through the runtime (on Postgres every commit is fenced by its locks): the
    snapshots come with the commits, and the instance rebuilds from them."""
    snapshots = durable_store._app.snapshots
    assert snapshots is not None

    def separate_put(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a snapshot was written in a transaction of its own")

    snapshots.put = separate_put  # type: ignore[method-assign]
    async with running(registry, durable_store) as jobs:
        await jobs.continuous("snap").start("r", 0)
        for _ in range(6):
            await advance(jobs, SECOND)
        state = await jobs.continuous("snap").get_state("r")
    inst = durable_store.get("continuous", "snap", "r")
    assert inst is not None and inst.version >= 2 * INTERVAL
    assert durable_store.snapshot_version(inst.id) is not None
    assert state == inst.d.state == 0


def test_a_save_whose_events_pass_a_multiple_of_the_interval_takes_a_snapshot() -> None:
    """Versions 3-5 hold 4: the instance is snapshotted as it stands (5); 6-8 hold 8."""
    store = dj.open_store("memory://", snapshot_interval=4)
    try:
        (inst,) = started(1)
        store.save(inst)
        assert store.snapshot_version(inst.id) is None
        inst = ran(inst, NOW + SECOND)
        store.save(inst)
        assert inst.version == 5 and store.snapshot_version(inst.id) == 5
        inst = ran(inst, NOW + 2 * SECOND)
        store.save(inst)
        assert inst.version == 8 and store.snapshot_version(inst.id) == 8
        inst.set_alarm(None, now=NOW + 2 * SECOND)
        store.save(inst)
        assert store.snapshot_version(inst.id) == 8
    finally:
        store.close()


async def test_an_instance_keeps_only_its_latest_snapshot(
    durable_store: dj.Store, autojump_clock: trio.testing.MockClock
) -> None:
    """Each snapshot is as large as the state was; an instance reads only its latest,
    so the older ones are dropped in the commit that writes a new one (a state
    that grows would otherwise fill the disk at the square of its size). A past
    version still reads (replayed from the events)."""
    async with running(registry, durable_store) as jobs:
        client = jobs.continuous("snap")
        for instance_id in ("a", "b"):
            await client.start(instance_id, 0)
        for _ in range(20):  # 2 events, then 2 a run: five snapshots' worth each
            await advance(jobs, SECOND)
    for instance_id in ("a", "b"):
        inst = durable_store.get("continuous", "snap", instance_id)
        assert inst is not None
        assert inst.version >= 4 * INTERVAL
        latest = durable_store.snapshot_version(inst.id)
        assert latest is not None
        assert latest > 3 * INTERVAL
        # The only one: none at or before an earlier version.
        assert durable_store.snapshot_version(inst.id, lte=latest - 1) is None
        rebuilt = durable_store.get_by_uuid(inst.id)
        assert rebuilt is not None
        assert rebuilt.d == inst.d
        early = durable_store.get_by_uuid(inst.id, version=INTERVAL + 1)
        assert early is not None
        assert early.version == INTERVAL + 1
    with dj.Inspector(durable_store) as inspector:
        past = inspector.state_at("continuous", "snap", "a", version=INTERVAL + 1)
    assert past is not None
    assert past.version == INTERVAL + 1
