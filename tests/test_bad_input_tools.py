"""Bad input from outside, through the tools: store URLs, the CLI, the Inspector, files.

Regression tests of bugs found by using the tools as a careless or hostile user
would: passwords printed for malformed URLs, terminal control characters in
instance ids, read-only commands that created a Postgres schema, an import that
left a new file behind, misleading SQLite messages, another application's
SQLite file switched to WAL, and files readable by everyone.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import connect_postgres
from trio.testing import MockClock

import durable_jobs as dj
from _runtime import running
from durable_jobs._domain.ids import instance_uuid
from durable_jobs._domain.values import MAX_NESTING, check_json_value
from durable_jobs.cli import run
from durable_jobs.maintenance import (
    check_export,
    export_jsonl,
    import_jsonl,
    terminate_instance,
    trigger_instance,
)
from test_bad_input import REGISTRY, export_body, nested

# ---- 2. passwords in malformed URLs ----------------------------------------------------

#: (URL, pieces of its password that must never be printed).
LEAKY_URLS = [
    ("postgresql://u:SECR/ETPW@host/db", ["SECR", "ETPW"]),
    ("postgresql://u:123/456@host/db", ["123/456", "456"]),
    ("postgresql:/u:PWSECRET@host/db", ["PWSECRET"]),
    ("postgresql:u:PWSECRET@host/db", ["PWSECRET"]),
    ("postgresql://u:ab#SECRETcd@host/db", ["ab#", "SECRET"]),
    ("postgresql://u:12#SECRET34@127.0.0.1/db", ["SECRET"]),
    ("postgresql://u:pw@SECRET@host:notaport/db", ["pw@", "SECRET"]),
    ("postgresql://u:SECRET@host/db?schema=Bad-Name", ["SECRET"]),
    ("postgresql://u:SECRET@host/db?nope=1", ["SECRET"]),
    ("postgresql://u:SE/CRET@host:99999/db", ["SE/", "CRET"]),
    ("nosuchscheme://u:SE/CRET@host/db", ["SE/", "CRET"]),
]


def assert_hidden(text: str, pieces: list[str]) -> None:
    for piece in pieces:
        assert piece not in text, text


def full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


@pytest.mark.parametrize(("url", "pieces"), LEAKY_URLS)
def test_malformed_urls_never_print_the_password(
    url: str, pieces: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    with pytest.raises(dj.ConfigurationError) as info:
        dj.open_store(url)
    assert_hidden(full_text(info.value), pieces)
    with pytest.raises(dj.ConfigurationError) as info:
        dj.Inspector(url)
    assert_hidden(full_text(info.value), pieces)

    async def open_jobs() -> None:
        async with dj.open_jobs(REGISTRY, url):
            pass  # pragma: no cover - refused

    with pytest.raises(dj.ConfigurationError) as info:
        trio.run(open_jobs)
    assert_hidden(full_text(info.value), pieces)

    assert run(["--store", url, "list"]) == 1
    monkeypatch.setenv("DURABLE_JOBS_STORE", url)
    assert run(["alarms"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("error: ") == 2
    assert_hidden(captured.out + captured.err, pieces)


def test_redaction_keeps_what_is_safe() -> None:
    from durable_jobs._store.urls import redact

    assert redact("postgresql://app:pw@db/jobs") == "postgresql://app:***@db/jobs"
    assert redact("postgresql://app@db/jobs") == "postgresql://app@db/jobs"
    assert redact("postgresql://u:a/b@c@h/db") == "postgresql://u:***@h/db"
    assert redact("postgresql://u/SECRET@h/db") == "postgresql://***@h/db"
    assert redact("sqlite:///data/jobs@2.db") == "sqlite:///***@2.db"  # safe over pretty
    assert redact("postgresql:u:/SECRET@h/db") == "postgresql:***@h/db"
    assert redact("postgresql:/u:SECRET@h/db") == "postgresql:/***@h/db"
    assert redact("user:pw@host") == "user:***@host"
    assert redact("pg//u:/SECRET:X@h") == "***@h"


# ---- 4. terminal control characters in instance ids ------------------------------------

HOSTILE_IDS = ["a\x1b[31mRED", "line1\nline2", "rtl\u202eevil", "bell\x07\x9b", "[bold]m[/]"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


async def fill_hostile(url: str) -> None:
    async with running(REGISTRY, url) as jobs:
        for instance_id in HOSTILE_IDS:
            await jobs.task("setter").send(instance_id, {"set": instance_id})
            await jobs.task("setter").send(instance_id, {"schedule": "in-an-hour"})


def assert_no_raw_controls(text: str) -> None:
    for ch in ("\x1b", "\x07", "\x9b", "\u202e", "\r"):
        assert ch not in text, repr(text)


async def test_cli_escapes_control_characters_in_human_output(
    sqlite_url: str, autojump_clock: MockClock, cli: Any
) -> None:
    await fill_hostile(sqlite_url)
    listed = cli("--store", sqlite_url, "list")
    assert listed.code == 0, listed.err
    assert_no_raw_controls(listed.out)
    rows = listed.out.splitlines()[2:]
    assert len(rows) == len(HOSTILE_IDS)  # a newline in an id does not split its row
    for escaped in ("a\\x1b[31mRED", "line1\\nline2", "rtl\\u202eevil", "[bold]m[/]"):
        assert escaped in listed.out
    for args in (["status"], ["history"], ["state"]):
        for instance_id in HOSTILE_IDS:
            done = cli("--store", sqlite_url, *args, "task", "setter", instance_id)
            assert done.code == 0, done.err
            assert_no_raw_controls(done.out)
    alarms = cli("--store", sqlite_url, "alarms")
    assert alarms.code == 0 and len(alarms.out.splitlines()) == 3 + len(HOSTILE_IDS)
    assert_no_raw_controls(alarms.out)
    missing = cli("--store", sqlite_url, "status", "task", "setter", "x\x1b[2J\nforged")
    assert missing.code == 1 and len(missing.err.splitlines()) == 1
    assert_no_raw_controls(missing.err)
    # --json keeps the ids exactly (JSON escapes them itself).
    as_json = cli("--store", sqlite_url, "list", "--json")
    ids = [i["instance_id"] for i in json.loads(as_json.out)["instances"]]
    assert sorted(ids) == sorted(HOSTILE_IDS)
    assert "\x1b" not in as_json.out and "\n" not in as_json.out.rstrip("\n")


#: The last spells out an escape (backslash, "u200b"): it must not show like the second.
INVISIBLE_IDS = [
    "acme",
    "acme\u200b",
    "\ufeffacme",
    "ac\u00adme",
    "acme\U000e0041",
    "acme\\u200b",
]


async def test_cli_escapes_invisible_format_characters(
    sqlite_url: str, autojump_clock: MockClock, cli: Any
) -> None:
    """Ids differing by a zero-width or other format character do not print alike, and
    an id spelling out an escape does not print like the id with that character: a
    backslash is shown doubled."""
    async with running(REGISTRY, sqlite_url) as jobs:
        for instance_id in INVISIBLE_IDS:
            await jobs.task("setter").send(instance_id, {"set": instance_id})
    listed = cli("--store", sqlite_url, "list")
    assert listed.code == 0, listed.err
    shown = [row.split()[2] for row in listed.out.splitlines()[2:]]
    assert sorted(shown) == sorted(
        ["acme", "acme\\u200b", "\\ufeffacme", "ac\\xadme", "acme\\U000e0041", "acme\\\\u200b"]
    )
    done = cli("--store", sqlite_url, "status", "task", "setter", "acme\u200b")
    assert done.code == 0, done.err
    assert "acme\\u200b" in done.out and "\u200b" not in done.out
    assert "acme\\\\u200b" not in done.out
    spelt = cli("--store", sqlite_url, "status", "task", "setter", "acme\\u200b")
    assert spelt.code == 0, spelt.err
    assert "acme\\\\u200b" in spelt.out
    # JSON shown in human output escapes its backslashes itself: not doubled again.
    state = cli("--store", sqlite_url, "state", "task", "setter", "acme\\u200b")
    assert '"acme\\\\u200b"' in state.out and "\\\\\\" not in state.out, state.out
    state = cli("--store", sqlite_url, "state", "task", "setter", "acme\u200b")
    assert '"acme\\u200b"' in state.out, state.out
    # --json keeps ids exactly as stored.
    as_json = cli("--store", sqlite_url, "list", "--json")
    ids = [i["instance_id"] for i in json.loads(as_json.out)["instances"]]
    assert sorted(ids) == sorted(INVISIBLE_IDS)


# ---- 5. read-only commands create nothing ----------------------------------------------


def _schema_exists(postgres_url: str, schema: str) -> bool:
    with connect_postgres(postgres_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        return row.fetchone() is not None


def _tables(postgres_url: str, schema: str) -> list[str]:
    with connect_postgres(postgres_url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
        )
        return [str(r[0]) for r in rows.fetchall()]


@pytest.mark.postgres
def test_read_only_tools_never_create_a_postgres_schema(
    postgres_url: str, pg_schema: str, cli: Any
) -> None:
    url = f"{postgres_url}?schema={pg_schema}"
    for command in (["list"], ["alarms"], ["stats"], ["status", "task", "t", "x"], ["export"]):
        done = cli("--store", url, *command)
        assert done.code == 1, (command, done.out)
        assert "nothing was created" in done.err
    with pytest.raises(dj.ConfigurationError, match="nothing was created"):
        dj.Inspector(url)
    with pytest.raises(dj.ConfigurationError):
        dj.open_store(url, create=False)
    assert not _schema_exists(postgres_url, pg_schema)
    # An existing but empty schema (say, made by a DBA) gets no tables either.
    with connect_postgres(postgres_url) as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    assert cli("--store", url, "list").code == 1
    assert _tables(postgres_url, pg_schema) == []
    # A real store opens read-only.
    dj.open_store(url).close()
    assert cli("--store", url, "list").code == 0


def test_read_only_tools_never_create_an_sqlite_file(tmp_path: Path, cli: Any) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    assert cli("--store", url, "list").code == 1
    with pytest.raises(dj.ConfigurationError, match="does not exist"):
        dj.Inspector(url)
    empty = tmp_path / "empty.db"
    empty.touch()
    assert cli("--store", f"sqlite:///{empty}", "list").code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert empty.read_bytes() == b""


# ---- 7. a malformed import into a new SQLite path leaves nothing -----------------------


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_malformed_import_into_a_new_sqlite_path_leaves_no_file(
    via: str, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "header", "format": "durable-jobs-export", "version": 1}\nnot json\n')
    target = tmp_path / "new.db"
    if via == "stdin":
        monkeypatch.setattr("sys.stdin", io.StringIO(bad.read_text()))
    done = cli("--store", f"sqlite:///{target}", "import", "-" if via == "stdin" else str(bad))
    assert done.code == 1 and "line 2" in done.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_an_import_nested_too_deep_says_the_limit_users_know_once(
    tmp_path: Path, cli: Any
) -> None:
    """It said "more than 108 levels" (the event's own envelope counted; the limit of
    stored values is 100), named a path hundreds of characters long, and ended with
    "Nothing was written.; nothing was written."."""
    value: Any = 1
    for _ in range(150):
        value = [value]
    uuid = instance_uuid("task", "t", "i")
    event = {
        "type": "event", "kind": "task", "job": "t", "instance_id": "i",
        "instance_uuid": str(uuid), "version": 1, "topic": "x", "state": {"state": value},
    }  # fmt: skip
    bad = tmp_path / "deep.jsonl"
    bad.write_text(
        '{"type": "header", "format": "durable-jobs-export", "version": 1}\n'
        + json.dumps(event)
        + "\n"
    )
    done = cli("--store", f"sqlite:///{tmp_path / 'new.db'}", "import", str(bad))
    assert done.code == 1
    assert "line 2" in done.err
    assert "100 levels" in done.err
    # (Not in the file's path either: pytest's temporary folders are numbered, pytest-108.)
    assert "108" not in done.err.replace(str(bad), "FILE")
    assert done.err.lower().count("nothing was written") == 1
    assert len(done.err) < 400


# ---- 7b. an import holds values to the runtime's size and nesting limits ---------------

MIB = 1024 * 1024


async def sized_export(tmp_path: Path, *, state: Any = None, event: Any = None) -> Path:
    """An export of a task instance whose recorded state (state_changed) and input event
    (event_added) are replaced by ``state`` and ``event`` (when given)."""
    async with running(REGISTRY, "memory://") as jobs:
        await jobs.task("setter").send("t1", {"set": "small"})
        out = io.StringIO()
        export_jsonl(jobs.store, out)
    lines = []
    for text in out.getvalue().splitlines():
        doc = json.loads(text)
        if doc["type"] == "event" and doc["name"] == "state_changed" and state is not None:
            doc["state"]["state"] = state
        if doc["type"] == "event" and doc["name"] == "event_added" and event is not None:
            doc["state"]["event"] = event
        lines.append(json.dumps(doc))
    path = tmp_path / "sized.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def json_of_size(size: int) -> str:
    """A string that is ``size`` bytes as JSON (its quotes included)."""
    return "x" * (size - 2)


@pytest.mark.parametrize("what", ["state", "event"])
async def test_an_import_refuses_a_value_over_the_size_limit(
    what: str, tmp_path: Path, autojump_clock: MockClock, cli: Any
) -> None:
    """rv4-05: import wrote a 5 MB (even a 100 MB) state or event that every other path
    refuses, and the instance's next run could not write it back."""
    flag = f"--max-{what}-bytes"
    over = await sized_export(tmp_path, **{what: json_of_size(MIB + 1)})
    target = tmp_path / "over.db"
    done = cli("--store", f"sqlite:///{target}", "import", str(over))
    assert done.code == 1
    assert "1,048,577 bytes as JSON, over the limit of 1,048,576 bytes" in done.err
    assert f"max_{what}_bytes" in done.err
    assert flag in done.err
    assert "line " in done.err
    assert not target.exists()  # nothing written, not even the file
    store = dj.open_store("memory://")
    with pytest.raises(dj.ExportFileError, match=f"its {what} is 1,048,577 bytes") as info:
        import_jsonl(store, over)
    assert info.value.line is not None
    assert export_jsonl(store, io.StringIO()).instances == 0
    # The app's own larger limit, given to the import, lets it in.
    done = cli("--store", f"sqlite:///{target}", "import", flag, str(MIB + 1), str(over))
    assert done.code == 0, done.err
    limit: dict[str, Any] = {f"max_{what}_bytes": MIB + 1}
    summary = import_jsonl(store, over, **limit)
    assert summary.instances == 1


