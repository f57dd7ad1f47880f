"""Kill -9 a running jobs app, again and again; then audit the store and run on.

The child (``tests/_runtime_crash_child.py``) serves a continuous, a debounce
and a task job on a real store with the system clock, adds and sends events
continuously, and prints every committed record and every acknowledged call.
The parent SIGKILLs it after a different number of lines each cycle, then
checks that nothing committed or acknowledged is lost, that every instance's
index row (its alarm) matches its log, and finally that a new runtime picks
the alarms up and runs them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing

import _children as children
import durable_jobs as dj
from _runtime_crash_child import make_registry
from durable_jobs._domain.debounce import DebounceInstance

pytestmark = pytest.mark.slow

CHILD = Path(__file__).resolve().with_name("_runtime_crash_child.py")
KILL_AFTER = (40, 90, 25, 140)


class Child(children.Child):
    """One ``_runtime_crash_child.py`` process whose lines the parent reads."""

    def __init__(self, url: str, first: int) -> None:
        super().__init__(CHILD, url, str(first))


def run_and_kill(url: str, first: int, lines: int) -> list[str]:
    """Run the child until it printed ``lines`` lines, SIGKILL it, return what it printed."""
    child = Child(url, first)
    try:
        child.read_until(lambda seen: len(seen) >= lines)
        return child.kill()
    finally:
        child.cleanup()


def audit(store: dj.Store, lines: list[str], acked_adds: set[int]) -> None:
    """Everything the child saw committed or acknowledged is in the store, consistently."""
    committed: dict[tuple[str, str], dict[int, str]] = {}
    for line in lines:
        word, *rest = line.split()
        if word == "commit":
            kind, instance_id, number, name = rest
            committed.setdefault((kind, instance_id), {})[int(number)] = name
        elif word == "added":
            acked_adds.add(int(rest[0]))
    keys = {"continuous": "beat", "debounce": "digest", "task": "ping"}
    for (kind, instance_id), versions in committed.items():
        inst = store.get(kind, keys[kind], instance_id)  # type: ignore[arg-type]
        assert inst is not None
        history = store.history(inst.id)
        assert [e.originator_version for e in history] == list(range(1, len(history) + 1))
        by_version = {e.originator_version: e.NAME for e in history}
        for version_no, name in versions.items():
            assert by_version.get(version_no) == name, (kind, instance_id, version_no, name)
    for row in store.list_instances():
        inst = store.get(row.kind, row.job, row.instance_id)  # type: ignore[arg-type]
        assert inst is not None
        assert (row.version, row.status, row.due_at) == (
            inst.version,
            inst.status,
            inst.d.alarm_at,
        ), row
        if inst.kind in ("continuous", "task"):
            assert inst.d.alarm_at is not None, f"{row.instance_id} lost its alarm"
    digest = store.get("debounce", "digest", "d1")
    assert isinstance(digest, DebounceInstance)
    history = store.history(digest.id)
    added = [e.event for e in history if e.NAME == "event_added"]  # type: ignore[attr-defined]
    assert acked_adds <= set(added), sorted(acked_adds - set(added))[:10]
    assert len(added) == len(set(added)), "an event was added twice"
    flushed = sum(e.event_count for e in history if e.NAME == "flushed")  # type: ignore[attr-defined]
    assert flushed + digest.buffered_events == len(added)


async def resume(url: str) -> None:
    """A new runtime picks the alarms up: overdue ones run, buffered batches flush."""
    store = dj.open_store(url)
    try:
        before = store.get("continuous", "beat", "b1")
        assert before is not None
        clock = dj.VirtualClock(datetime.now(UTC))
        async with dj.open_jobs(make_registry(), store, clock=clock, poll_interval=None) as jobs:
            await trio.sleep(1)
            await jobs.wait_idle()
            status = await jobs.continuous("beat").status("b1")
            assert status.status == "running"
            assert status.run_count > before.d.run_count
            digest = await jobs.debounce("digest").status("d1")
            assert digest.status in ("idle", "debouncing")
            assert digest.event_count < 3
            assert (await jobs.task("ping").status("p1")).status == "active"
    finally:
        store.close()


def test_kill_9_loses_nothing(durable_store_url: str) -> None:
    """A crash at any point loses no committed state, acknowledged event or alarm."""
    acked: set[int] = set()
    first = 0
    for cycle, lines in enumerate(KILL_AFTER):
        seen = run_and_kill(durable_store_url, first, lines + 7 * cycle)
        with dj.open_store(durable_store_url) as store:
            audit(store, seen, acked)
        first += 10_000  # distinct event numbers per cycle
    trio.run(resume, durable_store_url, clock=trio.testing.MockClock(autojump_threshold=0))


def beat_runs(lines: list[str]) -> int:
    return sum(1 for x in lines if x.startswith("commit continuous b1 ") and "run_succeeded" in x)


@pytest.mark.postgres
def test_a_worker_killed_mid_flight_is_taken_over(pg_url: str) -> None:
    """Two workers on one Postgres store; kill -9 one: the other runs on, and no run of
    an instance was ever committed twice."""
    first, second = Child(pg_url, 0), Child(pg_url, 500_000)
    try:
        first.read_until(lambda seen: len(seen) >= 40)
        second.read_until(lambda seen: len(seen) >= 40)
        before = beat_runs(second.lines)
        lines = first.kill()
        # The survivor keeps the heartbeat going, whichever worker was running it.
        second.read_until(lambda seen: beat_runs(seen) >= before + 5)
        lines = lines + second.kill()
    finally:
        first.cleanup()
        second.cleanup()
    acked: set[int] = set()
    with dj.open_store(pg_url) as store:
        audit(store, lines, acked)
        beat = store.get("continuous", "beat", "b1")
        assert beat is not None
        runs = [e.run_count for e in store.history(beat.id) if e.NAME == "run_succeeded"]  # type: ignore[attr-defined]
        assert runs == list(range(1, len(runs) + 1)), "a run was committed twice or skipped"
