"""``durable-jobs doctor``: check that a store can be read, without changing anything.

The check does not open the store the way the runtime does (that creates
missing files, schemas and tables). It reads the catalogue and counts through
a read-only connection of its own: an SQLite file opened with ``mode=ro``, a
Postgres session with ``default_transaction_read_only``. A store that does
not exist is reported, not created.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import click

from durable_jobs._domain.ids import identity_problem
from durable_jobs._errors import ConfigurationError, UnreadableIndexRow
from durable_jobs._store.crypto import MAGIC
from durable_jobs._store.index import INDEX_COLUMNS, reporting_unreadable, rows_from
from durable_jobs._store.registry import adapter_for
from durable_jobs._store.urls import StoreURL, redact, scrub
from durable_jobs.cli._app import (
    STORE_ENV,
    CliState,
    app,
    console,
    emit_json,
    json_option,
    set_exit_code,
    store_option,
)

__all__ = ["SCHEMA_VERSION", "Diagnosis", "diagnose"]

#: The table layout this release reads and writes. There are no migrations
#: yet: a store whose tables are all present is at this version.
SCHEMA_VERSION = 1


@dataclass
class Diagnosis:
    """What ``doctor`` found; ``ok`` when the store exists and has every table."""

    store: str
    scheme: str
    connected: bool = False
    exists: bool = False
    tables: dict[str, bool] = field(default_factory=dict)
    schema_version: int | None = None
    instances: int | None = None
    by_status: dict[str, int] = field(default_factory=dict)
    events: int | None = None
    snapshots: int | None = None
    #: Event rows stored encrypted, and in clear (JSON).
    encrypted_events: int | None = None
    clear_events: int | None = None
    #: Bytes on disk: per table with its indexes (Postgres), or the database file,
    #: its ``-wal`` file and the free pages inside the file (SQLite, keys ``file``,
    #: ``wal``, ``free``).
    sizes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Advice that does not make the store unusable (exit code stays 0): dead rows
    #: that vacuum does not remove, a large ``-wal`` file, free pages to give back.
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the store can be served as it is."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "store": self.store,
            "scheme": self.scheme,
            "ok": self.ok,
            "connected": self.connected,
            "exists": self.exists,
            "tables": self.tables,
            "schema_version": self.schema_version,
            "instances": self.instances,
            "by_status": self.by_status,
            "events": self.events,
            "snapshots": self.snapshots,
            "encrypted_events": self.encrypted_events,
            "clear_events": self.clear_events,
            "sizes": self.sizes,
            "problems": self.problems,
            "notes": self.notes,
        }

    def _tables_found(self, expected: tuple[str, ...], present: set[str]) -> None:
        self.tables = {name: name in present for name in expected}
        missing = [name for name, found in self.tables.items() if not found]
        if not any(self.tables.values()):
            self.problems.append("no durable-jobs tables: nothing was ever stored here")
        elif missing:
            self.problems.append(f"tables missing: {', '.join(missing)}")
        else:
            self.schema_version = SCHEMA_VERSION


def diagnose(url: str) -> Diagnosis:
    """Check the store at ``url`` read-only; never creates or changes anything.

    A URL that opening the store refuses is refused first, with the same
    :class:`ConfigurationError` (the adapter's own check: see ``Store.check_url``).
    """
    parsed = StoreURL.parse(url)
    adapter_for(parsed).check_url(parsed)
    found = Diagnosis(store=redact(url), scheme=parsed.scheme)
    if parsed.scheme == "memory":
        found.problems.append(
            "memory:// lives in one process's memory: a new process always sees it empty"
        )
    elif parsed.scheme == "sqlite":
        _sqlite(parsed, found)
    elif parsed.scheme in ("postgresql", "postgres"):
        _postgres(parsed, found)
    else:
        found.problems.append(
            f"doctor checks sqlite and postgresql stores; {parsed.scheme!r} comes from a "
            "third-party adapter, whose own tools check it"
        )
    return found


def _sqlite(url: StoreURL, found: Diagnosis) -> None:
    from durable_jobs.stores.sqlite import (
        EVENTS_TABLE,
        INDEX_TABLE,
        SNAPSHOTS_TABLE,
        TABLES,
        path_of,
    )

    path = Path(path_of(url))
    if not path.is_file():
        found.problems.append(f"no SQLite file at {path} (doctor creates nothing)")
        return
    found.exists = True
    # With a -wal file beside it (a store in use, or not checkpointed), read-only
    # mode sees the committed WAL content and adds no file. Without one the
    # database was closed cleanly: immutable mode reads it and creates no
    # -wal/-shm files (read-only mode would leave both behind).
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
    except sqlite3.Error as exc:
        found.problems.append(f"cannot open {path} read-only: {_sqlite_said(path, exc)}")
        return
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        found.connected = True
        found._tables_found(TABLES, names)
        if found.schema_version is not None:

            def rows(table: str, grouped: bool) -> list[tuple[Any, ...]]:
                # ``table`` is one of our constant names, never input.
                if grouped:
                    return list(conn.execute(f'SELECT status, count(*) FROM "{table}" GROUP BY 1'))  # noqa: S608
                return list(conn.execute(f'SELECT count(*) FROM "{table}"'))  # noqa: S608

            events, index_table = EVENTS_TABLE, INDEX_TABLE
            _count(found, rows, events, SNAPSHOTS_TABLE, index_table)
            index = conn.execute(f"SELECT {INDEX_COLUMNS} FROM {index_table}")  # noqa: S608
            _check_index_rows(found, index)
            found.encrypted_events = int(
                conn.execute(
                    f"SELECT count(*) FROM {events} WHERE substr(state, 1, ?) = ?",  # noqa: S608
                    (len(MAGIC), MAGIC),
                ).fetchone()[0]
            )
            _check_log_ends(
                found,
                conn.execute(
                    f"SELECT i.kind, i.job, i.instance_id, i.version, m.last FROM {index_table} i "  # noqa: S608
                    "LEFT JOIN (SELECT originator_id, max(originator_version) AS last "
                    f"FROM {events} GROUP BY originator_id) m "
                    "ON m.originator_id = i.instance_uuid WHERE m.last IS NOT i.version"
                ),
            )
            _check_unindexed_logs(
                found,
                conn.execute(
                    f"SELECT e.originator_id, max(e.originator_version) FROM {events} e "  # noqa: S608
                    f"LEFT JOIN {index_table} i ON i.instance_uuid = e.originator_id "
                    "WHERE i.instance_uuid IS NULL GROUP BY e.originator_id"
                ),
            )
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
        found.sizes = {
            "file": _file_size(path),
            "wal": _file_size(wal),
            "free": free,
        }
        found.notes += sqlite_notes(found.sizes)
    except sqlite3.Error as exc:
        found.problems.append(f"cannot read {path}: {_sqlite_said(path, exc)}")
    finally:
        conn.close()


def _sqlite_said(path: Path, exc: sqlite3.Error) -> str:
    """SQLite's error, after what it means when a file could not be made or written."""
    from durable_jobs.stores.sqlite import room_problem

    problem = room_problem(str(path), exc)
    return str(exc) if problem is None else f"{problem}. SQLite said: {exc}"


def _postgres(url: StoreURL, found: Diagnosis) -> None:
    import psycopg
    from psycopg import sql

    from durable_jobs.stores.postgres import (
        EVENTS_TABLE,
        INDEX_TABLE,
        SNAPSHOTS_TABLE,
        TABLES,
        schema_of,
        settings_of,
    )

    # The store's own reading of the URL (checked already: see diagnose).
    schema = schema_of(url)
    s = settings_of(url)
    attrs = s["target_session_attrs"]
    if attrs == "read-write":
        # The doctor's own session is read-only on purpose, which read-write would
        # refuse everywhere; "primary" finds the same server.
        attrs = "primary"
    try:
        conn = psycopg.connect(
            host=s["host"],
            port=s["port"],
            dbname=s["dbname"],
            user=s["user"],
            password=s["password"],
            connect_timeout=s["connect_timeout"],
            **({"target_session_attrs": attrs} if attrs is not None else {}),
            **s["tls"],
            options="-c default_transaction_read_only=on",
            autocommit=False,
        )
    except psycopg.Error as exc:
        detail = scrub(str(exc).strip() or type(exc).__name__, url.password)
        found.problems.append(f"cannot connect: {' '.join(detail.split())}")
        return
    try:
        found.connected = True
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if exists.fetchone() is None:
            found.problems.append(f"no schema {schema!r} in the database (doctor creates nothing)")
            return
        found.exists = True
        names = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )
        found._tables_found(TABLES, {str(row[0]) for row in names})
        if found.schema_version is not None:

            def rows(table: str, grouped: bool) -> list[tuple[Any, ...]]:
                name = sql.Identifier(schema, table)
                if grouped:
                    q = sql.SQL("SELECT status, count(*) FROM {} GROUP BY 1").format(name)
                else:
                    q = sql.SQL("SELECT count(*) FROM {}").format(name)
                return list(conn.execute(q))

            _count(found, rows, EVENTS_TABLE, SNAPSHOTS_TABLE, INDEX_TABLE)
            events, index_table = (sql.Identifier(schema, t) for t in (EVENTS_TABLE, INDEX_TABLE))
            with conn.cursor(name="dj_doctor_index") as index:
                index.execute(
                    sql.SQL("SELECT {} FROM {}").format(sql.SQL(INDEX_COLUMNS), index_table)
                )
                _check_index_rows(found, index)
            found.encrypted_events = int(
                conn.execute(
                    sql.SQL(
                        "SELECT count(*) FROM {} WHERE substring(state from 1 for %s) = %s"
                    ).format(events),
                    (len(MAGIC), MAGIC),
                ).fetchone()[0]  # type: ignore[index]
            )
            ends = conn.execute(
                sql.SQL(
                    "SELECT i.kind, i.job, i.instance_id, i.version, m.last FROM {} i "
                    "LEFT JOIN (SELECT originator_id, max(originator_version) AS last FROM {} "
                    "GROUP BY originator_id) m ON m.originator_id = i.instance_uuid "
                    "WHERE m.last IS DISTINCT FROM i.version"
                ).format(index_table, events)
            )
            _check_log_ends(found, ends)
            _check_unindexed_logs(
                found,
                conn.execute(
                    sql.SQL(
                        "SELECT e.originator_id, max(e.originator_version) FROM {} e "
                        "LEFT JOIN {} i ON i.instance_uuid = e.originator_id "
                        "WHERE i.instance_uuid IS NULL GROUP BY e.originator_id"
                    ).format(events, index_table)
                ),
            )
            _postgres_upkeep(conn, schema, TABLES, found)
    except psycopg.Error as exc:
        detail = scrub(str(exc).strip() or type(exc).__name__, url.password)
        found.problems.append(f"cannot read: {' '.join(detail.split())}")
    finally:
        conn.rollback()
        conn.close()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # no -wal file: closed cleanly
        return 0


