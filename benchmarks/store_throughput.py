"""Commit throughput of the store layer against the raw database, in one run.

For SQLite (synchronous=FULL, the default) and, if reachable, Postgres, it
times one "run commit" (3 events + the index row in one transaction) through
`Store.save`, and the same rows written with the raw driver in one
transaction each: the ratio is our overhead. It also shows what group commit
(`Store.save(*instances)`, one transaction for many runs) buys.

    .venv/bin/python benchmarks/store_throughput.py [--quick] [--runs 300]
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _common import check_postgres, header, parser, pg_url, stores_arg, table
from psycopg import sql

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.instance import Intents

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE = dj.every(timedelta(minutes=1))
PAYLOAD = b'{"timestamp":"2026-01-01T00:00:00Z","state":{"n":1},"handler":"execute"}'


def one_run(inst: ContinuousInstance, n: int) -> None:
    inst.complete_run(
        inst.next_ticket(fresh=False),
        Intents(state={"n": n}),
        now=T0 + timedelta(minutes=n),
        duration=0.001,
        schedule=SCHEDULE,
    )


def ours(url: str, runs: int, group: int) -> float:
    """Run commits per second through Store.save, ``group`` instances per transaction."""
    with dj.open_store(url) as store:
        insts = [
            ContinuousInstance.start(
                None, "bench", f"i{k}", now=T0, state={"n": 0}, first_run_at=T0
            )[0]
            for k in range(group)
        ]
        store.save(*insts)
        start = time.perf_counter()
        for n in range(runs // group):
            for inst in insts:
                one_run(inst, n)
            store.save(*insts)
        return (runs // group) * group / (time.perf_counter() - start)


def raw_sqlite(path: Path, runs: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE e (id TEXT, v INTEGER, topic TEXT, state BLOB, PRIMARY KEY (id, v))")
    db.execute("CREATE TABLE i (id TEXT PRIMARY KEY, due REAL, v INTEGER)")
    oid = uuid.uuid4().hex
    start = time.perf_counter()
    for n in range(runs):
        db.execute("BEGIN")
        for k in range(3):
            db.execute("INSERT INTO e VALUES (?,?,?,?)", (oid, 3 * n + k, "t", PAYLOAD))
        db.execute(
            "INSERT INTO i VALUES (?,?,?) ON CONFLICT (id) DO UPDATE SET due=excluded.due, "
            "v=excluded.v",
            (oid, float(n), 3 * n + 2),
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return runs / elapsed


def raw_postgres(url: str, runs: int) -> float:
    schema = sql.Identifier(f"bench_raw_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(url.split("?", maxsplit=1)[0], autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        try:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {}.e (id uuid, v bigint, topic text, state bytea, "
                    "PRIMARY KEY (id, v))"
                ).format(schema)
            )
            conn.execute(
                sql.SQL("CREATE TABLE {}.i (id uuid PRIMARY KEY, due float8, v bigint)").format(
                    schema
                )
            )
            upsert = sql.SQL(
                "INSERT INTO {}.i VALUES (%s,%s,%s) ON CONFLICT (id) DO UPDATE "
                "SET due=excluded.due, v=excluded.v"
            ).format(schema)
            insert = sql.SQL("INSERT INTO {}.e VALUES (%s,%s,%s,%s)").format(schema)
            oid = uuid.uuid4()
            start = time.perf_counter()
            for n in range(runs):
                with conn.transaction():
                    conn.execute(upsert, (oid, float(n), 3 * n + 2))
                    conn.cursor().executemany(
                        insert, [(oid, 3 * n + k, "t", PAYLOAD) for k in range(3)]
                    )
            return runs / (time.perf_counter() - start)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


def row(name: str, base: float, single: float, grouped: float) -> list[object]:
    return [name, base, single, f"{single / base:.2f}x", grouped, f"{grouped / base:.2f}x"]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--group", type=int, default=20)
    a = p.parse_args()
    if a.quick:
        a.runs = 20
    stores = stores_arg(a.stores, allowed=("sqlite", "postgres"))
    header("Store layer: one run commit (3 events + index row) against the raw driver")
    rows = []
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as tmp:
            base = raw_sqlite(Path(tmp) / "raw.db", a.runs)
            single = ours(f"sqlite:///{Path(tmp) / 'one.db'}", a.runs, 1)
            grouped = ours(f"sqlite:///{Path(tmp) / 'group.db'}", a.runs * 4, a.group)
            rows.append(row("SQLite (synchronous=full)", base, single, grouped))
    if "postgres" in stores:
        check_postgres()
        pg = pg_url()
        base = raw_postgres(pg, a.runs)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        url = f"{pg}?schema={schema}"
        try:
            single = ours(url, a.runs, 1)
            grouped = ours(url.replace(schema, schema + "g"), a.runs * 4, a.group)
        finally:
            with psycopg.connect(pg, autocommit=True) as conn:
                for name in (schema, schema + "g"):
                    conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                    )
        rows.append(row("Postgres", base, single, grouped))
    table(
        [
            "store",
            "raw commits/s",
            "Store.save 1 run/commit",
            "vs raw",
            f"Store.save {a.group} runs/commit (runs/s)",
            "vs raw",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
