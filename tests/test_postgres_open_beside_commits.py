"""Opening a Postgres store beside a worker that commits: no failed open, no deadlock.

A process that opened an existing schema used to run its DDL (``CREATE ...
IF NOT EXISTS``) anyway. ``CREATE INDEX IF NOT EXISTS`` takes a ShareLock on
its table before it looks for the index, so the opener held the events table
while it waited for the index table, and a commit held the index table while
it waited for the events table: "deadlock detected", failing the open or
stalling the commit.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from conftest import connect_postgres

from durable_jobs import open_store
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.ids import instance_uuid

pytestmark = pytest.mark.postgres

T = datetime(2026, 1, 1, tzinfo=UTC)


def _deadlocks(postgres_url: str) -> int:
    with connect_postgres(postgres_url) as conn:
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _stats_settled(postgres_url: str) -> None:
    # Cumulative statistics are flushed by backends lazily; ask for a fresh snapshot.
    with connect_postgres(postgres_url) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")


def test_opening_beside_a_committing_worker_never_deadlocks(
    postgres_url: str, pg_url: str
) -> None:
    """A busy worker commits without pause while 20 rounds of two more processes' stores
    open beside it: every open succeeds, every commit succeeds, and the server counts no
    deadlock."""
    with open_store(pg_url):
        pass  # the schema exists, as it does when a worker joins a running system
    before = _deadlocks(postgres_url)
    stop = threading.Event()
    commit_errors: list[BaseException] = []
    commits = [0]

    def busy() -> None:
        with open_store(pg_url) as store:
            n = 0
            while not stop.is_set():
                n += 1
                inst, _ = ContinuousInstance.start(
                    None, "busy", f"i{n}", now=T, state=n, first_run_at=T
                )
                try:
                    store.save(inst)
                except BaseException as exc:
                    commit_errors.append(exc)
                    return
                commits[0] += 1

    open_errors: list[BaseException] = []

    def opener() -> None:
        try:
            with open_store(pg_url) as store:
                store.index_row(instance_uuid("continuous", "busy", "i1"))
        except BaseException as exc:
            open_errors.append(exc)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        for _ in range(20):
            pair = [threading.Thread(target=opener) for _ in range(2)]
            for t in pair:
                t.start()
            for t in pair:
                t.join(timeout=60)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert open_errors == []
    assert commit_errors == []
    assert commits[0] > 0
    _stats_settled(postgres_url)
    assert _deadlocks(postgres_url) == before
