"""Snapshots of an instance that remembers many idempotency keys.

A snapshot holds every key; replaying an event costs about the same whatever the
instance holds. So such an instance is snapshotted less often: every
``snapshot_interval`` events, times one more per 1,000 keys remembered. Before, each
snapshot of a busy keyed instance copied every key every ``snapshot_interval`` events,
and its adds got ten times slower by 20,000 keys.
"""

from __future__ import annotations

import itertools

import trio.testing

import durable_jobs as dj
from _runtime import note_registry, running
from durable_jobs._domain.ids import instance_uuid

INTERVAL = 10


async def test_an_instance_with_many_keys_is_snapshotted_less_often(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    store = dj.open_store(sqlite_url, snapshot_interval=INTERVAL)
    try:
        async with running(note_registry(), store) as jobs:
            note = jobs.task("note")
            uuid = instance_uuid("task", "note", "n")
            versions: list[int] = []  # each snapshot taken (the store keeps the latest)
            for i in range(2600):
                await note.send("n", f"e{i}", idempotency_key=f"key-{i}")
                latest = store.snapshot_version(uuid)
                if latest is not None and latest not in versions:
                    versions.append(latest)
            state = await note.get_state("n")
            assert state is not None and state.state == "e2599"
        gaps = [b - a for a, b in itertools.pairwise(versions)]
        # Few keys: about every INTERVAL events (a send writes a few events at once);
        # over 2,000 keys: about every 3 x INTERVAL.
        assert all(gap < 2 * INTERVAL for gap in gaps[:5]), gaps
        assert all(gap >= 2.5 * INTERVAL for gap in gaps[-5:]), gaps
        # A load reads the last snapshot and the events after it: the same state.
        with dj.Inspector(sqlite_url) as inspector:
            status = inspector.status("task", "note", "n")
            assert status is not None
    finally:
        store.close()
    with dj.open_store(sqlite_url, snapshot_interval=INTERVAL) as again:
        inst = again.get("task", "note", "n")
        assert inst is not None and len(inst.d.idempotency) == 2600
