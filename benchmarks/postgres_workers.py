"""Runs per second with 1, 2 and 3 worker processes on one Postgres store.

Each worker is a process serving the same store (``open_jobs`` with the
system clock); ``instances`` continuous jobs with ``every(10 ms)`` keep them
busier than the store can follow, so what is measured is how many runs the
workers together commit per second. The ratios are against one worker: the
gain of adding processes before the store's commit path (one events-table
lock per transaction, shared by every worker) becomes the limit. Each
worker counts the runs it committed during ``seconds`` after a warm-up.

    .venv/bin/python benchmarks/postgres_workers.py [--quick] [--instances 200] [--seconds 5]

Postgres only: ``--stores`` without ``postgres`` prints a note and no rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import psycopg
import trio
from _common import header, parser, stores_arg, table
from psycopg import sql

import durable_jobs as dj

# Our own schema per run: two runs at once (two checkouts on one server) must not
# drop each other's tables.
SCHEMA = f"dj_bench_workers_{os.getpid()}"
WARM_UP = 2.0


def registry() -> dj.Registry:
    reg = dj.Registry()

    @reg.continuous("bench", state=int, schedule=dj.every(timedelta(milliseconds=10)))
    async def bench(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    return reg


async def worker(url: str, seconds: float) -> None:
    """Serve until the window ends; print the runs committed inside it."""
    window = [0.0, 0.0]
    runs = [0]

    def observe(record: dj.RecordedEvent) -> None:
        if record.name == "run_succeeded" and window[0] <= time.monotonic() < window[1]:
            runs[0] += 1

    async with dj.open_jobs(registry(), url, observers=[observe]):
        window[:] = [time.monotonic() + WARM_UP, time.monotonic() + WARM_UP + seconds]
        await trio.sleep(WARM_UP + seconds)
    print(runs[0], flush=True)


async def create(url: str, instances: int) -> None:
    async with dj.open_jobs(registry(), url, run_alarms=False) as jobs:
        client = jobs.continuous("bench")
        for k in range(instances):
            await client.start(f"i{k}", 0)


def drop_schema(base: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


def measure(base: str, workers: int, instances: int, seconds: float) -> float:
    """Runs per second committed by ``workers`` processes together."""
    drop_schema(base)
    url = f"{base}?schema={SCHEMA}"
    trio.run(create, url, instances)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", url, "--seconds", str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    total = 0
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a worker failed (exit {proc.returncode})")
        total += int(out.split()[-1])
    drop_schema(base)
    return total / seconds


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--instances", type=int, default=200)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--worker", metavar="URL", help=argparse_hidden())
    args = p.parse_args()
    if args.worker:
        trio.run(worker, args.worker, args.seconds)
        return
    if args.quick:
        args.instances, args.seconds = 5, 0.5
    header(f"Worker processes on one Postgres ({args.instances} instances, every 10 ms)")
    base = os.environ.get(
        "DURABLE_JOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ).split("?", 1)[0]
    rows: list[list[object]] = []
    if "postgres" not in stores_arg(args.stores):
        print("note: Postgres only, and it is not among --stores: no rows")
    else:
        try:
            psycopg.connect(base, connect_timeout=3).close()
        except psycopg.Error:
            print(f"note: Postgres at {base.rpartition('@')[2]} is unreachable: no rows")
        else:
            one = 0.0
            for workers in (1, 2, 3):
                rate = measure(base, workers, args.instances, args.seconds)
                one = one or rate
                rows.append(["Postgres", workers, rate, f"{rate / one:.2f}x" if one else "-"])
    table(["store", "worker processes", "runs/s", "vs 1 worker"], rows)


def argparse_hidden() -> str:
    """Help of the internal ``--worker`` flag (the script runs itself as a worker)."""
    return "internal: run as one worker on URL"


if __name__ == "__main__":
    main()