#: Notes start at these: below them nothing is worth a line.
MANY_DEAD_ROWS = 10_000
BIG_WAL = 64 * 2**20
MUCH_FREE = 64 * 2**20


def _megabytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def sqlite_notes(sizes: dict[str, int]) -> list[str]:
    """Advice on an SQLite store's files (``Diagnosis.sizes``)."""
    notes: list[str] = []
    wal, free, file = sizes.get("wal", 0), sizes.get("free", 0), sizes.get("file", 0)
    if wal >= BIG_WAL:
        notes.append(
            f"the -wal file is {_megabytes(wal)}: checkpoints were held back by a long "
            "reader (a backup, an sqlite3 shell left in a transaction); it is cut back to "
            "16 MB at its next reset once no reader holds it"
        )
    if free >= MUCH_FREE and free * 2 >= file:
        notes.append(
            f"{_megabytes(free)} of the {_megabytes(file)} file is free pages (purged "
            "instances): later writes reuse them; VACUUM, with every runtime and tool "
            "closed, gives them back to the disk"
        )
    return notes


def dead_rows_note(
    table: str,
    live: int,
    dead: int,
    *,
    vacuumed_ago: float | None,
    autovacuum_off: str | None,
    oldest_transaction: tuple[int, str, float] | None,
) -> str | None:
    """Advice on one Postgres table's dead rows (None: nothing worth saying).

    ``vacuumed_ago``: seconds since its last (auto)vacuum, None if never;
    ``autovacuum_off``: where autovacuum is turned off for it (None: it is on);
    ``oldest_transaction``: (pid, application name, seconds open) of the oldest
    transaction in the database, which keeps vacuum from removing any row it
    may still see.
    """
    if dead < MANY_DEAD_ROWS or dead < 10 * max(live, 1):
        return None
    said = f"{table} has {dead:,} dead rows against {live:,} live"
    said += (
        ", never vacuumed" if vacuumed_ago is None else f", last vacuumed {_ago(vacuumed_ago)} ago"
    )
    if autovacuum_off is not None:
        return f"{said}: autovacuum is off {autovacuum_off}; turn it on or VACUUM it yourself"
    if oldest_transaction is not None and oldest_transaction[2] >= 600:
        pid, name, seconds = oldest_transaction
        return (
            f"{said}: a transaction open for {_ago(seconds)} (pid {pid}"
            + (f", application {name!r}" if name else "")
            + ") keeps vacuum from removing them; end it"
        )
    return (
        f"{said}: autovacuum does not keep up (check that it runs, and its "
        "autovacuum_vacuum_scale_factor and cost limits for this table)"
    )


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _postgres_upkeep(conn: Any, schema: str, tables: tuple[str, ...], found: Diagnosis) -> None:
    """Sizes, dead rows and autovacuum of the store's tables (from Postgres's statistics,
    which lag commits by up to a second or so)."""
    rows = conn.execute(
        "SELECT c.relname, pg_total_relation_size(c.oid), coalesce(s.n_live_tup, 0), "
        "coalesce(s.n_dead_tup, 0), extract(epoch FROM now() - greatest("
        "s.last_autovacuum, s.last_vacuum)), "
        "coalesce(c.reloptions, '{}'::text[]) @> '{autovacuum_enabled=false}'::text[] "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r'",
        (schema, list(tables)),
    ).fetchall()
    oldest = conn.execute(
        "SELECT pid, application_name, extract(epoch FROM now() - xact_start) "
        "FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL "
        "AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 1"
    ).fetchone()
    oldest_transaction = (
        None if oldest is None else (int(oldest[0]), str(oldest[1] or ""), float(oldest[2]))
    )
    server_off = conn.execute("SELECT current_setting('autovacuum') = 'off'").fetchone()[0]
    by_name = {str(r[0]): r for r in rows}
    for table in tables:
        if table not in by_name:
            continue
        _, size, live, dead, ago, off = by_name[table]
        found.sizes[table] = int(size)
        note = dead_rows_note(
            table,
            int(live),
            int(dead),
            vacuumed_ago=None if ago is None else float(ago),
            autovacuum_off=(
                "on the server (autovacuum = off)"
                if server_off
                else "for this table (autovacuum_enabled = false)"
                if off
                else None
            ),
            oldest_transaction=oldest_transaction,
        )
        if note is not None:
            found.notes.append(note)


