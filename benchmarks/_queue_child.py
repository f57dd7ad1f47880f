"""pgqueuer or procrastinate running the queue workload, in its own process (asyncio).

Not a benchmark script of its own: ``queue_workload.py`` starts it and reads the JSON
object it prints last. The same workload as ours: ``--jobs`` jobs enqueued one
at a time, ``--in-flight`` enqueues at a time, while one worker in the same
process runs a no-op job for each; timed from the first enqueue to the last
job done. Everything lives in the schema ``--schema`` (the caller drops it).

    python benchmarks/_queue_child.py pgqueuer postgresql://... --schema s --jobs 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from typing import Any

DONE = [0]


async def enqueue_all(enqueue: Any, jobs: int, in_flight: int) -> None:
    sem = asyncio.Semaphore(in_flight)

    async def one(k: int) -> None:
        async with sem:
            await enqueue(k)

    await asyncio.gather(*(one(k) for k in range(jobs)))


async def wait_done(jobs: int, limit: float) -> None:
    deadline = time.perf_counter() + limit
    while DONE[0] < jobs and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)


async def pgqueuer(dsn: str, schema: str, jobs: int, in_flight: int, limit: float) -> None:
    os.environ["PGQUEUER_SCHEMA"] = schema
    import asyncpg
    from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Job, Queries, QueueManager

    settings = {"search_path": schema}
    conn = await asyncpg.connect(dsn, server_settings=settings)
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await Queries(AsyncpgDriver(conn)).install()
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=8, server_settings=settings)
    enqueuer = Queries(AsyncpgPoolDriver(pool))
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    async def noop(job: Job) -> None:
        DONE[0] += 1
        if DONE[0] >= jobs:
            qm.shutdown.set()

    qm.entrypoint("noop")(noop)  # called, not decorated: pgqueuer may be untyped here

    worker = asyncio.create_task(qm.run(batch_size=10))
    await asyncio.sleep(0.2)
    t0, cpu0 = time.perf_counter(), time.process_time()
    await enqueue_all(lambda k: enqueuer.enqueue("noop", str(k).encode()), jobs, in_flight)
    await wait_done(jobs, limit)
    report(jobs, t0, cpu0)
    qm.shutdown.set()
    await asyncio.wait_for(worker, 30)
    await pool.close()
    await conn.close()


async def procrastinate(dsn: str, schema: str, jobs: int, in_flight: int, limit: float) -> None:
    import psycopg
    from procrastinate import App, PsycopgConnector

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    app = App(
        connector=PsycopgConnector(
            conninfo=dsn, kwargs={"options": f"-c search_path={schema}"}, min_size=4, max_size=8
        )
    )

    async def noop(k: int) -> None:
        DONE[0] += 1

    task = app.task(name="noop")(noop)  # called, not decorated: may be untyped here

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(
                concurrency=10, delete_jobs="always", install_signal_handlers=False
            )
        )
        await asyncio.sleep(0.2)
        t0, cpu0 = time.perf_counter(), time.process_time()
        await enqueue_all(lambda k: task.defer_async(k=k), jobs, in_flight)
        await wait_done(jobs, limit)
        report(jobs, t0, cpu0)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(worker, 30)


RESULT: dict[str, Any] = {}


def report(jobs: int, t0: float, cpu0: float) -> None:
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    RESULT.update(done=DONE[0], jobs_per_s=DONE[0] / elapsed, cpu_per_job=cpu / max(DONE[0], 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("peer", choices=["pgqueuer", "procrastinate"])
    p.add_argument("dsn")
    p.add_argument("--schema", required=True)
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--limit", type=float, default=120.0)
    a = p.parse_args()
    run = pgqueuer if a.peer == "pgqueuer" else procrastinate
    asyncio.run(run(a.dsn, a.schema, a.jobs, a.in_flight, a.limit))
    print(json.dumps(RESULT))


if __name__ == "__main__":
    main()
