"""``python -m durable_jobs``, ``durable-jobs --version`` and ``durable-jobs doctor``.

doctor reads a store through a read-only connection of its own: it reports a
missing SQLite file or Postgres schema instead of creating it, and changes
nothing in a store that exists (checked byte for byte on SQLite, by the
catalogue and the row counts on Postgres).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from trio.testing import MockClock

import durable_jobs as dj
from _cli_fixtures import fill, invoke
from durable_jobs.cli._doctor import dead_rows_note, sqlite_notes


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)


def doctor_json(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, dict[str, Any]]:
    code, out, err = invoke(capsys, "doctor", "--store", url, "--json")
    assert err == ""
    return code, json.loads(out)


# ---- what is installed -------------------------------------------------------------------


def test_version_shows_the_version_schemes_and_extras(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "--version")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"durable-jobs {dj.__version__} (Python 3.")
    assert lines[1] == "store schemes: memory, postgres, postgresql, sqlite"
    assert lines[2] == "optional extras:"
    extras = {line.split()[0]: line for line in lines[3:]}
    declared = set(importlib.metadata.metadata("durable-jobs").get_all("Provides-Extra") or [])
    assert "testing" in declared
    assert set(extras) == declared - {"dev"}  # "dev" is ours, not shown
    assert "installed (hypothesis " in extras["testing"]
    assert "pytest " in extras["testing"]


def test_python_m_durable_jobs_prints_the_same() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "durable_jobs"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"durable-jobs {dj.__version__} (Python ")
    assert "store schemes: memory, postgres, postgresql, sqlite" in done.stdout
    # With arguments it is the command line.
    done = subprocess.run(
        [sys.executable, "-m", "durable_jobs", "doctor", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "without changing it" in done.stdout


# ---- doctor on stores that exist ---------------------------------------------------------


def digest(path: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.parent.iterdir())
        if p.is_file()
    }


async def test_doctor_reports_a_sqlite_store_and_changes_nothing(
    tmp_path: Path, autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    await fill(url)
    before = digest(path)
    code, report = doctor_json(capsys, url)
    assert code == 0, report
    assert report["ok"] and report["connected"] and report["exists"]
    assert report["schema_version"] == 1
    assert report["tables"] == {
        "stored_events": True,
        "stored_snapshots": True,
        "dj_instances": True,
        "dj_type_versions": True,
    }
    assert report["by_status"] == {"active": 1, "debouncing": 1, "failed": 1, "running": 1}
    assert report["instances"] == 4
    assert report["events"] > 20
    assert digest(path) == before  # not a byte changed, no file added or removed

    # While a process has the store open (its -wal file exists), doctor reads it too.
    with dj.open_store(url):
        names = sorted(p.name for p in tmp_path.iterdir())
        code, report = doctor_json(capsys, url)
        assert code == 0 and report["instances"] == 4
        assert sorted(p.name for p in tmp_path.iterdir()) == names

    code, out, _ = invoke(capsys, "doctor", "--store", url)
    assert code == 0
    assert "schema version  1" in out and "instances       4 (" in out and out.endswith("ok\n")


@pytest.mark.postgres
async def test_doctor_reports_a_postgres_store_and_changes_nothing(
    pg_url: str, postgres_url: str, autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await fill(pg_url)
    schema = pg_url.rpartition("schema=")[2]

    def census() -> tuple[Any, ...]:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "ORDER BY 1",
                (schema,),
            ).fetchall()
            rows = conn.execute(
                sql.SQL(
                    "SELECT (SELECT count(*) FROM {}), (SELECT max(updated_at) FROM {})"
                ).format(
                    sql.Identifier(schema, "durablejobs_events"),
                    sql.Identifier(schema, "dj_instances"),
                )
            ).fetchone()
            return (tables, rows)

    before = census()
    code, report = doctor_json(capsys, pg_url)
    assert code == 0, report
    assert report["schema_version"] == 1 and report["instances"] == 4
    assert report["tables"] == {
        "durablejobs_events": True,
        "durablejobs_snapshots": True,
        "dj_instances": True,
        "dj_type_versions": True,
    }
    assert census() == before


# ---- doctor looks for every table the store makes ----------------------------------------


def test_doctor_looks_for_every_table_of_a_sqlite_store(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dj.open_store(sqlite_url).close()
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        made = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    code, report = doctor_json(capsys, sqlite_url)
    assert code == 0 and report["tables"] == dict.fromkeys(made, True)
    assert "dj_type_versions" in made
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE dj_type_versions")
    conn.close()
    code, report = doctor_json(capsys, sqlite_url)
    assert code == 1 and report["problems"] == ["tables missing: dj_type_versions"]
    assert report["tables"]["dj_type_versions"] is False


@pytest.mark.postgres
def test_doctor_looks_for_every_table_of_a_postgres_store(
    pg_url: str, postgres_url: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dj.open_store(pg_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        made = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (pg_schema,),
            )
        }
    code, report = doctor_json(capsys, pg_url)
    assert code == 0 and report["tables"] == dict.fromkeys(made, True)
    assert "dj_type_versions" in made
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP TABLE {}").format(sql.Identifier(pg_schema, "dj_type_versions"))
        )
    code, report = doctor_json(capsys, pg_url)
    assert code == 1 and report["problems"] == ["tables missing: dj_type_versions"]
    code, out, _ = invoke(capsys, "doctor", "--store", pg_url)
    assert "dj_type_versions (missing)" in out and out.endswith("not ok\n")


# ---- doctor creates nothing --------------------------------------------------------------


def test_doctor_creates_no_missing_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = doctor_json(capsys, f"sqlite:///{tmp_path / 'missing.db'}")
    assert code == 1
    assert report["ok"] is False and report["exists"] is False
    assert report["problems"] == [
        f"no SQLite file at {tmp_path / 'missing.db'} (doctor creates nothing)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_doctor_on_a_file_that_is_not_a_store_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.db"
    path.write_bytes(b"")
    code, report = doctor_json(capsys, f"sqlite:///{path}")
    assert code == 1
    assert report["problems"] == ["no durable-jobs tables: nothing was ever stored here"]
    assert report["tables"] == dict.fromkeys(
        ("stored_events", "stored_snapshots", "dj_instances", "dj_type_versions"), False
    )
    assert path.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["other.db"]


@pytest.mark.postgres
def test_doctor_creates_no_missing_postgres_schema(
    postgres_url: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = doctor_json(capsys, f"{postgres_url}?schema={pg_schema}")
    assert code == 1
    assert report["connected"] is True and report["exists"] is False
    assert report["problems"] == [
        f"no schema {pg_schema!r} in the database (doctor creates nothing)"
    ]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,))
        assert found.fetchone() is None


def test_doctor_on_an_unreachable_server_hides_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = invoke(
        capsys, "doctor", "--store", "postgresql://app:s3cret-pw@127.0.0.1:1/jobs", "--json"
    )
    assert code == 1 and err == ""
    report = json.loads(out)
    assert report["connected"] is False
    assert report["problems"][0].startswith("cannot connect: ")
    assert "s3cret-pw" not in out
    assert report["store"] == "postgresql://app:***@127.0.0.1:1/jobs"


def test_doctor_on_memory_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = doctor_json(capsys, "memory://")
    assert code == 1 and "a new process always sees it empty" in report["problems"][0]
    code, out, err = invoke(capsys, "doctor")
    assert code == 1 and out == ""
    assert err == "error: No store given: pass --store URL or set DURABLE_JOBS_STORE.\n"
    code, out, err = invoke(capsys, "doctor", "--store", "not a url")
    assert code == 1 and err.startswith("error: Malformed store URL")


# ---- doctor refuses the URLs opening the store refuses -----------------------------------

_PASSWORD = "doctor-s3cret"


def _refused_alike(capsys: pytest.CaptureFixture[str], url: str) -> None:
    """doctor refuses ``url`` with open_store's own message (text and --json), exit 1,
    and never shows the password."""
    with pytest.raises(dj.ConfigurationError) as refused:
        dj.open_store(url, create=False)
    expected = str(refused.value)
    assert _PASSWORD not in expected
    code, out, err = invoke(capsys, "doctor", "--store", url)
    assert (code, out, err) == (1, "", f"error: {expected}\n")
    code, out, err = invoke(capsys, "doctor", "--store", url, "--json")
    assert (code, out) == (1, "") and json.loads(err)["error"] == expected
    assert _PASSWORD not in err


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query",
    [
        "options=-c%20statement_timeout%3D1",
        "pool_size=abc",
        "connect_timeout=-1",
        "query_timeout=0",
        "sslmode=bogus",
        "target_session_attrs=sideways",
    ],
)
def test_doctor_refuses_a_postgres_url_that_open_store_refuses(
    query: str, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dj.open_store(pg_url).close()  # the store is there: its own URL is fine
    assert doctor_json(capsys, pg_url)[0] == 0
    url = pg_url.replace("postgres@", f"postgres:{_PASSWORD}@", 1)
    _refused_alike(capsys, f"{url}&{query}")


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query", [f"password={_PASSWORD}", f"sslpassword={_PASSWORD}", f"user=x&password={_PASSWORD}"]
)
def test_doctor_never_prints_a_password_given_in_the_query(
    query: str, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside review: doctor printed the URL as given, query string and all, and
    connected with it (a password in ``?password=`` in the clear on screen)."""
    dj.open_store(pg_url).close()
    for args in (["doctor"], ["doctor", "--json"]):
        code, out, err = invoke(capsys, *args[:1], "--store", f"{pg_url}&{query}", *args[1:])
        assert code == 1
        assert _PASSWORD not in out + err