@pytest.mark.parametrize("what", ["state", "event"])
async def test_an_import_accepts_a_value_exactly_at_the_size_limit(
    what: str, tmp_path: Path, autojump_clock: MockClock, cli: Any
) -> None:
    at = await sized_export(tmp_path, **{what: json_of_size(MIB)})
    done = cli("--store", f"sqlite:///{tmp_path / 'at.db'}", "import", str(at))
    assert done.code == 0, done.err
    # A lower limit given to the import applies as well.
    store = dj.open_store("memory://")
    lower: dict[str, Any] = {f"max_{what}_bytes": MIB - 1}
    with pytest.raises(dj.ExportFileError, match=f"--max-{what}-bytes"):
        import_jsonl(store, at, **lower)


@pytest.mark.parametrize("what", ["state", "event"])
async def test_an_import_refuses_a_value_nested_deeper_than_the_limit(
    what: str, tmp_path: Path, autojump_clock: MockClock, cli: Any
) -> None:
    """The file's own check allowed the event's envelope (8 levels) on top of 100, so a
    state or event nested 101 to 108 deep was imported."""
    check_json_value(nested(MAX_NESTING - 1), "state")  # what the runtime takes
    with pytest.raises(dj.ValidationError, match="levels deep"):
        check_json_value(nested(MAX_NESTING), "state")  # and refuses
    deep = await sized_export(tmp_path, **{what: nested(MAX_NESTING)})  # 101 lists
    done = cli("--store", f"sqlite:///{tmp_path / 'deep.db'}", "import", str(deep))
    assert done.code == 1
    assert f"its {what} is nested deeper than stored values may be (100 levels)" in done.err
    assert done.err.lower().count("nothing was written") == 1
    ok = await sized_export(tmp_path, **{what: nested(MAX_NESTING - 1)})  # 100 lists
    done = cli("--store", f"sqlite:///{tmp_path / 'ok.db'}", "import", str(ok))
    assert done.code == 0, done.err


