"""Helpers for the ``ctx.execute`` tests: the app's own table, next to the jobs' tables.

The table lives in the store's database: in the SQLite file (created after the
store made its own tables, as an app would), or in the Postgres store's
schema. ``ledger`` has a unique ``(job, instance, n)`` so a test can make a
statement violate a constraint.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from conftest import connect_postgres

import durable_jobs as dj

LEDGER_SQLITE = (
    "CREATE TABLE IF NOT EXISTS ledger (instance TEXT NOT NULL, n INTEGER NOT NULL, "
    "note TEXT, UNIQUE (instance, n))"
)
LEDGER_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS {schema}.ledger (instance text NOT NULL, n bigint NOT NULL, "
    "note text, UNIQUE (instance, n))"
)


def is_postgres(url: str) -> bool:
    return url.startswith("postgres")


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def placeholder(url: str) -> str:
    """The driver's positional placeholder: ``%s`` on Postgres, ``?`` on SQLite."""
    return "%s" if is_postgres(url) else "?"


def insert_sql(url: str) -> str:
    """``INSERT INTO ledger (instance, n, note)`` with the driver's placeholders."""
    p = placeholder(url)
    return f"INSERT INTO ledger (instance, n, note) VALUES ({p}, {p}, {p})"


def create_ledger(url: str) -> None:
    """Create the store's tables (as the app's first open_jobs would), then ``ledger``."""
    dj.open_store(url).close()
    run_sql(url, LEDGER_SQLITE if not is_postgres(url) else LEDGER_POSTGRES)


def _schema(url: str) -> str:
    return url.partition("schema=")[2] or "public"


def run_sql(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the store's database outside the library; its rows."""
    if is_postgres(url):
        with connect_postgres(url) as pg:
            cur = pg.execute(sql.replace("{schema}", _schema(url)), params)
            return list(cur.fetchall()) if cur.description else []
    db = sqlite3.connect(sqlite_path(url))
    try:
        with db:
            return list(db.execute(sql, params).fetchall())
    finally:
        db.close()


def ledger(url: str) -> list[tuple[str, int, str | None]]:
    """Every ledger row, ordered."""
    table = "{schema}.ledger" if is_postgres(url) else "ledger"
    rows = run_sql(url, f"SELECT instance, n, note FROM {table} ORDER BY instance, n")
    return [(str(r[0]), int(r[1]), r[2]) for r in rows]
