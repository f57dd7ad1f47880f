"""Encryption at rest: AES-256-GCM of every event and snapshot, on real SQLite files and
real Postgres rows; key rotation, turning it on for an existing store, wrong and missing
keys, the command line through ``DURABLE_JOBS_ENCRYPTION_KEY`` (export and import too).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import BaseModel

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, advance, running
from durable_jobs._store.crypto import MAGIC, is_encrypted
from durable_jobs.cli import run as cli
from durable_jobs.maintenance import tail_events

KEY_A = dj.generate_key()
KEY_B = dj.generate_key()

# Strings that must never be found on disk in clear.
SECRETS = {
    "state": "SECRET-STATE-7f3a",
    "event": "SECRET-EVENT-91bc",
    "error": "SECRET-ERROR-22de",
    "key": "SECRET-IDEMPOTENCY-5e61",
    "batch": "SECRET-BATCH-0c4f",
}


class Profile(BaseModel):
    email: str
    runs: int = 0


class Note(BaseModel):
    text: str


def make_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous(
        "profile", state=Profile, schedule=dj.every(HOUR), start_immediately=False,
        retry=dj.Retry(2, delay=10 * SECOND, jitter=0, on_exhausted="pause"),
    )  # fmt: skip
    async def profile(ctx: dj.ContinuousContext[Profile]) -> None:
        if ctx.state.runs >= 2:
            raise RuntimeError(f"failed for {SECRETS['error']}")
        ctx.set_state(Profile(email=ctx.state.email, runs=ctx.state.runs + 1))

    @registry.task("notes", event=Note, state=list[str])
    async def notes(ctx: dj.TaskContext[list[str]]) -> None:
        pass

    @notes.on_event
    async def on_note(event: Note, ctx: dj.TaskContext[list[str]]) -> None:
        ctx.set_state([*(ctx.state or []), event.text])

    @registry.debounce("inbox", event=Note, state=list[str], flush_after=MINUTE)
    async def inbox(ctx: dj.DebounceContext[list[str]]) -> None:
        pass

    @inbox.on_event
    def fold(ctx: dj.DebounceEventContext[Note, list[str]]) -> list[str]:
        return [*(ctx.state or []), ctx.event.text]

    return registry


async def write_secrets(url: str | dj.Store, **options: Any) -> None:
    """Every kind of stored data, each holding a secret: states, events, an error
    message, an idempotency key, a debounce batch state; enough events for snapshots."""
    async with running(make_registry(), url, **options) as jobs:
        profile = jobs.continuous("profile")
        await profile.start("p1", Profile(email=SECRETS["state"]))
        for _ in range(3):
            with contextlib.suppress(dj.HandlerError):
                await profile.trigger("p1")
        notes = jobs.task("notes")
        await notes.send("n1", Note(text=SECRETS["event"]), idempotency_key=SECRETS["key"])
        for i in range(6):
            await notes.send("n1", Note(text=f"note {i}"))
        await jobs.debounce("inbox").add("b1", Note(text=SECRETS["batch"]))
        await advance(jobs, 30 * SECOND)


def raw_sqlite(url: str) -> bytes:
    """Every byte of the SQLite database and its WAL (the store must be closed)."""
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def raw_postgres(url: str, schema: str) -> bytes:
    """Every value of every row of every table of the store's schema, as bytes."""
    out: list[bytes] = []
    with psycopg.connect(url.split("?", maxsplit=1)[0], autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        assert len(tables) >= 3, tables
        for table in tables:
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            for row in conn.execute(query):
                for value in row:
                    out.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(out)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def raw_store(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """(store URL, a function returning every stored byte) for SQLite and Postgres."""
    if request.param == "sqlite":
        url = str(request.getfixturevalue("sqlite_url"))
        yield url, lambda: raw_sqlite(url)
    else:
        url = str(request.getfixturevalue("pg_url"))
        schema = str(request.getfixturevalue("pg_schema"))
        yield url, lambda: raw_postgres(url, schema)


async def test_no_plaintext_of_a_state_or_event_at_rest(
    raw_store: tuple[str, Any], autojump_clock: Any
) -> None:
    url, raw = raw_store
    store = dj.open_store(url, encryption_key=KEY_A, snapshot_interval=4)
    try:
        await write_secrets(store)
        rows = [
            s for row in store.list_instances() for s in store.stored_events(row.instance_uuid)
        ]
        assert len(rows) > 20
        assert all(is_encrypted(s.state) for s in rows)
        snapshots = store._app.snapshots
        assert snapshots is not None
        uuid = store.list_instances(kind="task")[0].instance_uuid
        snaps = snapshots.recorder.select_events(uuid)
        assert snaps and all(is_encrypted(s.state) for s in snaps)
        # The data reads back through the key.
        async with running(make_registry(), store) as jobs:
            assert (await jobs.continuous("profile").get_state("p1")) == Profile(
                email=SECRETS["state"], runs=2
            )
            state = await jobs.task("notes").get_state("n1")
            assert state is not None and (state.state or [""])[0] == SECRETS["event"]
            history = await jobs.continuous("profile").history("p1")
            assert any(SECRETS["error"] in str(r.data.get("message")) for r in history)
    finally:
        store.close()
    data = raw()
    for what, secret in SECRETS.items():
        assert secret.encode() not in data, f"the {what} is stored in clear"
    # What the index needs stays in clear (and the search above does read the data).
    for clear in (b"profile", b"p1", b"notes", b"n1", b"inbox", b"b1"):
        assert clear in data


async def test_without_a_key_everything_is_plain_json(
    sqlite_url: str, autojump_clock: Any
) -> None:
    """The control for the test above: without a key the secrets are on disk."""
    await write_secrets(sqlite_url)
    data = raw_sqlite(sqlite_url)
    assert SECRETS["state"].encode() in data
    assert SECRETS["event"].encode() in data


async def test_key_rotation(durable_store_url: str, autojump_clock: Any) -> None:
    """[new, old]: old rows read, new rows are written with the new key."""
    await write_secrets(durable_store_url, encryption_key=KEY_A)
    async with running(make_registry(), durable_store_url, encryption_key=[KEY_B, KEY_A]) as jobs:
        notes = jobs.task("notes")
        await notes.send("n1", Note(text="after rotation"))
        state = await notes.get_state("n1")
        assert state is not None
        assert (state.state or [""])[-1] == "after rotation"
    with dj.open_store(durable_store_url, encryption_key=[KEY_B, KEY_A]) as store:
        uuid = store.list_instances(kind="task")[0].instance_uuid
        rows = store.stored_events(uuid)
        key_ids = {bytes(r.state[len(MAGIC) : len(MAGIC) + 4]) for r in rows}
        assert len(key_ids) == 2  # written with A, then with B
        last = rows[-1]
    # Only the new key: the instance's old rows cannot be read.
    with dj.Inspector(durable_store_url, encryption_key=KEY_B) as inspector:
        with pytest.raises(dj.StoreError, match="not among the 1 encryption key") as info:
            inspector.status("task", "notes", "n1")
        _no_key_in(str(info.value))
    # Only the old key: the new row cannot be read.
    with (
        dj.open_store(durable_store_url, encryption_key=KEY_A) as store,
        pytest.raises(dj.StoreError, match="not among"),
    ):
        store.decode(last)


async def test_turning_encryption_on_for_an_existing_store(
    durable_store_url: str, autojump_clock: Any
) -> None:
    await write_secrets(durable_store_url)
    async with running(make_registry(), durable_store_url, encryption_key=KEY_A) as jobs:
        notes = jobs.task("notes")
        state = await notes.get_state("n1")
        assert state is not None
        assert (state.state or [""])[0] == SECRETS["event"]  # old rows read
        await notes.send("n1", Note(text="encrypted now"))
    with dj.open_store(durable_store_url, encryption_key=KEY_A) as store:
        uuid = store.list_instances(kind="task")[0].instance_uuid
        flags = [is_encrypted(r.state) for r in store.stored_events(uuid)]
    assert not flags[0] and flags[-1]
    assert flags == sorted(flags)  # plain rows first, then encrypted ones
    # Without the key, the new rows are a clear StoreError, never garbage: the runtime
    # refuses to start, and a read names the instance.
    with pytest.raises(dj.StoreError, match="encrypted and no encryption key was given"):
        async with running(make_registry(), durable_store_url):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
    with dj.Inspector(durable_store_url) as inspector:
        with pytest.raises(dj.StoreError, match=r"task job 'notes' instance 'n1'.*no encryption"):
            inspector.status("task", "notes", "n1")
        assert inspector.status("continuous", "profile", "p1") is not None  # plain rows


async def test_wrong_and_missing_keys(
    durable_store_url: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await write_secrets(durable_store_url, encryption_key=KEY_A)
    for key, match in ((None, "no encryption key was given"), (KEY_B, "not among")):
        # A runtime with no key or a wrong one refuses to start (it cannot read anything).
        with pytest.raises(dj.StoreError, match=match) as info:
            async with running(make_registry(), durable_store_url, encryption_key=key):
                pytest.fail("open_jobs must refuse")  # pragma: no cover
        assert "pydantic" not in str(info.value).lower()
        # No key id matches: only the key can be wrong.
        assert "Open the store with the right encryption_key" in str(info.value)
        assert "altered" not in str(info.value)
        _no_key_in(str(info.value))
        with dj.Inspector(durable_store_url, encryption_key=key) as inspector:
            with pytest.raises(dj.StoreError, match=match):
                inspector.history("continuous", "profile", "p1")
            # The index is in clear: listing works.
            assert len(inspector.instances().items) == 3
            assert KEY_A not in repr(inspector.store) and KEY_B not in repr(inspector.store)
    _no_key_in(caplog.text)


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-key",
        base64.urlsafe_b64encode(b"x" * 16).decode(),
        KEY_A[:-2] + "!!",
        KEY_A + "AAAA",
        123,
        [KEY_A, None],
    ],
)
def test_malformed_keys_are_configuration_errors(bad: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    with pytest.raises(dj.ConfigurationError, match="key") as info:
        dj.open_store(url, encryption_key=bad)
    if isinstance(bad, str):
        assert bad not in str(info.value)
    assert not (tmp_path / "new.db").exists()  # refused before anything was created


def test_generate_key() -> None:
    keys = {dj.generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(key) == 44
        assert len(base64.urlsafe_b64decode(key)) == 32


def test_missing_cryptography_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(dj.ConfigurationError, match=r"durable-jobs\[encryption\]"):
        dj.open_store("memory://", encryption_key=KEY_A)


def _events_table(conn: sqlite3.Connection) -> str:
    """The name of the events table of the SQLite store open in ``conn``."""
    names: list[str] = [
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    ]
    return next(name for name in names if "event" in name and "snapshot" not in name)


async def test_a_moved_or_tampered_row_does_not_decrypt(
    sqlite_url: str, autojump_clock: Any
) -> None:
    await write_secrets(sqlite_url, encryption_key=KEY_A)
    path = sqlite_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        table = _events_table(conn)
        # Copy version 2's ciphertext over version 3 of the same instance.
        (oid,) = conn.execute(f"SELECT originator_id FROM {table} LIMIT 1").fetchone()
        conn.execute(
            f"UPDATE {table} SET state = (SELECT state FROM {table} WHERE originator_id = ? "
            "AND originator_version = 2) WHERE originator_id = ? AND originator_version = 3",
            (oid, oid),
        )
        conn.commit()
    finally:
        conn.close()
    with dj.open_store(sqlite_url, encryption_key=KEY_A, snapshot_interval=0) as store:
        uuid = next(r.instance_uuid for r in store.list_instances() if r.instance_uuid.hex == oid)
        # The error names the row (its version), not only the instance.
        match = "stored event version 3 could not be decrypted: .*altered or moved"
        with pytest.raises(dj.StoreError, match=match):
            store.history(uuid)


async def test_one_altered_row_with_the_right_key_says_both_possibilities(
    sqlite_url: str, autojump_clock: Any
) -> None:
    """The right key, and one byte of the store's newest row flipped: open_jobs still
    refuses (docs/stores.md), but does not only blame the key: the key may be wrong, or
    that row (named by its instance and version) was altered or moved."""
    await write_secrets(sqlite_url, encryption_key=KEY_A)
    path = sqlite_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        table = _events_table(conn)
        rowid, oid, version, state = conn.execute(
            f"SELECT rowid, originator_id, originator_version, state FROM {table} "
            "ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        altered = bytearray(state)
        altered[-3] ^= 1
        conn.execute(f"UPDATE {table} SET state = ? WHERE rowid = ?", (bytes(altered), rowid))
        conn.commit()
    finally:
        conn.close()
    with dj.open_store(sqlite_url) as store:
        row = next(r for r in store.list_instances() if r.instance_uuid.hex == oid)
    with pytest.raises(dj.StoreError) as info:
        async with running(make_registry(), sqlite_url, encryption_key=KEY_A):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
    message = str(info.value)
    assert f"{row.kind} job {row.job!r} instance {row.instance_id!r}" in message
    assert f"stored event version {version} could not be decrypted" in message
    assert "Either the encryption_key" in message
    assert "is not the one that row was written with" in message
    assert "or that row was altered or moved in the database" in message
    assert "Open the store with the right" not in message
    _no_key_in(message)


def test_open_jobs_and_inspector_refuse_a_key_for_an_open_store(sqlite_url: str) -> None:
    with (
        dj.open_store(sqlite_url) as store,
        pytest.raises(dj.ConfigurationError, match="open_store"),
    ):
        dj.Inspector(store, encryption_key=KEY_A)


async def test_open_jobs_refuses_a_key_for_an_open_store(
    sqlite_url: str, autojump_clock: Any
) -> None:
    with (
        dj.open_store(sqlite_url) as store,
        pytest.raises(dj.ConfigurationError, match="open_store"),
    ):
        async with running(make_registry(), store, encryption_key=KEY_A):
            pytest.fail("must refuse")  # pragma: no cover


# ---- the command line ------------------------------------------------------------------


def _no_key_in(text: str) -> None:
    for key in (KEY_A, KEY_B):
        assert key not in text
        assert key[:20] not in text


def test_cli_help_says_how_to_give_several_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """After a key rotation the command line needs the old key too: its help says
    the variable takes a comma-separated list (it did not, and other separators fail)."""
    assert cli(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "DURABLE_JOBS_ENCRYPTION_KEY, comma-separated" in out
    assert "DURABLE_JOBS_ENCRYPTION_KEY=NEW,OLD" in out


async def test_an_export_without_the_key_holds_only_rows_kept_in_clear(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: Any,
) -> None:
    """What the docs say of ``encrypted_store``: an export without a key stops at the
    first encrypted row; one that succeeds (its filter chose rows written before
    encryption was on) holds only rows kept in clear and says false."""
    async with running(make_registry(), sqlite_url) as jobs:
        await jobs.task("notes").send("n1", Note(text="written before encryption"))
    async with running(make_registry(), sqlite_url, encryption_key=KEY_A) as jobs:
        await jobs.debounce("inbox").add("b1", Note(text=SECRETS["batch"]))
    monkeypatch.delenv("DURABLE_JOBS_ENCRYPTION_KEY", raising=False)
    capsys.readouterr()
    assert cli(["--store", sqlite_url, "export", "-o", str(tmp_path / "all.jsonl")]) == 1
    assert "encrypted and no encryption key was given" in capsys.readouterr().err
    clear = tmp_path / "clear.jsonl"
    assert cli(["--store", sqlite_url, "export", "--kind", "task", "-o", str(clear)]) == 0
    lines = [json.loads(line) for line in clear.read_text().splitlines()]
    assert (lines[0]["plaintext"], lines[0]["encrypted_store"]) == (True, False)
    assert lines[-1] == {"type": "footer", "instances": 1, "events": len(lines) - 2}
    assert SECRETS["batch"] not in clear.read_text()


async def test_cli_reads_the_key_from_the_environment(
    durable_store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: Any,
) -> None:
    await write_secrets(durable_store_url, encryption_key=KEY_A)
    capsys.readouterr()
    monkeypatch.delenv("DURABLE_JOBS_ENCRYPTION_KEY", raising=False)
    # Without the key: one error line that says why; the index still lists.
    assert cli(["--store", durable_store_url, "history", "task", "notes", "n1"]) == 1
    err = capsys.readouterr().err
    assert "encrypted and no encryption key was given" in err
    assert "DURABLE_JOBS_ENCRYPTION_KEY" in err
    assert cli(["--store", durable_store_url, "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["instances"]) == 3

    monkeypatch.setenv("DURABLE_JOBS_ENCRYPTION_KEY", f"{KEY_B}, {KEY_A}")
    assert cli(["--store", durable_store_url, "state", "task", "notes", "n1", "--json"]) == 0
    out, err = capsys.readouterr()
    assert SECRETS["event"] in out
    _no_key_in(out + err)

    # Export: decrypted, and the header says so.
    exported = tmp_path / "export.jsonl"
    assert cli(["--store", durable_store_url, "export", "-o", str(exported)]) == 0
    out, err = capsys.readouterr()
    assert "plaintext" in err
    _no_key_in(out + err)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert (lines[0]["plaintext"], lines[0]["encrypted_store"]) == (True, True)
    assert SECRETS["event"] in exported.read_text()

    # Import into a new store with a key: every row it writes is encrypted.
    target = f"sqlite:///{tmp_path / 'target.db'}"
    monkeypatch.setenv("DURABLE_JOBS_ENCRYPTION_KEY", KEY_B)
    assert cli(["--store", target, "import", str(exported)]) == 0
    capsys.readouterr()
    assert SECRETS["event"].encode() not in raw_sqlite(target)
    with dj.open_store(target, encryption_key=KEY_B) as store:
        rows = [s for r in store.list_instances() for s in store.stored_events(r.instance_uuid)]
        assert rows and all(is_encrypted(s.state) for s in rows)
    assert cli(["--store", target, "state", "task", "notes", "n1", "--json"]) == 0
    assert SECRETS["event"] in capsys.readouterr().out

    # Import into a store without a key: refused (it would store the data in clear),
    # nothing written, not even the new file; with --allow-plaintext, on purpose.
    monkeypatch.delenv("DURABLE_JOBS_ENCRYPTION_KEY")
    clear = tmp_path / "clear.db"
    assert cli(["--store", f"sqlite:///{clear}", "import", str(exported)]) == 1
    err = capsys.readouterr().err
    assert 'is an export of an encrypted store (its header says "encrypted_store": true)' in err
    assert "--allow-plaintext" in err and "Nothing was written." in err
    assert not clear.exists()
    args = ["--store", f"sqlite:///{clear}", "import", "--allow-plaintext", str(exported)]
    assert cli(args) == 0
    capsys.readouterr()
    assert SECRETS["event"].encode() in raw_sqlite(f"sqlite:///{clear}")

    # A malformed key in the environment: a clear error, the value never echoed.
    monkeypatch.setenv("DURABLE_JOBS_ENCRYPTION_KEY", "hunter2-not-a-key")
    assert cli(["--store", target, "list"]) == 1
    err = capsys.readouterr().err
    assert "not a key" in err and "hunter2" not in err


async def test_tail_decrypts_with_the_key(sqlite_url: str, autojump_clock: Any) -> None:
    """``tail`` shows the decrypted events; without the key, each one says why not."""
    await write_secrets(sqlite_url, encryption_key=KEY_A)
    with dj.open_store(sqlite_url, encryption_key=KEY_A) as store:
        events = list(tail_events(store, after=0, limit=5, duration=0))
        assert len(events) == 5
        assert all(e.error is None and isinstance(e.state, dict) for e in events)
        assert events[0].state is not None
        assert events[0].state["state"]["email"] == SECRETS["state"]
    with dj.open_store(sqlite_url) as store:
        events = list(tail_events(store, after=0, limit=5, duration=0))
        assert all(e.state is None for e in events)
        assert all("no encryption key was given" in (e.error or "") for e in events)


def _all_rows(url: str) -> list[tuple[str, int, bytes]]:
    with dj.open_store(url, encryption_key=KEY_A) as store:
        return [
            (str(s.originator_id), s.originator_version, bytes(s.state))
            for r in store.list_instances()
            for s in store.stored_events(r.instance_uuid)
        ]


async def test_no_tool_writes_in_clear_into_an_encrypted_store_without_the_key(
    durable_store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: Any,
) -> None:
    """import, terminate and trigger run without the key refuse a store whose newest row
    is encrypted, as open_jobs does, and write nothing: a row in clear would hold data in
    clear and turn that start-up guard off for the next process started without a key."""
    # An instance in clear from before encryption was turned on, then encrypted rows.
    async with running(make_registry(), durable_store_url) as jobs:
        await jobs.task("notes").send("old", Note(text="before encryption"))
    async with running(make_registry(), durable_store_url, encryption_key=KEY_A) as jobs:
        await jobs.task("notes").send("n1", Note(text=SECRETS["event"]))
    other = f"sqlite:///{tmp_path / 'other.db'}"
    async with running(make_registry(), other) as jobs:
        await jobs.task("notes").send("dave", Note(text="dave@example.com"))
    exported = tmp_path / "other.jsonl"
    monkeypatch.delenv("DURABLE_JOBS_ENCRYPTION_KEY", raising=False)
    assert cli(["--store", other, "export", "-o", str(exported)]) == 0
    before = _all_rows(durable_store_url)
    capsys.readouterr()
    for args in (
        ["import", str(exported)],
        ["terminate", "task", "notes", "old"],
        ["trigger", "task", "notes", "old"],
    ):
        assert cli(["--store", durable_store_url, *args]) == 1, args
        err = capsys.readouterr().err
        assert "encrypted and no encryption key was given" in err, err
        assert "Nothing was written" in err, err
    assert _all_rows(durable_store_url) == before
    with dj.open_store(durable_store_url) as store:
        with pytest.raises(dj.StoreError, match="Cannot import into"):
            dj.maintenance.import_jsonl(store, exported)
        with pytest.raises(dj.StoreError, match="Cannot terminate task job 'notes'"):
            dj.maintenance.terminate_instance(store, "task", "notes", "old")
    assert _all_rows(durable_store_url) == before
    # So a runtime without the key still refuses to start.
    with pytest.raises(dj.StoreError, match="no encryption key was given"):
        async with running(make_registry(), durable_store_url):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
    # With the key, the same import works and its rows are encrypted.
    monkeypatch.setenv("DURABLE_JOBS_ENCRYPTION_KEY", KEY_A)
    assert cli(["--store", durable_store_url, "import", str(exported)]) == 0
    new = set(_all_rows(durable_store_url)) - set(before)
    assert len(new) == 4
    assert all(is_encrypted(state) for _, _, state in new)


@pytest.mark.parametrize(
    ("value", "what"),
    [(None, "NoneType"), ("text", "str"), (7, "int")],
)
async def test_a_payload_that_is_not_bytes_is_a_store_error_naming_the_version(
    sqlite_url: str, autojump_clock: Any, value: object, what: str
) -> None:
    """A row whose payload column holds NULL, TEXT or a number (a hand edit, another
    tool): every reader and the start-up check raise StoreError naming the row."""
    async with running(make_registry(), sqlite_url) as jobs:
        for text in ("one", "two"):
            await jobs.task("notes").send("n1", Note(text=text))
    path = sqlite_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        (last,) = conn.execute("SELECT max(originator_version) FROM stored_events").fetchone()
        conn.execute(
            "UPDATE stored_events SET state = ? WHERE originator_version = ?", (value, last)
        )
        conn.commit()
    finally:
        conn.close()
    match = rf"instance 'n1': stored event version {last} is corrupt \(its payload is {what}"
    with dj.Inspector(sqlite_url) as inspector, pytest.raises(dj.StoreError, match=match):
        inspector.history("task", "notes", "n1")
    with pytest.raises(dj.StoreError, match=match):
        async with running(make_registry(), sqlite_url):
            pytest.fail("open_jobs must refuse")  # pragma: no cover