@pytest.mark.postgres
@pytest.mark.parametrize("schema", ["Jobs", "select", "pg_jobs", "", "x" * 64])
def test_doctor_says_a_schema_name_is_invalid_not_missing(
    schema: str, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres_url.replace("postgres@", f"postgres:{_PASSWORD}@", 1)
    _refused_alike(capsys, f"{url}?schema={schema}")


@pytest.mark.parametrize(
    "query", ["lock_timeout=soon", "synchronous=off", "journal_mode=delete", "schema=jobs"]
)
def test_doctor_refuses_a_sqlite_url_that_open_store_refuses(
    query: str, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dj.open_store(sqlite_url).close()
    assert doctor_json(capsys, sqlite_url)[0] == 0
    _refused_alike(capsys, f"{sqlite_url}?{query}")


def test_doctor_refuses_what_memory_and_unknown_schemes_refuse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _refused_alike(capsys, f"memory://app:{_PASSWORD}@somewhere")
    _refused_alike(capsys, "memory://?size=10")
    _refused_alike(capsys, f"redis://app:{_PASSWORD}@localhost/0")


# ---- doctor finds what was changed behind the store's back -------------------------------


def _tamper(url: str, postgres_url: str, statement: str) -> None:
    """Run ``statement`` ({events} is the events table) on the store, as someone with
    write access to the database would."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(statement.format(events="stored_events"))
        return
    schema = url.rpartition("schema=")[2]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        table = sql.Identifier(schema, "durablejobs_events").as_string(conn)
        conn.execute(statement.format(events=table).encode())


async def test_doctor_names_an_instance_whose_log_lost_its_tail(
    durable_store_url: str,
    postgres_url: str,
    autojump_clock: MockClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Rows deleted from the end of a log (a rollback, a partial restore) would be
    served as an older state: doctor compares each log's end with its index row."""
    await fill(durable_store_url)
    code, report = doctor_json(capsys, durable_store_url)
    assert code == 0 and report["problems"] == []
    assert (report["encrypted_events"], report["clear_events"]) == (0, report["events"])
    _tamper(
        durable_store_url,
        postgres_url,
        "DELETE FROM {events} WHERE originator_version > 3 AND originator_id IN "
        "(SELECT originator_id FROM {events} GROUP BY originator_id "
        "HAVING max(originator_version) > 5 LIMIT 1)",
    )
    code, report = doctor_json(capsys, durable_store_url)
    assert code == 1
    (problem,) = report["problems"]
    assert "its index row says version" in problem and "its log ends at version 3" in problem


async def test_doctor_counts_event_rows_in_clear_beside_encrypted_ones(
    durable_store_url: str,
    postgres_url: str,
    autojump_clock: MockClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A store encrypted from its start has no row in clear: one there was put in by
    something else (a downgrade swap), and doctor shows it."""
    key = dj.generate_key()
    registry = dj.Registry()

    @registry.continuous("c", state=int, schedule=dj.every(timedelta(hours=1)))
    async def c(ctx: dj.ContinuousContext[int]) -> None: ...

    async with dj.open_jobs(registry, durable_store_url, encryption_key=key) as jobs:
        await jobs.continuous(c).start("x", 0)
        await jobs.wait_idle()
    code, report = doctor_json(capsys, durable_store_url)
    assert code == 0 and report["clear_events"] == 0
    encrypted = report["encrypted_events"]
    assert encrypted == report["events"] > 0
    _tamper(
        durable_store_url,
        postgres_url,
        "UPDATE {events} SET state = '{{}}' WHERE originator_version = 1",
    )
    code, report = doctor_json(capsys, durable_store_url)
    assert (report["encrypted_events"], report["clear_events"]) == (encrypted - 1, 1)
    code, out, _ = invoke(capsys, "doctor", "--store", durable_store_url)
    assert f"{encrypted - 1} event rows encrypted, 1 in clear" in out
    assert "if it was on from the start, they were written by something else" in out


# ---- sizes and upkeep notes ---------------------------------------------------------------


async def test_doctor_reports_sizes_of_a_sqlite_store(
    tmp_path: Path, autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    await fill(url)
    code, report = doctor_json(capsys, url)
    assert code == 0 and report["notes"] == []
    assert report["sizes"] == {"file": path.stat().st_size, "wal": 0, "free": 0}
    code, out, _ = invoke(capsys, "doctor", "--store", url)
    assert (
        code == 0
        and "\nsize            0.0 MB file, 0.0 MB -wal, 0.0 MB of the file free\n" in out
    )


def test_sqlite_notes_name_a_large_wal_and_free_pages() -> None:
    mb = 2**20
    assert sqlite_notes({"file": 500 * mb, "wal": 10 * mb, "free": 100 * mb}) == []
    wal, free = sqlite_notes({"file": 500 * mb, "wal": 300 * mb, "free": 400 * mb})
    assert wal.startswith("the -wal file is 300.0 MB: checkpoints were held back by a long reader")
    assert free.startswith("400.0 MB of the 500.0 MB file is free pages (purged instances)")
    assert "VACUUM, with every runtime and tool closed" in free


def test_dead_rows_note_says_what_holds_them() -> None:
    def note(**kw: Any) -> str | None:
        args: dict[str, Any] = {
            "vacuumed_ago": 30.0,
            "autovacuum_off": None,
            "oldest_transaction": None,
        } | kw
        return dead_rows_note("dj_instances", args.pop("live", 50), args.pop("dead"), **args)

    assert note(dead=9_999) is None  # few
    assert note(dead=20_000, live=5_000) is None  # not many against the live ones
    assert note(dead=20_000) == (
        "dj_instances has 20,000 dead rows against 50 live, last vacuumed 30 s ago: "
        "autovacuum does not keep up (check that it runs, and its "
        "autovacuum_vacuum_scale_factor and cost limits for this table)"
    )
    held = note(dead=20_000, oldest_transaction=(4242, "backup", 3 * 3600.0))
    assert held is not None and held.endswith(
        "a transaction open for 3 h (pid 4242, application 'backup') keeps vacuum from "
        "removing them; end it"
    )
    # A transaction open for a few seconds is ordinary work, not the cause.
    assert "does not keep up" in str(note(dead=20_000, oldest_transaction=(1, "", 5.0)))
    off = note(dead=20_000, vacuumed_ago=None, autovacuum_off="on the server (autovacuum = off)")
    assert off is not None and off.endswith(
        "never vacuumed: autovacuum is off on the server (autovacuum = off); turn it on or "
        "VACUUM it yourself"
    )


@pytest.mark.postgres
async def test_doctor_reports_sizes_and_dead_rows_of_a_postgres_store(
    pg_url: str, postgres_url: str, autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SRE's review: doctor said nothing of a bloated index table (every run updates
    its instance's row; dead rows that vacuum does not remove slow every read)."""
    await fill(pg_url)
    schema = pg_url.rpartition("schema=")[2]
    code, report = doctor_json(capsys, pg_url)
    assert code == 0
    sizes = report["sizes"]
    assert set(sizes) == set(report["tables"])
    assert sizes["durablejobs_events"] > 0 and all(n >= 0 for n in sizes.values())
    index = sql.Identifier(schema, "dj_instances")

    def dead_rows() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(index))
            with conn.transaction():
                conn.cursor().executemany(
                    sql.SQL("UPDATE {} SET version = version WHERE instance_id = %s").format(
                        index
                    ),
                    [("acct-ok",)] * 10_500,
                )
            # Counted in the shared statistics before this session goes idle (Postgres 15+).
            conn.execute("SELECT pg_stat_force_next_flush()")
            conn.execute("SELECT 1")

    dead_rows()
    code, report = doctor_json(capsys, pg_url)
    assert code == 0  # advice, not a problem
    (note,) = report["notes"]
    assert note.startswith("dj_instances has 10,5")  # and the few dead rows of the fill
    assert "dead rows against 4 live" in note and "autovacuum is off" in note
    # (Its read of the index rows let Postgres prune those rows: they are made again.)
    dead_rows()
    code, out, _ = invoke(capsys, "doctor", "--store", pg_url)
    said = " ".join(out.split())  # (lines wrapped at the console's width)
    assert code == 0 and said.endswith(" ok")
    assert re.search(
        r" note dj_instances has [\d,]+ dead rows against 4 live, never vacuumed", said
    )
