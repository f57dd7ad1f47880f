"""Several worker processes on one Postgres: a lost lock session, a kill -9, a freeze.

Real processes (``_pg_worker_child.py``) on the test server with the system
clock; the parent reads what they print (handler start and end times, commits)
and checks the guarantees: runs of one instance never overlap, a run whose lock
was lost commits nothing, a dead or frozen worker's instances are taken over,
and a frozen worker that wakes up commits nothing stale and works on.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

import durable_jobs as dj
from _pg_workers import Worker, Workers, assert_no_overlap, workers
from durable_jobs._domain.ids import instance_uuid
from durable_jobs.stores.postgres import advisory_key

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def holder_pid(admin: psycopg.Connection[tuple[object, ...]], schema: str) -> int | None:
    """The backend holding the lock of the slow instance ``s1``."""
    key = advisory_key(f"{schema}:instance:{instance_uuid('continuous', 'slow', 's1')}")
    row = admin.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
        "AND classid = %s AND objid = %s",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
    return None if row is None else int(row[0])  # type: ignore[call-overload]


def running(group: Workers) -> Worker:
    """Wait until a worker starts a run of ``s1`` (from now on); that worker."""
    found: list[Worker] = []
    now = time.time()

    def one_started() -> bool:
        found[:] = [
            w
            for w in group.all
            if len(w.starts("s1")) > len(w.runs("s1")) and w.starts("s1")[-1] > now
        ]
        return bool(found)

    group.read_until(one_started)
    return found[0]


def run_counts(url: str) -> list[int]:
    with dj.open_store(url) as store:
        inst = store.get("continuous", "slow", "s1")
        assert inst is not None
        return [
            e.run_count  # type: ignore[attr-defined]
            for e in store.history(inst.id)
            if e.NAME == "run_succeeded"
        ]


def test_a_lost_lock_session_stops_the_run(
    pg_url: str, pg_schema: str, postgres_url: str, tmp_path: Path
) -> None:
    """The lock backend of a worker is terminated mid-run: its handler is cancelled and
    commits nothing, the instance runs again (here or in the other worker), and no two
    runs ever overlap."""
    with workers(tmp_path) as group, psycopg.connect(postgres_url, autocommit=True) as admin:
        first = group.start("a", pg_url, lease=30, slow=3)
        group.read_until(lambda: "ready" in first.lines)
        second = group.start("b", pg_url, lease=30, slow=3, mode="serve")
        group.read_until(lambda: "ready" in second.lines)
        holder = running(group)
        group.wait_for(1.0)
        pid = holder_pid(admin, pg_schema)
        assert pid is not None
        cut = time.time()
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # The run in flight stops; then two more runs of s1 complete, wherever.
        group.read_until(
            lambda: sum(1 for w in group.all for r in w.runs("s1") if r[0] > cut) >= 2
        )
        for worker in group.all:
            group.stop(worker)
        stopped = [r for r in holder.runs("s1") if r[0] < cut < r[1]]
        assert [outcome for _, _, outcome in stopped] == ["cancelled"], (
            cut,
            [x for x in holder.lines if "s1" in x][-6:],
            holder.stderr()[-2000:],
        )
        assert_no_overlap(group.all, "s1")
        assert "lock session" in holder.stderr()
        takeover = min(r[0] for w in group.all for r in w.runs("s1") if r[0] > cut)
        print(
            f"\nlock session cut: handler stopped after {stopped[0][1] - cut:.3f} s, "
            f"next run started after {takeover - cut:.3f} s"
        )
    counts = run_counts(pg_url)
    assert counts == list(range(1, len(counts) + 1)), "a run was committed twice or skipped"


def test_a_killed_worker_is_taken_over_at_once(pg_url: str, tmp_path: Path) -> None:
    """kill -9 of the worker running ``s1``: the other runs it next, without a lease."""
    with workers(tmp_path) as group:
        first = group.start("a", pg_url, lease=30, slow=2)
        group.read_until(lambda: "ready" in first.lines)
        second = group.start("b", pg_url, lease=30, slow=2, mode="serve")
        group.read_until(lambda: "ready" in second.lines)
        holder = running(group)
        other = next(w for w in group.all if w is not holder)
        group.stop(holder)
        killed = time.time()
        group.read_until(lambda: any(s > killed for s in other.starts("s1")))
        takeover = min(s for s in other.starts("s1") if s > killed)
        print(f"\nkill -9: taken over after {takeover - killed:.3f} s")
        group.stop(other)
    counts = run_counts(pg_url)
    assert counts == list(range(1, len(counts) + 1))


def test_a_frozen_worker_is_fenced_and_rejoins(pg_url: str, tmp_path: Path) -> None:
    """SIGSTOP the worker running ``s1`` for longer than its 2 s lease: the other takes
    ``s1`` over; after SIGCONT the frozen one commits nothing of its stale run, logs the
    refusal, and goes on working."""
    lease = 2.0
    with workers(tmp_path) as group:
        first = group.start("a", pg_url, lease=lease, slow=3)
        group.read_until(lambda: "ready" in first.lines)
        second = group.start("b", pg_url, lease=lease, slow=3, mode="serve")
        group.read_until(lambda: "ready" in second.lines)
        frozen = running(group)
        other = next(w for w in group.all if w is not frozen)
        frozen.signal(signal.SIGSTOP)
        stopped = time.time()
        group.read_until(lambda: any(s > stopped for s in other.starts("s1")))
        takeover = min(s for s in other.starts("s1") if s > stopped)
        group.wait_for(1.0)  # the other's run of s1 is in flight (3 s)
        frozen.signal(signal.SIGCONT)
        woke = time.time()
        group.wait_for(3.0)  # the other's run of s1 ends
        # The frozen one works again: alone (each instance has a preferred worker among
        # those serving), it commits runs.
        group.stop(other)
        group.read_until(lambda: len(frozen.commits(after=woke)) >= 3)
        group.wait_for(3.0)
        group.stop(frozen)
        print(f"\nfreeze (lease {lease} s): taken over after {takeover - stopped:.3f} s")
        stale = [c for c in frozen.commits(after=stopped) if c.split()[1] == "s1"]
        taken = [float(c.split()[4]) for c in other.commits(after=stopped) if c.split()[1] == "s1"]
        assert taken, "the other worker committed no run of s1 after the freeze"
        # Whatever the frozen one committed on s1 came after the other's run: fresh runs.
        assert all(float(c.split()[4]) > min(taken) for c in stale), stale
        assert "was refused" in frozen.stderr() or "lock session" in frozen.stderr()
        # Its run in flight at the freeze (a 3 s sleep, over by the time it woke) was
        # cancelled as the process woke up: it had gone on to finish, beside the other
        # worker's run of s1, before the keeper thread reported the session lost.
        in_flight = [r for r in frozen.runs("s1") if r[0] < stopped < r[1]]
        assert [outcome for _, _, outcome in in_flight] == ["cancelled"], in_flight
        assert "Stopping the work on continuous job 'slow' instance 's1'" in frozen.stderr()
    counts = run_counts(pg_url)
    assert counts == list(range(1, len(counts) + 1))
