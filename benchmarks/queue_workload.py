"""The queue workload on Postgres: ``--jobs`` task ``send`` -> ``execute`` once, against
pgqueuer and procrastinate on the same Postgres.

Ours: a task job whose ``on_event`` schedules its alarm now and whose
``execute`` does nothing; each job is a new instance. ``--in-flight`` sends at
a time, timed from the first send to the last ``execute`` done, with the CPU
time of the process per job. The peers run the same shape (enqueue one at a
time, as many in flight, one worker in the same process, no-op job) in their
own processes (asyncio), each in its own schema, dropped afterwards. A run is
bounded by ``--limit`` seconds: the jobs done by then are counted.

    .venv/bin/python benchmarks/queue_workload.py [--quick] [--jobs 10000] [--in-flight 64]
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

import trio
from _common import (
    HERE,
    Target,
    check_postgres,
    drop_schema,
    header,
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

import durable_jobs as dj


def ours(t: Target, jobs: int, in_flight: int, limit: float) -> tuple[int, float, float]:
    """(jobs done, jobs/s, CPU seconds per job)."""
    registry = dj.Registry()
    done = [0]
    all_done = trio.Event()

    @registry.task("q", event=int, state=int)
    async def q(ctx: dj.TaskContext[int]) -> None:
        done[0] += 1
        if done[0] >= jobs:
            all_done.set()

    @q.on_event
    async def enqueue(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(0))

    async def main() -> tuple[int, float, float]:
        async with dj.open_jobs(registry, t.url) as jobs_:
            client = jobs_.task(q)
            limiter = trio.Semaphore(in_flight)

            async def send(k: int) -> None:
                await client.send(f"j{k}", k)
                limiter.release()

            t0, cpu0 = time.perf_counter(), time.process_time()
            with trio.move_on_after(limit):
                async with trio.open_nursery() as nursery:
                    for k in range(jobs):
                        await limiter.acquire()
                        nursery.start_soon(send, k)
                await all_done.wait()
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            n = done[0]
        return n, n / elapsed, cpu / max(n, 1)

    return trio.run(main)


def peer(name: str, jobs: int, in_flight: int, limit: float) -> dict[str, float] | None:
    schema = unique(f"djb_{name}")
    args = [str(HERE / "_queue_child.py"), name, pg_url(), "--schema", schema]
    args += ["--jobs", str(jobs), "--in-flight", str(in_flight), "--limit", str(limit)]
    try:
        return run_child(args, timeout=limit + 120)
    finally:
        drop_schema(schema)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--limit", type=float, default=60.0, help="stop a run after this long")
    a = p.parse_args()
    if a.quick:
        a.jobs, a.limit = 30, 30.0
    header(f"Queue workload on Postgres: {a.jobs:,} jobs, {a.in_flight} sends in flight")
    stores = stores_arg(a.stores, allowed=("postgres",))
    if not stores:
        print("(Postgres is not among --stores: nothing to run)")
        table(["system", "jobs done", "jobs/s", "CPU/job", "ours vs it"], [])
        return
    check_postgres()
    with tempfile.TemporaryDirectory() as d, target("postgres", Path(d), "queue") as t:
        n, rate, cpu = ours(t, a.jobs, a.in_flight, a.limit)
    rows: list[list[object]] = [
        ["durable-jobs task send -> execute", n, rate, f"{cpu * 1e3:.2f} ms", None]
    ]
    for name in ("pgqueuer", "procrastinate"):
        result = None if peer_missing(name) else peer(name, a.jobs, a.in_flight, a.limit)
        if result is None:
            rows.append([name, None, None, None, None])
            continue
        rows.append(
            [
                name,
                int(result["done"]),
                result["jobs_per_s"],
                f"{result['cpu_per_job'] * 1e3:.2f} ms",
                ratio(rate, result["jobs_per_s"]),
            ]
        )
    table(["system", "jobs done", "jobs/s", "CPU/job", "ours vs it"], rows)


if __name__ == "__main__":
    main()