def _count(
    found: Diagnosis,
    rows: Callable[[str, bool], list[tuple[Any, ...]]],
    events: str,
    snapshots: str,
    index: str,
) -> None:
    """Fill the counts from ``rows(table, grouped_by_status)``."""
    found.by_status = {str(status): int(n) for status, n in sorted(rows(index, True))}
    found.instances = sum(found.by_status.values())
    found.events = int(rows(events, False)[0][0])
    found.snapshots = int(rows(snapshots, False)[0][0])


#: How many unreadable index rows ``doctor`` names; the rest are counted.
_NAMED_ROWS = 20


def _check_log_ends(found: Diagnosis, cursor: Any) -> None:
    """Name the instances whose log does not end at the version their index row says
    (rows deleted from the end of a log, by a rollback or a partial restore, would
    otherwise be served as an older state), and count the event rows in clear."""
    assert found.events is not None and found.encrypted_events is not None
    found.clear_events = found.events - found.encrypted_events
    mismatched = cursor.fetchall()
    for kind, job, instance_id, version, last in mismatched[:_NAMED_ROWS]:
        ends = "has no events" if last is None else f"ends at version {last}"
        found.problems.append(
            f"{kind} job {job!r} instance {instance_id!r}: its index row says version "
            f"{version}, but its log {ends} (events deleted or added outside durable-jobs?)"
        )
    if len(mismatched) > _NAMED_ROWS:
        found.problems.append(
            f"and {len(mismatched) - _NAMED_ROWS} more instances whose log does not end "
            "at their index version"
        )


