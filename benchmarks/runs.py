"""Continuous runs per second on each store, against baselines measured in the same run.

Workload: ``--instances`` continuous instances with ``every(1 µs)`` and a no-op
handler, so each is due again as soon as its run commits; real time, for
``--seconds`` after a warm-up. Baselines on the same store:

- raw: 1-row commits per second with the bare driver (sqlite3 / psycopg), one
  transaction each (SQLite in WAL with synchronous=FULL, as our store);
- es save: eventsourcing's ``Application.save`` of one cached aggregate, one
  event per save, on the same persistence module;
- APScheduler 4 on the same store (its own process: its SQL store needs
  asyncio), with as many schedules, each due every 50 ms, a no-op task and no
  limit on concurrent jobs.

    .venv/bin/python benchmarks/runs.py [--quick] [--stores memory,sqlite,postgres]
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import trio
from _common import (
    HERE,
    Target,
    check_postgres,
    continuous_due,
    drop_schema,
    fill_pending,
    header,
    now_utc,
    parser,
    peer_missing,
    pg_url,
    ratio,
    run_child,
    stores_arg,
    table,
    target,
    unique,
)
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

import durable_jobs as dj


def ours(t: Target, instances: int, warmup: float, seconds: float) -> tuple[float, float]:
    """(runs/s, CPU seconds per run) through open_jobs."""
    registry = dj.Registry()
    count = [0]

    @registry.continuous("bench", state=int, schedule=dj.every(timedelta(microseconds=1)))
    async def bench(ctx: dj.ContinuousContext[int]) -> None:
        count[0] += 1

    store = dj.open_store(t.url)
    now = now_utc()
    fill_pending(
        store,
        "continuous",
        "bench",
        instances,
        functools.partial(continuous_due, now),
    )

    async def main() -> tuple[float, float]:
        async with dj.open_jobs(registry, store):
            await trio.sleep(warmup)
            before, t0, cpu0 = count[0], time.perf_counter(), time.process_time()
            await trio.sleep(seconds)
            done = count[0] - before
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return done / elapsed, cpu / max(done, 1)

    try:
        return trio.run(main)
    finally:
        store.close()


def raw_sqlite(path: Path, seconds: float) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?, ?)", (n, b"x" * 100))
        db.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - t0)
    db.close()
    return rate


def raw_postgres(seconds: float) -> float:
    schema = unique("djb_raw")
    try:
        with psycopg.connect(pg_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            table_name = sql.Identifier(schema, "t")
            conn.execute(
                sql.SQL("CREATE TABLE {} (k bigint PRIMARY KEY, v bytea)").format(table_name)
            )
            insert = sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table_name)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                conn.execute(insert, (n, b"x" * 100))
                n += 1
            return n / (time.perf_counter() - t0)
    finally:
        drop_schema(schema)


class Counter(Aggregate):
    def __init__(self) -> None:
        self.n = 0

    @event("Incremented")
    def increment(self) -> None:
        self.n += 1


def es_env(t: Target, tmp: Path) -> tuple[dict[str, str], str | None]:
    """eventsourcing settings for the same persistence as ``t`` (and a schema to drop)."""
    env = {"AGGREGATE_CACHE_MAXSIZE": "1000"}
    if t.kind == "sqlite":
        env |= {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp / (unique("es") + ".db")),
        }
        return env, None
    if t.kind == "postgres":
        info = psycopg.conninfo.conninfo_to_dict(pg_url())
        schema = unique("djb_es")
        with psycopg.connect(pg_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        env |= {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(info.get("dbname", "postgres")),
            "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(info.get("port", "5432")),
            "POSTGRES_USER": str(info.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(info.get("password", "")),
            "POSTGRES_SCHEMA": schema,
        }
        return env, schema
    return env, None


def es_save(t: Target, tmp: Path, seconds: float) -> float:
    """Saves per second of one cached aggregate, one event each."""
    env, schema = es_env(t, tmp)
    try:
        app: Application[Any] = Application(env=env)
        counter = Counter()
        app.save(counter)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            agg: Counter = app.repository.get(counter.id)
            agg.increment()
            app.save(agg)
            n += 1
        rate = n / (time.perf_counter() - t0)
        app.close()
        return rate
    finally:
        if schema:
            drop_schema(schema)


def apscheduler(t: Target, tmp: Path, instances: int, warmup: float, seconds: float) -> Any:
    schema = None
    if t.kind == "memory":
        url = "-"
    elif t.kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / (unique('aps') + '.db')}"
    else:
        schema = unique("djb_aps")
        url = pg_url().replace("postgresql://", "postgresql+asyncpg://", 1)
    args = [str(HERE / "_apscheduler_child.py"), "runs", t.kind, url]
    args += ["--instances", str(instances), "--warmup", str(warmup), "--seconds", str(seconds)]
    if schema:
        args += ["--schema", schema]
    try:
        return run_child(args, timeout=120 + instances / 20)
    finally:
        if schema:
            drop_schema(schema)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--instances", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--baseline-seconds", type=float, default=1.5)
    a = p.parse_args()
    if a.quick:
        a.instances, a.seconds, a.warmup, a.baseline_seconds = 20, 0.3, 0.1, 0.1
    stores = stores_arg(a.stores)
    header(f"Continuous runs/s ({a.instances} instances, every 1 µs, no-op handler)")
    if "postgres" in stores:
        check_postgres()
    no_aps = peer_missing("apscheduler")
    if not no_aps and any(s != "memory" for s in stores):
        print(
            f"note: APScheduler 4 on SQLite and Postgres runs {min(a.instances, 200)} schedules "
            "(adding thousands there takes minutes); each is always due, so it is saturated "
            "either way"
        )
        print()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in stores:
            with target(kind, tmp, "runs") as t:
                rate, cpu = ours(t, a.instances, a.warmup, a.seconds)
            raw = None
            if kind == "sqlite":
                raw = raw_sqlite(tmp / "raw.db", a.baseline_seconds)
            elif kind == "postgres":
                raw = raw_postgres(a.baseline_seconds)
            es = es_save(t, tmp, a.baseline_seconds)
            aps = None
            if not no_aps:
                aps_instances = a.instances if kind == "memory" else min(a.instances, 200)
                result = apscheduler(t, tmp, aps_instances, a.warmup, a.seconds)
                aps = result["runs_per_s"] if result else None
            rows.append(
                [
                    t.label,
                    rate,
                    f"{cpu * 1e6:.0f} µs",
                    raw,
                    ratio(rate, raw),
                    es,
                    ratio(rate, es),
                    aps,
                    ratio(rate, aps),
                ]
            )
    table(
        [
            "store",
            "runs/s",
            "CPU/run",
            "raw 1-row commits/s",
            "vs raw",
            "es save/s (cached)",
            "vs es save",
            "APScheduler 4 runs/s",
            "vs APScheduler",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
