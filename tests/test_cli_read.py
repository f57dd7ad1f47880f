"""The read-only ``durable-jobs`` commands: list, status, history, state, diff, alarms, stats.

Stores are filled by the runtime in virtual time (``_cli_fixtures.fill``) on real
SQLite and Postgres; every command is checked in human and ``--json`` form.
Relative times are computed against ``$DURABLE_JOBS_NOW`` (``_cli_fixtures.NOW``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from _cli_fixtures import NOW_ISO, fill
from durable_jobs._store.registry import open_store
from durable_jobs._store.urls import StoreURL
from durable_jobs.cli import _app as cli_app
from durable_jobs.cli import run

COMMANDS = ["list", "status", "history", "state", "diff", "alarms", "stats"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)
    monkeypatch.setenv("DURABLE_JOBS_NOW", NOW_ISO)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> Result:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def one_error_line(result: Result) -> str:
    assert result.code == 1
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    return lines[0]


# ---- each command, human and JSON --------------------------------------------------------


async def test_list(durable_store_url: str, autojump_clock: MockClock, cli: Any) -> None:
    await fill(durable_store_url)
    human = cli("--store", durable_store_url, "list")
    assert human.code == 0, human.err
    lines = human.out.splitlines()
    assert lines[0].split() == [
        "KIND", "JOB", "ID", "STATUS", "VER", "RUNS", "EVENTS", "NEXT", "ALARM"
    ]  # fmt: skip
    assert lines[2].split() == ["continuous", "sync", "acct-bad", "failed", "9", "1", "-", "-"]
    assert "2026-01-01 01:06:00 (24m late)" in lines[4]
    assert "2026-01-01 01:35:00 (in 5m)" in lines[5]
    assert "\x1b[" not in human.out  # no colour codes when not on a terminal

    document = cli("list", "--store", durable_store_url, "--json").json()
    assert document["next_cursor"] is None
    items = document["instances"]
    assert [i["instance_id"] for i in items] == ["acct-bad", "acct-ok", "u1", "r1"]
    assert items[3] == {
        "kind": "task",
        "job": "reminder",
        "instance_id": "r1",
        "instance_uuid": items[3]["instance_uuid"],
        "status": "active",
        "version": 13,
        "generation": 2,
        "created_at": "2026-01-01T01:05:00Z",
        "updated_at": "2026-01-01T01:05:00Z",
        "due_at": "2026-01-01T01:35:00Z",
        "run_count": 0,
        "event_count": 1,
        "attempt": 0,
        "error": None,
    }

    first = cli("--store", durable_store_url, "list", "--limit", "3", "--json").json()
    assert len(first["instances"]) == 3
    rest = cli(
        "--store", durable_store_url, "list", "--json", "--cursor", first["next_cursor"]
    ).json()
    assert [i["instance_id"] for i in rest["instances"]] == ["r1"]
    paged = cli("--store", durable_store_url, "list", "--limit", "3")
    assert f"--cursor {first['next_cursor']}" in paged.out
    filtered = cli("--store", durable_store_url, "list", "--status", "failed", "--json").json()
    assert [i["instance_id"] for i in filtered["instances"]] == ["acct-bad"]
    assert cli("--store", durable_store_url, "list", "--job", "nope").out == "No instances.\n"


async def test_status(durable_store_url: str, autojump_clock: MockClock, cli: Any) -> None:
    await fill(durable_store_url)
    human = cli("--store", durable_store_url, "status", "continuous", "sync", "acct-bad")
    assert human.code == 0, human.err
    assert human.out.splitlines()[0] == "continuous job sync instance acct-bad"
    assert "failed (paused after a failure; `trigger` resumes it)" in human.out
    assert "updated     2026-01-01 00:00:20 (1h 30m ago)" in human.out
    assert "ConnectionError: bank API unreachable (try 3) (v7" in human.out

    document = cli(
        "status", "debounce", "digest", "u1", "--store", durable_store_url, "--json"
    ).json()
    assert document["instance"]["status"] == "debouncing"
    assert document["instance"]["event_count"] == 1
    assert document["last_error"] is None
    failed = cli(
        "--store", durable_store_url, "status", "continuous", "sync", "acct-bad", "--json"
    )
    last_error = failed.json()["last_error"]
    assert (last_error["version"], last_error["attempt"]) == (7, 3)
    assert last_error["data"]["error_type"] == "ConnectionError"


async def test_history(durable_store_url: str, autojump_clock: MockClock, cli: Any) -> None:
    await fill(durable_store_url)
    human = cli("--store", durable_store_url, "history", "continuous", "sync", "acct-bad")
    assert human.code == 0, human.err
    lines = human.out.splitlines()
    assert lines[0] == "continuous job sync instance acct-bad: 9 of 9 records, now failed"
    assert lines[1].split() == ["V", "TIME", "(UTC)", "AGO", "EVENT", "DETAILS"]
    rows = lines[3:]
    assert len(rows) == 9
    assert rows[4].split() == [
        "5", "2026-01-01", "00:00:10", "1h", "30m", "ago", "run_failed",
        "execute", "run", "1", "try", "2", "failed:", "ConnectionError:", "bank", "API",
        "unreachable", "(try", "2);", "retry", "at", "2026-01-01", "00:00:20", "(+10s)",
    ]  # fmt: skip
    assert "run 1: gave up after 3 tries; action pause" in rows[7]
    assert rows[8].split()[-3:] == ["alarm_cleared", "no", "alarm"]

    restarted = cli("--store", durable_store_url, "history", "task", "reminder", "r1")
    assert "generation 2 (restarted)" in restarted.out
    assert "terminated" in restarted.out

    digest = cli(
        "--store", durable_store_url, "history", "debounce", "digest", "u1", "--last", "5"
    )
    lines = digest.out.splitlines()
    assert lines[0] == "debounce job digest instance u1: 5 of 25 records, now debouncing"
    assert "batch 2 flushed: 2 events, reason flush_after" in digest.out

    states = cli(
        "--store",
        durable_store_url,
        "history",
        "debounce",
        "digest",
        "u1",
        "--to",
        "12",
        "--states",
    )
    assert 'started from ["home", "pricing", "signup"]' in states.out
    assert "batch 1: 3 events, reason max_events" in states.out

    document = cli(
        "--store", durable_store_url, "history", "continuous", "sync", "acct-bad", "--json"
    ).json()
    assert document["latest_version"] == 9
    records = document["records"]
    assert [r["version"] for r in records] == list(range(1, 10))
    assert records[2] == {
        "version": 3,
        "at": "2026-01-01T00:00:00Z",
        "name": "run_failed",
        "run_count": 1,
        "attempt": 1,
        "data": {
            "handler": "execute",
            "run_count": 1,
            "attempt": 1,
            "error_type": "ConnectionError",
            "message": "bank API unreachable (try 1)",
            "will_retry": True,
            "retry_at": "2026-01-01T00:00:10Z",
            "flush_reason": None,
        },
        "state_before": {"balance": 0, "syncs": 0, "fail": True},
    }
    assert records[1]["state_before"] is None
    part = cli(
        "--store", durable_store_url, "history", "task", "reminder", "r1",
        "--from", "9", "--to", "10", "--json",
    ).json()  # fmt: skip
    assert [r["name"] for r in part["records"]] == ["started", "event_added"]
    part_human = cli(
        "--store", durable_store_url, "history", "task", "reminder", "r1", "--from", "9"
    )
    assert "generation 2 (restarted)" in part_human.out


async def test_state_and_diff(durable_store_url: str, autojump_clock: MockClock, cli: Any) -> None:
    await fill(durable_store_url)
    store = ("--store", durable_store_url)
    by_version = cli(*store, "state", "continuous", "sync", "acct-ok", "--at", "5")
    assert by_version.code == 0, by_version.err
    assert by_version.out.splitlines()[0] == (
        "continuous job sync instance acct-ok at version 5 of 8"
    )
    assert '"balance": 10' in by_version.out
    by_time = cli(*store, "state", "continuous", "sync", "acct-ok", "--at", "2026-01-01T00:30")
    assert by_time.out == by_version.out
    document = cli(*store, "state", "continuous", "sync", "acct-ok", "--at", "5", "--json").json()
    assert document["version"] == 5
    assert document["latest_version"] == 8
    assert document["state"] == {"balance": 10, "syncs": 1, "fail": False}
    assert document["due_at"] == "2026-01-01T01:00:00Z"
    assert document["data"]["run_count"] == 1
    latest = cli(*store, "state", "task", "reminder", "r1", "--json").json()
    assert (latest["version"], latest["state"], latest["status"]) == (13, ["second"], "active")
    full = cli(*store, "state", "task", "reminder", "r1", "--at", "8", "--full")
    assert "status  terminated" in full.out
    assert '"generation": 1' in full.out

    diff = cli(*store, "diff", "continuous", "sync", "acct-ok", "1", "8")
    assert diff.code == 0, diff.err
    assert diff.out.splitlines() == [
        "continuous job sync instance acct-ok: state from v1 (2026-01-01 00:00:00, running) "
        "to v8 (2026-01-01 01:00:00, running)",
        "  ~ /balance: 0 -> 20",
        "  ~ /syncs: 0 -> 2",
    ]
    document = cli(*store, "diff", "debounce", "digest", "u1", "8", "18", "--json").json()
    assert document["scope"] == "state"
    assert document["from"] == {"version": 8, "at": "2026-01-01T00:00:00Z", "status": "debouncing"}
    assert document["changes"] == [
        {"path": "/0", "op": "changed", "old": "home", "new": "docs"},
        {"path": "/1", "op": "changed", "old": "pricing", "new": "blog"},
        {"path": "/2", "op": "removed", "old": "signup"},
    ]
    full_diff = cli(*store, "diff", "debounce", "digest", "u1", "8", "18", "--full")
    assert '  - /state/2: "signup"' in full_diff.out
    assert "  ~ /run_count: 0 -> 1" in full_diff.out
    same = cli(*store, "diff", "debounce", "digest", "u1", "3", "3")
    assert same.out.splitlines()[1] == "  no changes"


async def test_alarms_and_stats(
    durable_store_url: str, autojump_clock: MockClock, cli: Any
) -> None:
    await fill(durable_store_url)
    store = ("--store", durable_store_url)
    human = cli(*store, "alarms")
    assert human.code == 0, human.err
    lines = human.out.splitlines()
    assert lines[0] == "3 pending alarms (1 overdue) at 2026-01-01 01:30:00 UTC"
    assert lines[3].split() == [
        "2026-01-01", "01:06:00", "24m", "late", "debounce", "digest", "u1", "debouncing"
    ]  # fmt: skip
    assert lines[4].split()[2:4] == ["in", "5m"]
    overdue = cli(*store, "alarms", "--overdue", "--json").json()
    assert overdue == {
        "now": "2026-01-01T01:30:00Z",
        "overdue_only": True,
        "alarms": [
            {
                "kind": "debounce",
                "job": "digest",
                "instance_id": "u1",
                "instance_uuid": overdue["alarms"][0]["instance_uuid"],
                "status": "debouncing",
                "due_at": "2026-01-01T01:06:00Z",
                "overdue": True,
                "lateness_seconds": 1440.0,
            }
        ],
    }
    every = cli(*store, "alarms", "--json").json()
    assert [a["lateness_seconds"] for a in every["alarms"]] == [1440.0, -300.0, -1800.0]

    stats = cli(*store, "stats")
    assert stats.code == 0, stats.err
    lines = stats.out.splitlines()
    assert lines[0] == "Instances per job at 2026-01-01 01:30:00 UTC"
    assert lines[1].split() == [
        "KIND", "JOB", "TOTAL", "RUNNING", "FAILED", "DEBOUNCING", "ACTIVE", "ALARMS",
        "OVERDUE", "NEXT", "DUE",
    ]  # fmt: skip
    assert lines[3].split()[:7] == ["continuous", "sync", "2", "1", "1", "1", "0"]
    assert "(24m late)" in lines[4]
    document = cli(*store, "stats", "--json").json()
    assert document["now"] == "2026-01-01T01:30:00Z"
    assert document["jobs"][1] == {
        "kind": "debounce",
        "job": "digest",
        "total": 1,
        "by_status": {"debouncing": 1},
        "pending_alarms": 1,
        "overdue_alarms": 1,
        "next_due_at": "2026-01-01T01:06:00Z",
        "oldest_overdue_at": "2026-01-01T01:06:00Z",
    }
    only = cli(*store, "stats", "--kind", "task", "--json").json()
    assert [j["job"] for j in only["jobs"]] == ["reminder"]


# ---- errors ------------------------------------------------------------------------------


async def test_unknown_instances_and_bad_input_are_one_line_errors(
    sqlite_url: str, autojump_clock: MockClock, cli: Any
) -> None:
    await fill(sqlite_url)
    store = ("--store", sqlite_url)
    for command in (
        ("status", "task", "reminder", "nobody"),
        ("history", "task", "reminder", "nobody"),
        ("state", "task", "reminder", "nobody"),
        ("diff", "task", "reminder", "nobody", "1", "2"),
        ("status", "task", "no-such-job", "r1"),
    ):
        line = one_error_line(cli(*store, *command))
        assert "No task job" in line and "in the store" in line
    # With --json the error is one JSON object, with the same exit code.
    error = cli(*store, "status", "task", "no-such-job", "r1", "--json")
    assert (error.code, error.out) == (1, "")
    document = json.loads(error.err)
    assert document["exit_code"] == 1 and "No task job" in document["error"]

    assert "Unknown job kind 'cron'" in one_error_line(cli(*store, "status", "cron", "a", "b"))
    assert "Unknown job kind" in one_error_line(cli(*store, "list", "--kind", "cron"))
    assert "Unknown status" in one_error_line(cli(*store, "list", "--status", "x"))
    assert "Malformed cursor" in one_error_line(cli(*store, "list", "--cursor", "!"))
    assert "versions 1 to 13" in one_error_line(
        cli(*store, "state", "task", "reminder", "r1", "--at", "14")
    )
    assert "neither a version" in one_error_line(
        cli(*store, "state", "task", "reminder", "r1", "--at", "yesterday")
    )
    assert "did not exist yet at 2025-01-01T00:00:00Z" in one_error_line(
        cli(*store, "state", "task", "reminder", "r1", "--at", "2025-01-01")
    )
    assert "--last" in one_error_line(
        cli(*store, "history", "task", "reminder", "r1", "--last", "0")
    )


def test_missing_store_and_missing_file(tmp_path: Path, cli: Any) -> None:
    assert "No store given" in one_error_line(cli("list"))
    missing = tmp_path / "missing.db"
    for command in COMMANDS:
        args = {"status": ["task", "j", "i"], "history": ["task", "j", "i"]}.get(command, [])
        args = {"state": ["task", "j", "i"], "diff": ["task", "j", "i", "1", "2"]}.get(
            command, args
        )
        line = one_error_line(cli("--store", f"sqlite:///{missing}", command, *args))
        assert "does not exist" in line
    assert not missing.exists()


async def test_bad_now_setting(
    sqlite_url: str, autojump_clock: MockClock, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(sqlite_url)
    monkeypatch.setenv("DURABLE_JOBS_NOW", "soon")
    assert "DURABLE_JOBS_NOW" in one_error_line(cli("--store", sqlite_url, "alarms"))


@pytest.mark.postgres
async def test_a_postgres_password_is_never_printed(
    postgres_url: str, pg_url: str, autojump_clock: MockClock, cli: Any
) -> None:
    await fill(pg_url)
    parsed = StoreURL.parse(pg_url)
    secret = parsed.password or "Not-A-Real-Pw-7"
    if parsed.password is None:  # a server that trusts the user accepts any password
        user = parsed.username or "postgres"
        pg_url = pg_url.replace(f"//{user}@", f"//{user}:{secret}@", 1)
        assert secret in pg_url
    for command in (
        ("list",),
        ("list", "--json"),
        ("status", "task", "reminder", "nobody"),
        ("history", "task", "reminder", "nobody"),
        ("stats",),
    ):
        result = cli("--store", pg_url, *command)
        assert secret not in result.out + result.err
    assert "r1" in cli("--store", pg_url, "list").out

    unreachable = f"postgresql://someone:{secret}@127.0.0.1:1/nothing"
    line = one_error_line(cli("--store", unreachable, "list"))
    assert secret not in line
    assert "someone:***@127.0.0.1:1" in line


async def test_a_corrupt_row_fails_its_instance_only(
    sqlite_url: str, autojump_clock: MockClock, cli: Any
) -> None:
    await fill(sqlite_url)
    with open_store(sqlite_url) as opened:
        bad = next(r for r in opened.iter_instances() if r.instance_id == "acct-bad")
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "UPDATE stored_events SET state = ? "
            "WHERE originator_id = ? AND originator_version = 3",
            (b'{"timestamp": "garbage"', bad.instance_uuid.hex),
        )
    store = ("--store", sqlite_url)
    for command in ("history", "status"):
        line = one_error_line(cli(*store, command, "continuous", "sync", "acct-bad"))
        assert "continuous job 'sync' instance 'acct-bad'" in line
        assert "version 3 is corrupt" in line

    listed = cli(*store, "list")
    assert listed.code == 0, listed.err
    assert "unreadable" in listed.out
    assert "! Cannot read continuous job 'sync' instance 'acct-bad'" in listed.out
    assert "acct-ok" in listed.out and "r1" in listed.out
    document = cli(*store, "list", "--json").json()
    errors = {i["instance_id"]: i["error"] for i in document["instances"]}
    assert "version 3 is corrupt" in errors.pop("acct-bad")
    assert set(errors.values()) == {None}
    # The other instances, and the corrupt one's earlier versions, still read.
    assert cli(*store, "history", "continuous", "sync", "acct-ok").code == 0
    assert cli(*store, "state", "continuous", "sync", "acct-bad", "--at", "2").code == 0
    assert cli(*store, "alarms").code == 0
    assert cli(*store, "stats").code == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_examples(command: str, cli: Any) -> None:
    result = cli(command, "--help")
    assert result.code == 0
    assert "Examples:" in result.out
    assert f"durable-jobs {command}" in result.out
    assert "--json" in result.out
    assert "--store" in result.out


async def test_colour_on_a_terminal_only(
    sqlite_url: str, autojump_clock: MockClock, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(sqlite_url)
    plain = cli("--store", sqlite_url, "history", "continuous", "sync", "acct-bad")
    assert "\x1b[" not in plain.out
    monkeypatch.setattr(cli_app, "_console", None)
    monkeypatch.setenv("FORCE_COLOR", "1")  # what a terminal gets
    coloured = cli("--store", sqlite_url, "history", "continuous", "sync", "acct-bad")
    assert coloured.code == 0, coloured.err
    assert "\x1b[" in coloured.out
    assert "run_failed" in coloured.out
    monkeypatch.setattr(cli_app, "_console", None)