def _check_unindexed_logs(found: Diagnosis, cursor: Any) -> None:
    """Name the logs that have no index row: the runtime never runs such an instance
    (its alarms are read from the index), ``start`` of its id fails with a version
    conflict, and an export would leave it out."""
    orphans = cursor.fetchall()
    for key, last in orphans[:_NAMED_ROWS]:
        uuid = UUID(str(key))  # SQLite keeps the hex digits only
        found.problems.append(
            f"instance {uuid}: its log ({last} events) has no index row (deleted, or the "
            "index table restored from another backup than the events?)"
        )
    if len(orphans) > _NAMED_ROWS:
        found.problems.append(f"and {len(orphans) - _NAMED_ROWS} more logs without an index row")


def _check_index_rows(found: Diagnosis, cursor: Any) -> None:
    """Read every index row as the store does; name those that cannot be read."""
    bad: list[UnreadableIndexRow] = []
    wrong: list[str] = []
    with reporting_unreadable(bad.append):
        while batch := cursor.fetchmany(2000):
            for row in rows_from(batch):
                # A row naming another instance than its uuid (a hand "rename"), or a kind,
                # job or id no instance can have: an import would refuse the export of it.
                problem = identity_problem(row.kind, row.job, row.instance_id, row.instance_uuid)
                if problem is not None:
                    wrong.append(f"the index row of instance {row.instance_uuid}: {problem}")
    found.problems += [str(e) for e in bad[:_NAMED_ROWS]]
    if len(bad) > _NAMED_ROWS:
        found.problems.append(f"and {len(bad) - _NAMED_ROWS} more index rows that cannot be read")
    found.problems += wrong[:_NAMED_ROWS]
    if len(wrong) > _NAMED_ROWS:
        found.problems.append(
            f"and {len(wrong) - _NAMED_ROWS} more index rows that name another instance"
        )


