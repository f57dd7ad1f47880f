"""Replay determinism: an instance rebuilt from its log is the instance the runtime held.

A random workload (``_workloads``) runs through the real runtime in virtual
time on a store that records, after every commit, the whole data of each
instance it saved (the runtime's committed, "live" aggregate at that
version). Then, for every instance:

1. a full replay of its log, event by event, equals the live aggregate at
   the last version, and so does the store's own rebuild (which starts from
   its latest snapshot: ``snapshot_interval`` is small here);
2. the latest snapshot is where the interval says it must be;
3. at every version N, the store's rebuild at N (snapshot at or before N,
   then events) equals a replay of the first N events, and equals the live
   aggregate at N whenever the runtime committed exactly version N;
4. the records the observer hook saw live are the history the store gives
   back (same names, versions, times, fields and ``state_before``).

The domain-level version (no runtime, no store) is
``tests/test_domain_properties.py``; this one adds the runtime, the JSON
mapper, snapshots on disk and versioned reads.
"""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

import pytest
from _faults import Instrumented, instrument, view
from _support import fresh_sqlite_url, run_virtual, slow_examples
from _workloads import (
    T0,
    Effects,
    Step,
    drive,
    make_registry,
    replay,
    stored_records,
    workloads,
)
from hypothesis import given
from hypothesis import strategies as st

import durable_jobs as dj
from durable_jobs._domain.instance import JobInstance
from durable_jobs._records import RecordedEvent


def run_workload(store: Instrumented, steps: list[Step]) -> list[RecordedEvent]:
    """Run ``steps`` on ``store`` in virtual time; the records the observer saw."""
    records: list[RecordedEvent] = []
    effects = Effects(clock=dj.VirtualClock(T0))

    async def main() -> None:
        async with dj.open_jobs(
            make_registry(effects),
            store,
            clock=effects.clock,
            observers=[records.append],
            poll_interval=None,
        ) as jobs:
            await drive(jobs, steps, effects)

    run_virtual(main)
    return records


def check_replay(store: Instrumented, records: list[RecordedEvent], interval: int) -> None:
    live_versions: dict[UUID, list[int]] = defaultdict(list)
    for uuid, version in store.views:
        live_versions[uuid].append(version)
    assert live_versions, "the workload committed nothing"
    snapshots = store._app.snapshots
    assert snapshots is not None

    for uuid, versions in live_versions.items():
        history = store.history(uuid)
        last = max(versions)
        assert len(history) == last, "the log has more than the runtime committed"
        live = store.views[(uuid, last)]
        # 1. Full replay and the store's (snapshot-based) rebuild equal the live aggregate.
        assert view(replay(history)) == live
        rebuilt = store.get_by_uuid(uuid)
        assert rebuilt is not None
        assert view(rebuilt) == live
        assert rebuilt == replay(history)
        # 2. The latest snapshot is at or after the last multiple of the interval.
        latest = list(snapshots.get(uuid, desc=True, limit=1))
        if last >= interval:
            assert latest, f"{last} events and no snapshot (interval {interval})"
            assert last - last % interval <= latest[0].originator_version <= last
        else:
            assert not latest
        # 3. Every version: rebuild at N == replay of N events == live at N (if committed).
        for n in range(1, last + 1):
            at_n = store.get_by_uuid(uuid, version=n)
            assert at_n is not None
            assert at_n.version == n
            assert view(at_n) == view(replay(history[:n])), f"version {n}"
            if (uuid, n) in store.views:
                assert view(at_n) == store.views[(uuid, n)], f"version {n} != live"

    # 4. What observers saw live is the history as stored.
    seen: dict[tuple[str, str, str], list[RecordedEvent]] = defaultdict(list)
    for record in records:
        seen[(record.kind, record.job, record.instance_id)].append(record)
    assert dict(seen) == stored_records(store)


@slow_examples(100)
@given(steps=workloads(), interval=st.sampled_from([2, 3, 5]))
def test_replay_equals_live_on_memory(steps: list[Step], interval: int) -> None:
    with instrument(dj.open_store("memory://", snapshot_interval=interval)) as store:
        records = run_workload(store, steps)
        check_replay(store, records, interval)


@slow_examples(25)
@given(steps=workloads(), interval=st.sampled_from([2, 3]))
def test_replay_equals_live_on_sqlite(steps: list[Step], interval: int) -> None:
    """Through the SQLite file: snapshots and events as stored rows, read back by a fresh
    store with snapshots turned off (``snapshot_interval=0``) too."""
    with fresh_sqlite_url() as url:
        with instrument(dj.open_store(url, snapshot_interval=interval)) as store:
            records = run_workload(store, steps)
            check_replay(store, records, interval)
            final = {uuid: view(i) for uuid, i in _rebuild_all(store).items()}
        with dj.open_store(url, snapshot_interval=0) as plain:
            assert {uuid: view(i) for uuid, i in _rebuild_all(plain).items()} == final
            for uuid, live in final.items():
                assert view(replay(plain.history(uuid))) == live


def _rebuild_all(store: dj.Store) -> dict[UUID, JobInstance]:
    out: dict[UUID, JobInstance] = {}
    for row in store.iter_instances():
        inst = store.get_by_uuid(row.instance_uuid)
        assert inst is not None
        out[row.instance_uuid] = inst
    return out


@pytest.mark.parametrize("interval", [1, 4])
def test_a_long_workload_replays_through_many_snapshots(interval: int) -> None:
    """A fixed, busy workload (hundreds of events per instance): the same checks."""
    steps = [Step("start", "a"), Step("start", "b"), Step("send", "a", 1)]
    for n in range(40):
        steps += [Step("add", "a"), Step("add", "b"), Step("sleep", arg=61 * (n % 7))]
        steps += [Step("send", "b", n % 4), Step("trigger", "a")]
    with instrument(dj.open_store("memory://", snapshot_interval=interval)) as store:
        records = run_workload(store, steps)
        check_replay(store, records, interval)
        assert max(v for _, v in store.views) > 100
