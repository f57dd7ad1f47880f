"""The maintenance commands of the ``durable-jobs`` CLI (replay, export, import, tail,
purge) on SQLite and Postgres stores filled by the runtime, in human and --json form."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import durable_jobs as dj
from _runtime import running
from durable_jobs.cli import run
from durable_jobs.maintenance import TailEvent
from test_maintenance import FILLED, fill, registry, uuid_of


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(x) for x in self.out.splitlines()]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> Result:
        code = run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def counts(url: str) -> tuple[int, list[Any]]:
    with dj.open_store(url) as store:
        return store.last_position(), list(store.iter_instances())


# ---- export / import / replay --------------------------------------------------------


async def test_export_import_replay_between_stores(
    durable_store_url: str,
    sqlite_url: str,
    pg_url: str,
    tmp_path: Path,
    cli: Any,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """SQLite → Postgres and Postgres → SQLite through files, checked with replay."""
    await fill(durable_store_url)
    target = pg_url if durable_store_url.startswith("sqlite") else sqlite_url
    dump = tmp_path / "jobs.jsonl"

    done = cli("--store", durable_store_url, "export", "--output", str(dump), "--json")
    assert done.code == 0, done.err
    summary = done.json()
    assert summary == {"instances": len(FILLED), "events": summary["events"], "output": str(dump)}
    lines = [json.loads(x) for x in dump.read_text().splitlines()]
    assert lines[0]["type"] == "header"
    assert lines[-1] == {"type": "footer", "instances": len(FILLED), "events": summary["events"]}

    done = cli("import", str(dump), "--store", target, "--json")
    assert done.code == 0, done.err
    assert done.json() == {
        "instances": len(FILLED),
        "events": summary["events"],
        "skipped_instances": 0,
        "skipped_events": 0,
        "verified": True,
        "store": target,
    }
    with dj.open_store(durable_store_url) as source, dj.open_store(target) as copy:
        for row in source.iter_instances():
            assert copy.history(row.instance_uuid) == source.history(row.instance_uuid)
            assert copy.index_row(row.instance_uuid) == row

    done = cli("--store", target, "replay", "--all")
    assert done.code == 0, done.err
    assert f"{len(FILLED)} instance(s) checked, 0 with problems." in done.out
    for kind, job, instance_id in FILLED:
        assert f"{kind} {job} {instance_id}" in done.out

    # Exporting the copy to stdout gives the same events (the header names the store).
    again = cli("--store", target, "export")
    assert again.code == 0
    assert again.out.splitlines()[1:] == dump.read_text().splitlines()[1:]
    assert f"Exported {len(FILLED)} instance(s)" in again.err


async def test_import_human_output_and_refusals(
    sqlite_url: str, tmp_path: Path, cli: Any, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    dump = tmp_path / "jobs.jsonl"
    done = cli("--store", sqlite_url, "export", "-o", str(dump))
    assert done.code == 0 and done.out.startswith(f"Exported {len(FILLED)} instance(s)")

    target = f"sqlite:///{tmp_path / 'new.db'}"
    done = cli("--store", target, "import", str(dump))
    assert done.code == 0, done.err
    assert done.out.startswith(f"Imported {len(FILLED)} instance(s)")
    assert "verified" in done.out
    before = counts(target)

    # Again: every instance exists already; nothing is written.
    done = cli("--store", target, "import", str(dump))
    assert done.code == 1
    assert done.err.startswith("error: The store") and "already has" in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert counts(target) == before

    # A malformed line: its number, and nothing written.
    lines = dump.read_text().splitlines()
    lines[4] = lines[4].replace('"version":4', '"version":7')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = cli("--store", fresh, "import", str(bad))
    assert done.code == 1
    assert f"{bad}, line 5:" in done.err and "nothing was written" in done.err
    assert counts(fresh) == (0, [])


def test_import_from_stdin(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = {"type": "header", "format": "durable-jobs-export", "version": 1}
    footer = {"type": "footer", "instances": 0, "events": 0}
    text = f"{json.dumps(header)}\n{json.dumps(footer)}\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    target = f"sqlite:///{tmp_path / 'empty.db'}"
    done = cli("--store", target, "import", "-", "--json")
    assert done.code == 0, done.err
    assert done.json()["instances"] == 0


async def test_replay_reports_a_corrupt_row_and_carries_on(
    sqlite_url: str, cli: Any, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    done = cli("--store", sqlite_url, "replay", "task", "order", "o1")
    assert done.code == 0 and "1 instance(s) checked, 0 with problems." in done.out
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    with db:
        db.execute(
            "UPDATE stored_events SET state = ? "
            "WHERE originator_id = ? AND originator_version = 2",
            (b"garbage", uuid_of("continuous", "sync", "b").hex),
        )
        db.execute("UPDATE dj_instances SET status = 'active' WHERE instance_id = 'o1'")
    db.close()

    done = cli("--store", sqlite_url, "replay", "--all")
    assert done.code == 1
    assert f"{len(FILLED)} instance(s) checked, 2 with problems." in done.out
    assert "continuous job 'sync' instance 'b':" in done.out
    assert 'index status: full replay says "idle", index says "active"' in done.out
    assert "error: Cannot read continuous job 'sync' instance 'b': stored event version 2" in (
        done.out
    )

    done = cli("--store", sqlite_url, "replay", "--all", "--json")
    assert done.code == 1
    report = done.json()
    assert (report["ok"], report["checked"], report["problems"]) == (False, len(FILLED), 2)
    by_id = {r["instance_id"]: r for r in report["instances"]}
    assert set(by_id) == {i for _, _, i in FILLED}
    assert by_id["b"]["ok"] is False and "not JSON" in by_id["b"]["error"]
    assert by_id["o1"]["divergences"] == [
        {"source": "index", "field": "status", "expected": "idle", "found": "active"}
    ]
    assert all(r["ok"] for i, r in by_id.items() if i not in ("b", "o1"))
    assert set(by_id["a"]) == {
        "kind",
        "job",
        "instance_id",
        "instance_uuid",
        "ok",
        "version",
        "events",
        "status",
        "snapshot_version",
        "divergences",
        "error",
    }

    # Exporting a corrupt store stops with a clear error (and writes no file).
    out = Path(sqlite_url.removeprefix("sqlite:///")).with_suffix(".jsonl")
    done = cli("--store", sqlite_url, "export", "-o", str(out))
    assert done.code == 1 and "stored event version 2 is corrupt" in done.err
    assert not out.exists()
    assert list(out.parent.glob("*.part")) == []


def test_replay_usage_errors(sqlite_url: str, cli: Any) -> None:
    dj.open_store(sqlite_url).close()
    done = cli("--store", sqlite_url, "replay")
    assert done.code == 2 and "KIND JOB ID" in done.err
    done = cli("--store", sqlite_url, "replay", "task", "order", "o1", "--all")
    assert done.code == 2
    done = cli("--store", sqlite_url, "replay", "task", "order", "nobody")
    assert done.code == 1 and done.err.startswith("error: No task job 'order' instance 'nobody'")


def test_read_only_commands_need_an_existing_store(tmp_path: Path, cli: Any) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    for args in (["replay", "--all"], ["export"], ["tail", "--for", "0"]):
        done = cli("--store", missing, *args)
        assert done.code == 1 and "does not exist" in done.err
    assert not (tmp_path / "missing.db").exists()


# ---- purge ---------------------------------------------------------------------------


async def test_purge(
    durable_store_url: str,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    await fill(durable_store_url)
    before = counts(durable_store_url)

    done = cli("--store", durable_store_url, "purge", "continuous", "flaky", "f1", "--yes")
    assert done.code == 1
    assert done.err.strip() == (
        "error: Refusing to purge continuous job 'flaky' instance 'f1': it is live "
        "(status 'failed'). Terminate it first, then purge; nothing was deleted."
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    done = cli("--store", durable_store_url, "purge", "continuous", "sync", "gone")
    assert done.code == 1 and "Aborted" in done.err and "cannot be undone" in done.err
    assert counts(durable_store_url) == before

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    done = cli("--store", durable_store_url, "purge", "continuous", "sync", "gone")
    assert done.code == 0, done.err
    assert done.out.startswith("Purged continuous job 'sync' instance 'gone': 16 event(s)")
    _, rows = counts(durable_store_url)
    assert [r.instance_id for r in rows] == [i for _, _, i in FILLED if i != "gone"]

    done = cli("--store", durable_store_url, "purge", "continuous", "sync", "gone", "--json")
    assert done.code == 0
    assert done.json() == {
        "purged": False,
        "kind": "continuous",
        "job": "sync",
        "instance_id": "gone",
        "instance_uuid": str(uuid_of("continuous", "sync", "gone")),
        "events": 0,
        "snapshots": 0,
    }
    done = cli("--store", durable_store_url, "purge", "continuous", "sync", "gone")
    assert done.code == 0 and done.out.startswith("Nothing to purge")


async def test_purge_json(
    sqlite_url: str, cli: Any, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    done = cli("purge", "continuous", "sync", "gone", "-y", "--json", "--store", sqlite_url)
    assert done.code == 0, done.err
    result = done.json()
    assert result["purged"] is True and result["events"] == 16 and result["snapshots"] == 1


# ---- tail ----------------------------------------------------------------------------


async def test_tail_prints_what_a_runtime_commits(
    durable_store_url: str, cli: Any, autojump_clock: trio.testing.MockClock
) -> None:
    """The CLI, in a thread, follows the commits a runtime makes meanwhile."""
    await fill(durable_store_url)
    with dj.open_store(durable_store_url) as store:
        start = store.last_position()
    results: list[Result] = []

    def follow() -> None:
        results.append(
            cli(
                "--store",
                durable_store_url,
                "tail",
                "--after",
                str(start),
                "--count",
                "2",
                "--for",
                "60s",
                "--poll",
                "20ms",
                "--json",
            )
        )

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        async with running(registry(), durable_store_url) as jobs:
            # One commit of two events (started, alarm_set)... and then its runs.
            await jobs.task("order").send("o2", "new")
    finally:
        thread.join(timeout=60)
    assert not thread.is_alive()
    (done,) = results
    assert done.code == 0, done.err
    lines = done.lines()
    assert [(x["instance_id"], x["version"], x["name"]) for x in lines] == [
        ("o2", 1, "started"),
        ("o2", 2, "event_added"),
    ]
    assert [x["position"] for x in lines] == [start + 1, start + 2]
    assert set(lines[0]) == {
        "type",
        "position",
        "instance_uuid",
        "kind",
        "job",
        "instance_id",
        "version",
        "timestamp",
        "topic",
        "name",
        "state",
        "error",
    }


async def test_tail_human_output_and_bounds(
    sqlite_url: str, cli: Any, autojump_clock: trio.testing.MockClock
) -> None:
    await fill(sqlite_url)
    done = cli("--store", sqlite_url, "tail", "--after", "0", "--for", "0s")
    assert done.code == 0, done.err
    out = done.out.splitlines()
    with dj.open_store(sqlite_url) as store:
        assert len(out) == store.last_position()
    assert "continuous sync a v1 started" in out[0]
    failed = [x for x in out if "run_failed" in x]
    assert len(failed) == 3
    assert "RuntimeError: boom 1; retry at" in failed[0]
    assert "RuntimeError: boom 3; no retry" in failed[2]
    assert any("retry_exhausted" in x and "pause" in x for x in out)
    assert any("flushed" in x for x in out)
    # From now: nothing new within the duration.
    done = cli("--store", sqlite_url, "tail", "--for", "10ms", "--json")
    assert done.code == 0 and done.out == ""
    done = cli("--store", sqlite_url, "tail", "--for", "soon")
    assert done.code == 2 and "not a duration" in done.err


def test_tail_ends_cleanly_on_ctrl_c(
    sqlite_url: str, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dj.open_store(sqlite_url).close()
    event = TailEvent(
        position=1,
        instance_uuid=uuid_of("task", "order", "x"),
        kind="task",
        job="order",
        instance_id="x",
        version=1,
        timestamp="2026-01-01T00:00:00Z",
        topic="durable_jobs:TaskInstance.Started",
        name="started",
        state={"state": None},
    )

    def interrupted(*_: Any, **__: Any) -> Iterator[TailEvent]:
        yield event
        raise KeyboardInterrupt

    monkeypatch.setattr("durable_jobs.cli._maintain.tail_events", interrupted)
    done = cli("--store", sqlite_url, "tail", "--json")
    assert done.code == 0
    assert done.lines() == [event.as_json()]


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--all"],
        ["export"],
        ["import", "-"],
        ["tail", "--for", "0"],
        ["purge", "task", "order", "o1", "--yes"],
    ],
)
def test_errors_never_show_the_password(args: list[str], cli: Any) -> None:
    url = "postgresql://me:s3cret-pw@127.0.0.1:1/jobs?connect_timeout=2"
    done = cli("--store", url, *args)
    assert done.code == 1
    assert done.err.startswith("error: ") and len(done.err.strip().splitlines()) == 1
    assert "s3cret" not in done.err + done.out


# ---- help ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["replay", "export", "import", "tail", "purge"])
def test_help_has_examples(command: str, cli: Any) -> None:
    done = cli(command, "--help")
    assert done.code == 0
    assert "Examples:" in done.out and "durable-jobs --store sqlite:///jobs.db" in done.out
    assert "--json" in done.out and "--store" in done.out