@app.command()
@store_option
@json_option
@click.pass_obj
def doctor(state: CliState, as_json: bool) -> None:
    """Check a store without changing it: connection, tables, schema version, counts,
    every index row (each one that cannot be read is named) and every log without one.

    Reads through a read-only connection of its own, so a store that does not
    exist (a missing SQLite file or Postgres schema) is reported, not created.
    Exit code 1 when something is wrong.
    """
    if not state.store_url:
        msg = f"No store given: pass --store URL or set {STORE_ENV}."
        raise ConfigurationError(msg)
    found = diagnose(state.store_url)
    if not found.ok:
        set_exit_code(1)
    if as_json:
        emit_json(found.to_json())
        return
    out = console()
    out.print(f"store           {found.store}")
    out.print(f"connected       {'yes' if found.connected else 'no'}")
    if found.tables:
        tables = ", ".join(f"{n}{'' if ok else ' (missing)'}" for n, ok in found.tables.items())
        out.print(f"tables          {tables}")
    if found.schema_version is not None:
        out.print(f"schema version  {found.schema_version}")
    if found.instances is not None:
        statuses = ", ".join(f"{status} {n}" for status, n in found.by_status.items())
        out.print(f"instances       {found.instances}" + (f" ({statuses})" if statuses else ""))
        out.print(f"records         {found.events} events, {found.snapshots} snapshots")
    if found.encrypted_events:
        out.print(
            f"encryption      {found.encrypted_events} event rows encrypted, "
            f"{found.clear_events} in clear"
            + (
                " (read as written before encryption was turned on: if it was on from "
                "the start, they were written by something else)"
                if found.clear_events
                else ""
            )
        )
    if found.sizes:
        out.print(f"size            {_sizes_line(found)}")
    for problem in found.problems:
        out.print(f"problem         {problem}")
    for note in found.notes:
        out.print(f"note            {note}")
    out.print("ok" if found.ok else "not ok")


def _sizes_line(found: Diagnosis) -> str:
    sizes = found.sizes
    if found.scheme == "sqlite":
        return (
            f"{_megabytes(sizes['file'])} file, {_megabytes(sizes['wal'])} -wal, "
            f"{_megabytes(sizes['free'])} of the file free"
        )
    parts = ", ".join(f"{name} {_megabytes(n)}" for name, n in sizes.items())
    return f"{_megabytes(sum(sizes.values()))} ({parts})"
