"""Stores written by earlier code still load, run and replay.

``tests/stores_written_earlier/store-2026-12.db`` was written by
``tests/_store_written_earlier.py``, with the code of December 2026 (before the
debounce-only events and fields moved off the base aggregate), and is kept as
it was written: events and snapshots of every kind, debounce batches closed,
flushed, cleared and failing. Each test works on a copy.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import trio.testing

import durable_jobs as dj
from _runtime import HOUR, T, advance, running
from _store_written_earlier import registry
from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.instance import event_classes

HERE = Path(__file__).parent / "stores_written_earlier"
STORE = HERE / "store-2026-12.db"
INSTANCES = {
    ("continuous", "tick", "c-1"): ("running", 14),
    ("debounce", "collect", "d-1"): ("idle", 30),
    ("debounce", "collect", "d-2"): ("idle", 6),
    ("debounce", "collect", "d-3"): ("idle", 9),
    ("debounce", "collect", "d-4"): ("debouncing", 14),
    ("debounce", "collect", "d-5"): ("debouncing", 4),
    ("task", "inbox", "t-1"): ("terminated", 8),
    ("task", "inbox", "t-2"): ("idle", 7),
}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "jobs.db"
    shutil.copyfile(STORE, target)
    return target


def test_the_file_holds_what_the_test_expects() -> None:
    """Guards the fixture: it was written with snapshots and every debounce event."""
    with sqlite3.connect(f"file:{STORE}?mode=ro", uri=True) as db:
        topics = {t for (t,) in db.execute("SELECT DISTINCT topic FROM stored_events")}
        snapshots = db.execute("SELECT count(*) FROM stored_snapshots").fetchone()[0]
    for name in ("BatchClosed", "Flushed", "Cleared", "RunFailed"):
        assert f"durable_jobs:DebounceInstance.{name}" in topics
    assert snapshots > 20
    assert topics <= set(event_classes())


@pytest.mark.parametrize("snapshot_interval", [3, 0])
def test_every_instance_loads_with_its_status_and_version(
    copy: Path, snapshot_interval: int
) -> None:
    with dj.open_store(f"sqlite:///{copy}", snapshot_interval=snapshot_interval) as store:
        rows = {(r.kind, r.job, r.instance_id): r for r in store.iter_instances()}
        assert set(rows) == set(INSTANCES)
        for key, (status, version) in INSTANCES.items():
            inst = store.get(*key)  # type: ignore[arg-type]
            assert inst is not None, key
            assert (inst.status, inst.version) == (status, version), key
            assert (rows[key].status, rows[key].version) == (status, version), key
            # Every stored row decodes, and replaying all of them (no snapshot)
            # gives the instance the snapshots give.
            history = store.history(inst.id)
            assert [e.originator_version for e in history] == list(range(1, version + 1))
            replayed = None
            for event in history:
                replayed = event.mutate(replayed)
            assert replayed == inst, key


def test_debounce_batches_come_back_as_written(copy: Path) -> None:
    with dj.open_store(f"sqlite:///{copy}") as store:
        d4 = store.get("debounce", "collect", "d-4")
        assert isinstance(d4, DebounceInstance)
        assert [(b.batch_no, b.state, b.reason) for b in d4.d.closed] == [
            (1, [0, 1, 2], "max_events")
        ]
        assert d4.d.next_batch_no == 2
        assert d4.d.state == [3]
        assert d4.d.attempt == 1
        d1 = store.get("debounce", "collect", "d-1")
        assert isinstance(d1, DebounceInstance)
        assert (d1.d.closed, d1.d.next_batch_no, d1.d.run_count) == ([], 4, 3)
        d2 = store.get("debounce", "collect", "d-2")
        assert isinstance(d2, DebounceInstance)
        assert (d2.d.event_count, d2.d.state, d2.d.closed) == (0, None, [])


async def test_the_runtime_goes_on_where_the_file_left_off(
    copy: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = dj.VirtualClock(T + 3 * HOUR)
    async with running(registry(), f"sqlite:///{copy}", clock=clock) as jobs:
        await advance(jobs, 2 * HOUR)
        assert await jobs.continuous("tick").get_state("c-1") == 6
        deb = jobs.debounce("collect")
        assert (await deb.status("d-5")).status == "idle"  # its open batch was flushed
        status = await deb.status("d-4")
        assert status.status == "debouncing"
        await deb.add("d-1", 42)
        assert await deb.get_state("d-1") == [42]
        task = await jobs.task("inbox").get_state("t-2")
        assert task is not None
        assert task.state == ["kept"]
