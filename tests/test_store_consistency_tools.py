"""What the tools say about a store whose tables do not agree: a log the index does not
know (an index row deleted, the tables restored from different backups), a snapshot
newer than the end of its log. ``doctor`` and ``replay`` name them, ``export`` refuses
to leave one out. Real SQLite files and Postgres schemas, edited behind the library.
"""

from __future__ import annotations

import io
import sqlite3

import pytest
import trio.testing

import durable_jobs as dj
from _execute import run_sql
from _runtime import HOUR, advance, running
from durable_jobs.cli import run as cli
from durable_jobs.maintenance import export_jsonl, replay_store


def _registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("sync", state=int, schedule=dj.every(HOUR))
    async def sync(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    return registry


async def test_a_log_without_an_index_row_is_named_and_never_left_out(
    durable_store_url: str,
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running(_registry(), durable_store_url) as jobs:
        await jobs.continuous("sync").start("a", 1)
        await jobs.continuous("sync").start("b", 2)
    with dj.Inspector(durable_store_url) as inspector:
        summary = inspector.status("continuous", "sync", "b")
        assert summary is not None
        uuid = summary.instance_uuid
    if "postgresql" in durable_store_url:
        run_sql(
            durable_store_url,
            "DELETE FROM {schema}.dj_instances WHERE instance_uuid = %s",
            (uuid,),
        )
    else:
        run_sql(durable_store_url, "DELETE FROM dj_instances WHERE instance_uuid = ?", (uuid.hex,))
    capsys.readouterr()
    assert cli(["--store", durable_store_url, "doctor"]) == 1
    out = capsys.readouterr().out
    assert f"instance {uuid}: its log" in out and "has no index row" in out, out
    with dj.open_store(durable_store_url) as store:
        assert [u for u, _ in store.unindexed_logs()] == [uuid]
        reports = list(replay_store(store))
        [orphan] = [r for r in reports if r.instance_uuid == uuid]
        assert orphan.instance_id == "b"
        assert [(d.source, d.field) for d in orphan.divergences] == [("index", "row")]
        with pytest.raises(dj.StoreError, match="without an index row"):
            export_jsonl(store, io.StringIO())
        # A filtered export says nothing of it (it leaves out what its filters leave out).
        export_jsonl(store, io.StringIO(), kind="continuous")
    assert cli(["--store", durable_store_url, "export"]) == 1
    assert "without an index row" in capsys.readouterr().err


async def test_a_snapshot_past_the_end_of_its_log_is_a_divergence(
    sqlite_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    store = dj.open_store(sqlite_url, snapshot_interval=3)
    try:
        async with running(_registry(), store) as jobs:
            await jobs.continuous("sync").start("x", 0)
            await advance(jobs, 5 * HOUR)
        assert [r.divergences for r in replay_store(store)] == [()]
    finally:
        store.close()
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        (last,) = conn.execute("SELECT max(originator_version) FROM stored_events").fetchone()
        conn.execute("UPDATE stored_snapshots SET originator_version = ?", (last + 40,))
        conn.commit()
    finally:
        conn.close()
    with dj.open_store(sqlite_url, snapshot_interval=3) as store:
        [report] = list(replay_store(store))
        found = [(d.source, d.field, d.found) for d in report.divergences]
        assert ("snapshot", "latest_version", last + 40) in found


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("instance_id", "acct-1-renamed", "is instance"),
        ("kind", "bogus", "Unknown job kind"),
        ("job", "a:b", "Invalid job name"),
    ],
)
async def test_an_index_row_naming_another_instance_is_named_and_not_exported(
    sqlite_url: str,
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    column: str,
    value: str,
    problem: str,
) -> None:
    """An index row edited to name another instance than its uuid (a hand "rename"), or
    a kind, job or id no instance can have: doctor names it, and an export refuses it
    (its import would refuse the file: the backup could not be restored)."""
    async with running(_registry(), sqlite_url) as jobs:
        await jobs.continuous("sync").start("acct-1", 1)
    run_sql(sqlite_url, f"UPDATE dj_instances SET {column} = ?", (value,))
    capsys.readouterr()
    assert cli(["--store", sqlite_url, "doctor"]) == 1
    out = capsys.readouterr().out
    assert "the index row of instance" in out and problem in out, out
    with dj.open_store(sqlite_url) as store, pytest.raises(dj.StoreError, match=problem):
        export_jsonl(store, io.StringIO())