@pytest.mark.parametrize("what", ["state", "event"])
async def test_an_import_refuses_an_int_too_long_as_the_runtime_does(
    what: str, tmp_path: Path, autojump_clock: MockClock, cli: Any
) -> None:
    """It said "Exceeds the limit (4300 digits) for integer string conversion; use
    sys.set_int_max_str_digits() to increase the limit" (Python's json.loads), where a
    start says where the int is and why it is refused."""
    path = await sized_export(tmp_path, **{what: {"a": ["HUGE"]}})
    path.write_text(path.read_text().replace('"HUGE"', "-1" + "0" * 5000))
    with pytest.raises(dj.ExportFileError) as info:
        import_jsonl(dj.open_store("memory://"), path)
    text = str(info.value)
    assert f"['{what}']['a'][0] is an int of more than 4,300 digits, too large" in text
    assert "set_int_max_str_digits" not in text
    assert text.lower().count("nothing was written") == 1
    assert len(text) < 400
    done = cli("--store", f"sqlite:///{tmp_path / 'long.db'}", "import", str(path))
    assert done.code == 1
    assert "is an int of more than 4,300 digits" in done.err
    # 4,300 digits (the sign not counted) are read, and stored.
    path.write_text(path.read_text().replace("-1" + "0" * 5000, "-" + "9" * 4300))
    assert import_jsonl(dj.open_store("memory://"), path).instances == 1


