"""Continuous runs per second with and without ``ctx.execute``, on SQLite and Postgres.

Workload (as ``runs.py``): ``--instances`` continuous instances with
``every(1 µs)``, so each is due again as soon as its run commits; real time,
for ``--seconds`` after a warm-up. The handler sets the state; with writes it
also records one ``INSERT`` into the app's own table, which runs in the run's
commit. The ratio is runs/s with writes over runs/s without, measured in the
same run on the same kind of store: ``--rounds`` alternating measurements of
each (a fresh store each), and the median of each is shown, so that a busy
machine's swings do not land on one side only. The memory store has no
``ctx.execute``.

    .venv/bin/python benchmarks/execute_writes.py [--quick] [--stores sqlite,postgres]
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import trio
from _common import (
    Target,
    check_postgres,
    continuous_due,
    fill_pending,
    header,
    median,
    now_utc,
    parser,
    pg_url,
    ratio,
    stores_arg,
    table,
    target,
)
from psycopg import sql

import durable_jobs as dj


def create_table(t: Target) -> None:
    """The app's table, next to the store's (which exist already)."""
    if t.kind == "sqlite":
        db = sqlite3.connect(t.url.removeprefix("sqlite:///"))
        with db:
            db.execute("CREATE TABLE app_rows (instance TEXT, n INTEGER)")
        db.close()
    else:
        assert t.schema is not None
        with psycopg.connect(pg_url(), autocommit=True) as conn:
            table_name = sql.Identifier(t.schema, "app_rows")
            conn.execute(sql.SQL("CREATE TABLE {} (instance text, n bigint)").format(table_name))


def runs_per_second(
    t: Target, writes: bool, instances: int, warmup: float, seconds: float
) -> float:
    registry = dj.Registry()
    count = [0]
    p = "%s" if t.kind == "postgres" else "?"
    insert = f"INSERT INTO app_rows (instance, n) VALUES ({p}, {p})"

    @registry.continuous("bench", state=int, schedule=dj.every(timedelta(microseconds=1)))
    async def bench(ctx: dj.ContinuousContext[int]) -> None:
        count[0] += 1
        if writes:
            ctx.execute(insert, (ctx.instance_id, ctx.run_count))
        ctx.set_state(ctx.run_count)

    store = dj.open_store(t.url)
    create_table(t)
    fill_pending(
        store, "continuous", "bench", instances, functools.partial(continuous_due, now_utc())
    )

    async def main() -> float:
        async with dj.open_jobs(registry, store):
            await trio.sleep(warmup)
            before, t0 = count[0], time.perf_counter()
            await trio.sleep(seconds)
            return (count[0] - before) / (time.perf_counter() - t0)

    try:
        return trio.run(main)
    finally:
        store.close()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--instances", type=int, default=200)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    warmup = 1.0
    if a.quick:
        a.instances, a.seconds, a.rounds, warmup = 10, 0.3, 1, 0.1
    stores = stores_arg(a.stores, allowed=("sqlite", "postgres"))
    if "postgres" in stores:
        check_postgres()
    header(f"Continuous runs with and without ctx.execute ({a.instances} instances, every 1 µs)")
    if "memory" in a.stores:
        print("note: the memory store has no ctx.execute; measured on SQLite and Postgres only")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for kind in stores:
            figures: dict[bool, list[float]] = {False: [], True: []}
            for n in range(a.rounds):
                order = (False, True) if n % 2 == 0 else (True, False)
                for writes in order:
                    with target(kind, tmp, "execute") as t:
                        rate = runs_per_second(t, writes, a.instances, warmup, a.seconds)
                    figures[writes].append(rate)
            without, with_ = median(figures[False]), median(figures[True])
            rows.append([kind, without, with_, ratio(with_, without)])
    table(
        ["store", "runs/s without (median)", "runs/s with ctx.execute (median)", "with/without"],
        rows,
    )


if __name__ == "__main__":
    main()
