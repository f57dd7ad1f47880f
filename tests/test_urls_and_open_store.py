"""Store URLs: parsing, redaction, bad input, and resolving adapters by scheme."""

from __future__ import annotations

import sqlite3
import traceback
from pathlib import Path

import pytest

import durable_jobs as dj
from durable_jobs._store.urls import StoreURL, redact
from durable_jobs.stores.memory import MemoryStore
from durable_jobs.stores.sqlite import SQLiteStore

SECRET = "s3cr3t-Pa55word"


def test_parse_postgres_url() -> None:
    url = StoreURL.parse(f"postgresql://app:{SECRET}@db.example:5433/jobs?schema=tenant_1")
    assert (url.scheme, url.username, url.password) == ("postgresql", "app", SECRET)
    assert (url.host, url.port, url.path) == ("db.example", 5433, "/jobs")
    assert url.query == {"schema": "tenant_1"}
    assert str(url) == "postgresql://app:***@db.example:5433/jobs?schema=tenant_1"
    assert SECRET not in repr(url)


def test_percent_encoded_password_is_decoded_and_hidden() -> None:
    url = StoreURL.parse("postgresql://app:p%40ss%2Fword@h/db")
    assert url.password == "p@ss/word"
    assert "p@ss" not in str(url) and "p%40ss" not in str(url)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "jobs.db",
        "sqlite:jobs.db",
        f"postgresql://u:{SECRET}@host:notaport/db",
        f"postgresql://u:{SECRET}@host:99999/db",
    ],
)
def test_malformed_urls_are_configuration_errors_without_passwords(bad: str) -> None:
    with pytest.raises(dj.ConfigurationError, match="store URL") as info:
        dj.open_store(bad)
    text = "".join(traceback.format_exception(info.value))
    assert SECRET not in text