async def test_an_import_of_a_lone_surrogate_says_nothing_was_written_once(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """It ended "...cannot be stored; nothing was written.; nothing was written."."""
    path = await sized_export(tmp_path, state={"a": "x\udfff"})
    with pytest.raises(dj.ExportFileError) as info:
        import_jsonl(dj.open_store("memory://"), path)
    text = str(info.value)
    assert "contains a lone surrogate (U+DFFF at position 1), which is not valid" in text
    assert text.lower().count("nothing was written") == 1, text
    assert text.endswith("valid Unicode and cannot be stored; nothing was written."), text


def collecting_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.debounce("collect", event=str, state=list[str], flush_after=timedelta(seconds=5))
    async def collect(ctx: dj.DebounceContext[list[str]]) -> None:
        pass  # pragma: no cover - never flushed

    @collect.on_event
    def fold(ctx: dj.DebounceEventContext[str, list[str]]) -> list[str]:
        return [*(ctx.state or []), ctx.event]

    return registry


async def test_an_import_refuses_a_state_patched_over_the_size_limit(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """A debounce batch's state grows by patches (each event within its limit); the state
    the instance rebuilds to is held to max_state_bytes too."""
    async with running(collecting_registry(), "memory://") as jobs:
        # The first event large enough that the second is recorded as a patch.
        await jobs.debounce("collect").add("b1", "e1" * 50)
        await jobs.debounce("collect").add("b1", "e2")
        out = io.StringIO()
        export_jsonl(jobs.store, out)
    text = out.getvalue().replace("e1" * 50, "x" * (MIB * 6 // 10))
    path = tmp_path / "patched.jsonl"
    path.write_text(text.replace('"e2"', json.dumps("y" * (MIB * 6 // 10))))
    assert '"op":"add"' in path.read_text()  # the second event is a patch
    store = dj.open_store("memory://")
    refused = "the open batch they rebuild is 1,258,297 bytes"
    with pytest.raises(dj.ExportFileError, match=refused) as info:
        import_jsonl(store, path)
    assert info.value.line == 2  # where the instance begins
    assert "--max-state-bytes" in str(info.value)
    assert export_jsonl(store, io.StringIO()).instances == 0
    assert import_jsonl(store, path, max_state_bytes=2 * MIB).instances == 1


@pytest.mark.parametrize("kwargs", [{"max_event_bytes": 0}, {"max_state_bytes": "1"}])
def test_import_size_limits_must_be_sizes(kwargs: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(dj.ConfigurationError, match="must be an int from 1 to"):
        import_jsonl(dj.open_store("memory://"), tmp_path / "x.jsonl", **kwargs)


@pytest.mark.parametrize("name", ["max_event_bytes", "max_state_bytes"])
@pytest.mark.parametrize("value", [2**40 + 1, 2**63 - 1, 10**23])
def test_import_size_limits_have_a_ceiling(name: str, value: int, tmp_path: Path) -> None:
    """A limit so large that the longest line an import reads overflowed a C size was an
    OverflowError traceback (an outside review): a ConfigurationError naming the ceiling."""
    path = tmp_path / "x.jsonl"
    path.write_text("")
    limits: dict[str, Any] = {name: value}
    store = dj.open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        ceiling = f"{name} must be an int from 1 to 1099511627776"
        with pytest.raises(dj.ConfigurationError, match=ceiling):
            import_jsonl(store, path, **limits)
        with pytest.raises(dj.ConfigurationError, match=ceiling):
            check_export(path, **limits)
        with pytest.raises(dj.ExportFileError):  # the ceiling itself is a limit an import takes
            check_export(path, **{name: 2**40})
    finally:
        store.close()


# ---- 8. honest SQLite messages; another application's file is left alone -----------------


async def test_locked_and_full_sqlite_say_nothing_was_written(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    path = tmp_path / "jobs.db"
    async with running(REGISTRY, f"sqlite:///{path}?lock_timeout=0", run_alarms=True) as jobs:
        client = jobs.continuous("anything")
        await client.start("a0", 1)
        before = export_body(jobs.store)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(dj.StoreError, match="database is locked") as info:
                await client.start("a1", 1)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert "may or may not" not in str(info.value)
        assert "nothing was written" in str(info.value)
        store = jobs.store
        with store._app.factory.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute("PRAGMA page_count")
            c.execute(f"PRAGMA max_page_count = {int(c.fetchone()[0])}")
        with pytest.raises(dj.StoreError, match="full") as info:
            await client.start("a2", {"x": "y" * 50_000})
        assert "may or may not" not in str(info.value)
        assert "nothing was written" in str(info.value)
        assert export_body(jobs.store) == before


def _foreign_files(tmp_path: Path) -> list[Path]:
    users = tmp_path / "app.db"
    with sqlite3.connect(users) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ann')")
    events = tmp_path / "other-eventsourcing-app.db"
    with sqlite3.connect(events) as conn:
        conn.execute("CREATE TABLE stored_events (originator_id TEXT, state BLOB)")
        conn.execute("INSERT INTO stored_events VALUES ('x', x'00')")
    return [users, events]


def test_another_apps_sqlite_file_is_refused_before_any_change(tmp_path: Path) -> None:
    for path in _foreign_files(tmp_path):
        content = path.read_bytes()
        with pytest.raises(dj.ConfigurationError, match="not a durable-jobs store"):
            dj.open_store(f"sqlite:///{path}")
        assert path.read_bytes() == content  # still in rollback-journal mode, no new tables
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert not Path(f"{path}-wal").exists()


# ---- files created 0600 ----------------------------------------------------------------


async def test_files_are_created_readable_by_the_owner_only(
    tmp_path: Path, autojump_clock: MockClock, cli: Any
) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "jobs.db"
        async with running(REGISTRY, f"sqlite:///{path}") as jobs:
            await jobs.continuous("anything").start("a1", {"x": 1})
            created = [
                path,
                Path(f"{path}-wal"),
                Path(f"{path}-shm"),
                Path(f"{path}.runtime-lock"),
            ]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in created}
        assert modes == dict.fromkeys(modes, 0o600)
        out = tmp_path / "export.jsonl"
        assert cli("--store", f"sqlite:///{path}", "export", "--output", str(out)).code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    finally:
        os.umask(old)


# ---- found by the campaign ---------------------------------------------------------------


def test_inspector_filters_of_the_wrong_type_are_validation_errors(sqlite_url: str) -> None:
    with dj.open_store(sqlite_url) as store:
        inspector = dj.Inspector(store)
        for call in (
            lambda: inspector.instances(job=42),  # type: ignore[arg-type]
            lambda: inspector.instances(cursor=b"x"),  # type: ignore[arg-type]
            lambda: inspector.stats(job=["a"]),  # type: ignore[arg-type]
        ):
            with pytest.raises(dj.ValidationError, match="must be a str or None"):
                call()
    with pytest.raises(dj.ConfigurationError, match="not int"):
        dj.Inspector(42)  # type: ignore[arg-type]


async def test_a_job_of_the_wrong_type_is_a_configuration_error(autojump_clock: MockClock) -> None:
    async with running(REGISTRY, "memory://") as jobs:
        with pytest.raises(dj.ConfigurationError, match="takes a job name or definition"):
            jobs.task({"not": "a name"})  # type: ignore[call-overload]


def test_export_filters_are_checked_and_odd_file_names_are_export_file_errors(
    sqlite_url: str, tmp_path: Path, cli: Any
) -> None:
    """A typo in ``export --status`` made an empty export that exited 0 (a silently
    empty backup); a file name with a NUL byte or a lone surrogate gave a bare
    ValueError from check_export and import_jsonl."""
    from durable_jobs.maintenance import ExportFileError, check_export, export_jsonl, import_jsonl

    dj.open_store(sqlite_url).close()
    out = tmp_path / "backup.jsonl"
    result = cli("--store", sqlite_url, "export", "--status", "runing", "-o", str(out))
    assert result.code == 1
    assert "Unknown status 'runing'" in result.err
    with dj.open_store(sqlite_url) as store:
        for bad, match in (
            ({"status": "runing"}, "Unknown status"),
            ({"status": 5}, "Unknown status"),
            ({"job": 5}, "job must be a str or None"),
        ):
            text = io.StringIO()
            with pytest.raises(dj.ValidationError, match=match):
                export_jsonl(store, text, **bad)
            assert text.getvalue() == ""  # refused before the header
        for name in ("a\x00.jsonl", "\ud800.jsonl"):
            with pytest.raises(ExportFileError, match="cannot open a file of that name") as info:
                check_export(name)
            str(info.value).encode()  # printable: the name is escaped
            with pytest.raises(ExportFileError, match="cannot open a file of that name"):
                import_jsonl(store, name)


# ---- the maintenance functions given the wrong kind of argument -------------------------


def test_maintenance_functions_say_which_argument_does_not_fit(tmp_path: Path) -> None:
    """A path or a binary file where a text stream goes, a URL where an open store goes,
    None for an export: a ConfigurationError saying what to pass, not an AttributeError
    or TypeError from inside the library, and nothing written."""
    from durable_jobs import maintenance as m

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    out = tmp_path / "out.jsonl"
    with dj.open_store(url) as store, open(tmp_path / "out.bin", "wb") as binary:
        calls: list[tuple[Callable[[], object], str]] = [
            (lambda: m.export_jsonl(store, str(out)), "open text stream"),  # type: ignore[arg-type]
            (lambda: m.export_jsonl(store, binary), "not 'wb'"),  # type: ignore[arg-type]
            (lambda: m.export_jsonl(url, io.StringIO()), "takes an open store"),  # type: ignore[arg-type]
            (lambda: m.replay_instance(url, "task", "t", "a"), "takes an open store"),  # type: ignore[arg-type]
            (lambda: list(m.replay_store(url)), "takes an open store"),  # type: ignore[arg-type]
            (lambda: m.import_jsonl(store, None), "path or an open text stream"),  # type: ignore[arg-type]
            (lambda: m.check_export(None), "path or an open text stream"),  # type: ignore[arg-type]
            (lambda: m.tail_position(url), "takes an open store"),  # type: ignore[arg-type]
            (lambda: list(m.tail_events(url, duration=0)), "takes an open store"),  # type: ignore[arg-type]
            (lambda: m.purge_instance(url, "task", "t", "a"), "takes an open store"),  # type: ignore[arg-type]
            (lambda: m.terminate_instance(url, "task", "t", "a"), "takes an open store"),  # type: ignore[arg-type]
            (lambda: m.trigger_instance(url, "task", "t", "a"), "takes an open store"),  # type: ignore[arg-type]
        ]
        for call, match in calls:
            with pytest.raises(dj.ConfigurationError, match=match):
                call()
        with pytest.raises(dj.ValidationError, match="batch_events"):
            m.import_jsonl(store, io.StringIO(""), batch_events=-1)
        assert store.list_instances() == []
    assert not out.exists()


# ---- an SQLite store the process cannot write beside or in ------------------------------


async def test_a_runtime_lock_file_that_cannot_be_opened_is_a_configuration_error(
    tmp_path: Path, cli: Any
) -> None:
    """The lock file beside the database cannot be made (a directory the app may not
    write in; here, something else under its name): a ConfigurationError naming it, from
    open_jobs and from the tools that write, not a bare OSError or a traceback, and not
    "a jobs runtime serves it"."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    dj.open_store(url).close()
    (tmp_path / "jobs.db.runtime-lock").mkdir()
    with pytest.raises(dj.ConfigurationError, match=r"runtime lock file .* cannot be opened"):
        async with running(REGISTRY, url):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
    result = cli("--store", url, "trigger", "task", "t", "x")
    err = result.err
    assert result.code == 1
    assert err.startswith("error: Cannot serve") and "runtime lock file" in err, err
    assert "while a jobs runtime serves" not in err and "Traceback" not in err


def test_a_database_file_the_process_may_not_write_is_refused_at_open_jobs() -> None:
    """As a user who may read but not write the file (root ignores file modes, so the
    check runs in a child as nobody): open_jobs refuses at once, saying so, instead of
    starting and failing every write as "may or may not have been committed"."""
    import shutil
    import tempfile

    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed for this test"
    # pytest's own temporary directories are the owner's only: one nobody can reach.
    shared = Path(tempfile.mkdtemp(prefix="dj-ro-"))
    shared.chmod(0o777)
    try:
        _refused_as_nobody(setpriv, shared)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _refused_as_nobody(setpriv: str, directory: Path) -> None:
    import subprocess
    import sys

    database = directory / "jobs.db"
    url = f"sqlite:///{database}"
    dj.open_store(url).close()
    database.chmod(0o444)
    child = (
        "import trio, durable_jobs as dj\n"
        "async def main():\n"
        f"    async with dj.open_jobs(dj.Registry(), {url!r}):\n"
        "        pass\n"
        "try:\n"
        "    trio.run(main)\n"
        "except dj.ConfigurationError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "refused: Cannot serve" in done.stdout and "may not write its file" in done.stdout


#: The command-line tool of the Python running the tests.
CLI = str(Path(sys.executable).with_name("durable-jobs"))


@pytest.mark.parametrize("optimize", ["", "1"])
async def test_an_import_refuses_a_second_started_record_even_under_python_o(
    optimize: str, tmp_path: Path
) -> None:
    """A forged export whose instance is 'started' again at version 2 was refused only
    by an assert in the aggregate ("does not apply ... (AssertionError: )"); under
    ``python -O`` the import wrote it, and the instance's log could not be read back
    (outside review). Now the import says what is wrong, and writes nothing, either
    way; a log that does not begin with 'started' is refused alike."""
    exported = await sized_export(tmp_path)
    lines = [json.loads(text) for text in exported.read_text().splitlines()]
    started = next(d for d in lines if d.get("name") == "started")
    forged = []
    for doc in lines:
        if doc["type"] == "event" and doc["version"] > 1:
            doc["version"] += 1
        forged.append(doc)
        if doc is started:
            forged.append({**started, "version": 2})
    forged[-1]["events"] += 1  # the footer
    again = tmp_path / "started-twice.jsonl"
    again.write_text("".join(json.dumps(d) + "\n" for d in forged))
    target = tmp_path / "forged.db"
    done = subprocess.run(
        [CLI, "--store", f"sqlite:///{target}", "import", str(again)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONOPTIMIZE": optimize},
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert "version 2 is a 'started' record" in done.stderr, done.stderr
    assert "AssertionError" not in done.stderr
    assert not target.exists()


# ---- times that no UTC datetime can hold ------------------------------------------------

#: Valid aware datetimes whose UTC time falls outside the years 1 to 9999.
EDGE_TIMES = [
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
]


@pytest.mark.parametrize("at", EDGE_TIMES, ids=["latest-14h", "earliest+14h"])
async def test_a_time_out_of_utc_range_is_refused_and_writes_nothing(
    at: datetime, sqlite_url: str, autojump_clock: MockClock, capsys: Any
) -> None:
    """`state --at 9999-12-31T23:59:59-14:00` printed an OverflowError traceback, the
    Inspector and open_harness raised a bare OverflowError, and
    `terminate_instance(now=...)` wrote a record no read could decode again (an
    outside review)."""
    async with running(REGISTRY, sqlite_url) as jobs:
        await jobs.task("setter").send("o1", 1)
    with dj.open_store(sqlite_url) as store:
        before = store.history(instance_uuid("task", "setter", "o1"))
        for admin in (terminate_instance, trigger_instance):
            with pytest.raises(dj.ValidationError, match="within the years 1 to 9999 in UTC"):
                admin(store, "task", "setter", "o1", now=at)
        assert store.history(instance_uuid("task", "setter", "o1")) == before
    inspector = dj.Inspector(sqlite_url)
    for read in (
        lambda: inspector.state_at("task", "setter", "o1", at=at),
        lambda: inspector.alarms(now=at),
        lambda: inspector.stats(now=at),
    ):
        with pytest.raises(dj.ValidationError, match="within the years 1 to 9999 in UTC"):
            read()
    with pytest.raises(dj.ConfigurationError, match="within the years 1 to 9999 in UTC"):
        dj.VirtualClock(at)
    capsys.readouterr()
    for extra in ((), ("--json",)):
        code = run(
            [
                "--store",
                sqlite_url,
                "state",
                "task",
                "setter",
                "o1",
                "--at",
                at.isoformat(),
                *extra,
            ]
        )
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err, err
        assert "is out of range: in UTC it falls outside the years 1 to 9999" in err


def test_option_values_no_one_means_are_refused_with_their_range(
    tmp_path: Path, capsys: Any
) -> None:
    """`terminate --wait nan` named an internal function (other bad waits are usage
    errors); `open_jobs(max_key_bytes=10**30)` was accepted; `lease=inf` and `lease=0`
    gave two different ranges (an outside review)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    dj.open_store(url).close()
    capsys.readouterr()
    for wait in ("nan", "-nan", "inf"):
        assert run(["--store", url, "terminate", "task", "t", "x", "--wait", wait]) == 2
        err = capsys.readouterr().err
        assert "Invalid value for '--wait'" in err and "terminate_instance()" not in err

    async def opened(**options: Any) -> None:
        async with dj.open_jobs(REGISTRY, "memory://", **options):
            pass  # pragma: no cover - refused

    for name in ("max_key_bytes", "max_event_bytes", "max_state_bytes"):
        with pytest.raises(dj.ConfigurationError, match=f"{name} must be an int from 1 to"):
            trio.run(functools.partial(opened, **{name: 10**30}))
    messages = set()
    for lease in (float("inf"), 0, 10**12, "30"):
        with pytest.raises(dj.ConfigurationError) as refused:
            trio.run(functools.partial(opened, lease=lease))
        messages.add(str(refused.value).split(", got")[0])
    assert messages == {
        "lease must be a timedelta (or seconds) of at least 1 s and at most one day"
    }
