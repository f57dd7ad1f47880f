"""What the tools say about a store whose tables do not agree: a log the index does not
know (an index row deleted, the tables restored from different backups), a snapshot
newer than the end of its log. ``doctor`` and ``replay`` name them, ``export`` refuses
to leave one out. Real SQLite files and Postgres schemas, edited behind the library.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

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


async def test_an_interrupted_import_is_finished_with_resume(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """An import interrupted after some batches (here: the batches of one job written,
    as a killed import leaves them) is refused when run again, and finished by the same
    command with --resume: the instances already written are skipped, the rest written
    and everything verified. An instance whose log differs is still refused."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    registry = _registry()

    @registry.continuous("other", state=int, schedule=dj.every(HOUR))
    async def other(ctx: dj.ContinuousContext[int]) -> None:
        pass

    async with running(registry, source) as jobs:
        for i in range(3):
            await jobs.continuous("sync").start(f"s{i}", i)
            await jobs.continuous("other").start(f"o{i}", i)
        await advance(jobs, 2 * HOUR)
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    assert cli(["--store", source, "export", "-o", str(whole)]) == 0
    assert cli(["--store", source, "export", "--job", "sync", "-o", str(part)]) == 0
    target = f"sqlite:///{tmp_path / 'target.db'}"
    assert cli(["--store", target, "import", str(part)]) == 0  # what got written
    capsys.readouterr()
    assert cli(["--store", target, "import", str(whole)]) == 1
    assert "already has" in capsys.readouterr().err
    assert cli(["--store", target, "import", "--resume", "--json", str(whole)]) == 0
    assert json.loads(capsys.readouterr().out)["instances"] == 6
    with dj.open_store(source) as a, dj.open_store(target) as b:
        for row in a.iter_instances():
            assert [s.state for s in a.stored_events(row.instance_uuid)] == [
                s.state for s in b.stored_events(row.instance_uuid)
            ]
    # A log that is not what the file holds is refused even with --resume.
    again = f"sqlite:///{tmp_path / 'again.db'}"
    async with running(registry, again) as jobs:
        await jobs.continuous("sync").start("s0", 99)
    assert cli(["--store", again, "import", "--resume", str(whole)]) == 1
    assert "s0" in capsys.readouterr().err