@pytest.mark.parametrize(
    ("url", "port"),
    [
        (f"postgresql://u:{SECRET}@127.0.0.1:0/db", "0"),
        (f"postgresql://u:{SECRET}@db.example:65536/db", "65536"),
        (f"postgres://u:{SECRET}@[::1]:0/db", "0"),
        (f"postgresql://u:{SECRET}@db1:5432,db2:0/db?target_session_attrs=read-write", "0"),
    ],
)
def test_a_port_out_of_range_is_refused_wherever_a_url_is_read(
    url: str, port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Port 0 was taken (libpq then connected to 5432 unsaid): open_store, doctor and
    every other command refuse it, naming the port, never the password."""
    from _cli_fixtures import invoke

    expected = f"Invalid port {port} in store URL "
    with pytest.raises(dj.ConfigurationError, match=expected) as info:
        dj.open_store(url)
    assert SECRET not in "".join(traceback.format_exception(info.value))
    assert "a port is a number from 1 to 65535" in str(info.value)
    for command in (["doctor"], ["doctor", "--json"], ["list"]):
        code, out, err = invoke(capsys, "--store", url, *command)
        assert code != 0 and out == ""
        assert expected in err and SECRET not in err


def test_a_password_that_looks_like_a_port_is_not_quoted() -> None:
    # 'u:0/x' before the '@': the 0 is part of an unencoded password, not a port.
    with pytest.raises(dj.ConfigurationError, match="an '@' after the host") as info:
        dj.open_store("postgresql://u:0/secret@127.0.0.1/db")
    assert "secret" not in str(info.value) and "port" not in str(info.value)


def test_unknown_scheme_names_the_accepted_ones() -> None:
    with pytest.raises(dj.ConfigurationError) as info:
        dj.open_store(f"redis://u:{SECRET}@localhost/0")
    message = str(info.value)
    for scheme in ("memory://", "sqlite://", "postgresql://"):
        assert scheme in message
    assert "redis" in message and SECRET not in message


def test_non_string_url() -> None:
    with pytest.raises(dj.ConfigurationError, match="Malformed store URL"):
        dj.open_store(42)  # type: ignore[arg-type]


def test_repeated_and_unknown_options() -> None:
    with pytest.raises(dj.ConfigurationError, match="repeats the option"):
        dj.open_store("sqlite:///a.db?synchronous=full&synchronous=normal")
    with pytest.raises(dj.ConfigurationError, match=r"Unknown option.*journal.*synchronous"):
        dj.open_store("sqlite:///a.db?journal=off")


def test_redact_is_best_effort_on_anything() -> None:
    assert redact(f"x://u:{SECRET}@h/p") == "x://u:***@h/p"
    assert redact("no scheme") == "no scheme"
    assert redact("x://h/p") == "x://h/p"


def test_schemes_come_from_entry_points() -> None:
    assert {"memory", "sqlite", "postgresql", "postgres"} <= set(dj.store_schemes())


def test_memory_store() -> None:
    with dj.open_store("memory://") as store:
        assert isinstance(store, MemoryStore)
        assert not store.durable
        assert repr(store) == "<MemoryStore memory://>"
    with pytest.raises(dj.ConfigurationError, match="takes no location"):
        dj.open_store("memory://somewhere")
    for bad in (f"memory://user:{SECRET}@", "memory://user@", "memory://:5"):
        with pytest.raises(dj.ConfigurationError, match="takes no location") as info:
            dj.open_store(bad)
        assert SECRET not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:\udcff{SECRET}@127.0.0.1:1/test",
        f"postgresql://post\udcffgres:{SECRET}@127.0.0.1:1/test",
        "sqlite:///jobs\udcff.db",
    ],
    ids=["password", "user", "path"],
)
def test_a_url_that_is_not_utf8_is_a_configuration_error_without_its_password(url: str) -> None:
    """A non-UTF-8 byte (a surrogate escape from argv or the environment) raised a bare
    UnicodeEncodeError whose repr held the password."""
    with pytest.raises(dj.ConfigurationError, match="not UTF-8") as info:
        dj.open_store(url)
    text = "".join(traceback.format_exception(info.value)) + repr(info.value.args)
    assert SECRET not in text
    str(info.value).encode("utf-8")  # printable


@pytest.mark.parametrize("url", ["memory://", "sqlite:///{tmp}/j.db"])
def test_an_unknown_option_is_a_configuration_error(url: str, tmp_path: Path) -> None:
    """A typo in an option name was a bare TypeError from the store's __init__."""
    with pytest.raises(dj.ConfigurationError, match="Did you mean 'snapshot_interval'") as info:
        dj.open_store(url.format(tmp=tmp_path), snapshot_intreval=10)
    assert "accepted: create, encryption_key, snapshot_interval" in str(info.value)
    assert not (tmp_path / "j.db").exists()  # nothing created


def test_snapshot_interval_is_checked() -> None:
    with pytest.raises(dj.ConfigurationError, match="snapshot_interval"):
        dj.open_store("memory://", snapshot_interval=-1)


# ---- SQLite ---------------------------------------------------------------------------


def _pragma(store: dj.Store, name: str) -> object:
    assert isinstance(store, SQLiteStore)
    with store._app.factory.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
        c.execute(f"PRAGMA {name}")
        return c.fetchone()[0]


def test_sqlite_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with dj.open_store("sqlite:///rel.db") as store:
        assert isinstance(store, SQLiteStore) and store.path == "rel.db"
    assert (tmp_path / "rel.db").exists()
    absolute = tmp_path / "sub" / "abs.db"
    absolute.parent.mkdir()
    with dj.open_store(f"sqlite:///{absolute}") as store:
        assert isinstance(store, SQLiteStore) and store.path == str(absolute)
    assert absolute.exists()


def test_sqlite_is_wal_with_full_sync_by_default(sqlite_url: str) -> None:
    with dj.open_store(sqlite_url) as store:
        assert _pragma(store, "journal_mode") == "wal"
        assert _pragma(store, "synchronous") == 2  # FULL
    with dj.open_store(sqlite_url + "?synchronous=normal") as store:
        assert _pragma(store, "synchronous") == 1  # NORMAL


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://host/x.db", "three slashes"),
        ("sqlite:///", "three slashes"),
        ("sqlite:///:memory:", "use 'memory://'"),
        ("sqlite:///x.db?synchronous=off", "synchronous must be"),
        ("sqlite:///x.db?lock_timeout=soon", "lock_timeout"),
    ],
)
def test_bad_sqlite_urls(
    url: str, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(dj.ConfigurationError, match=match):
        dj.open_store(url)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(dj.StoreError, match=r"junk\.db|not a database") as info:
        dj.open_store(f"sqlite:///{path}")
    assert info.value.__cause__ is not None
    assert path.read_bytes().startswith(b"this is not")


def test_sqlite_unwritable_location(tmp_path: Path) -> None:
    with pytest.raises(dj.StoreError) as info:
        dj.open_store(f"sqlite:///{tmp_path}/missing-dir/jobs.db")
    assert isinstance(info.value.__cause__, Exception)


def test_sqlite_tables_are_plain_json(sqlite_url: str) -> None:
    from datetime import UTC, datetime

    from durable_jobs._domain.continuous import ContinuousInstance

    t = datetime(2026, 1, 1, tzinfo=UTC)
    with dj.open_store(sqlite_url) as store:
        inst, _ = ContinuousInstance.start(None, "j", "i", now=t, state={"a": 1}, first_run_at=t)
        store.save(inst)
        assert isinstance(store, SQLiteStore)
        path = store.path
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT topic, state FROM stored_events ORDER BY originator_version"
        ).fetchall()
        index = db.execute(
            "SELECT kind, job, instance_id, status, due_at FROM dj_instances"
        ).fetchall()
    finally:
        db.close()
    assert rows[0][0] == "durable_jobs:ContinuousInstance.Started"
    assert rows[0][1].startswith(b"{") and b'"state":{"a":1}' in rows[0][1]
    assert index == [("continuous", "j", "i", "running", t.timestamp())]


def test_sqlite_alarm_queries_use_the_due_at_index(sqlite_url: str) -> None:
    """The due-alarm queries are index scans: no aggregate, no table scan."""
    from durable_jobs.stores import sqlite as adapter

    with dj.open_store(sqlite_url) as store:
        assert isinstance(store, SQLiteStore)
        datastore = store._app.factory.datastore  # type: ignore[attr-defined]
        queries = [
            (
                adapter._SELECT + "WHERE due_at IS NOT NULL AND due_at <= ? "
                "ORDER BY due_at, instance_uuid LIMIT ?",
                (1.0, 10),
            ),
            (
                adapter._SELECT
                + "WHERE due_at IS NOT NULL ORDER BY due_at, instance_uuid LIMIT ?",
                (10,),
            ),
        ]
        for sql, params in queries:
            with datastore.transaction(commit=False) as c:
                c.execute("EXPLAIN QUERY PLAN " + sql, params)
                plan = " ".join(str(row[-1]) for row in c.fetchall())
            assert "USING INDEX dj_instances_due_at" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
