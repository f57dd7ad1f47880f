"""APScheduler 4 on one store, in its own process (its SQL store needs asyncio).

Not a benchmark script of its own: ``runs.py`` and ``client_calls.py`` start it
and read the JSON object it prints last.

    python benchmarks/_apscheduler_child.py runs memory - --instances 2000 --seconds 5
    python benchmarks/_apscheduler_child.py add sqlite sqlite+aiosqlite:///x.db --count 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import timedelta
from typing import Any

from apscheduler import AsyncScheduler, ConflictPolicy, TaskDefaults
from apscheduler.abc import DataStore
from apscheduler.datastores.memory import MemoryDataStore
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.triggers.interval import IntervalTrigger

RUNS = [0]


async def noop() -> None:
    RUNS[0] += 1


def data_store(kind: str, url: str, schema: str | None) -> DataStore:
    if kind == "memory":
        return MemoryDataStore()
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    if kind == "sqlite":

        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        # A plain call, not the decorator: typed the same with or without sqlalchemy.
        event.listen(engine.sync_engine, "connect", _pragmas)

    return SQLAlchemyDataStore(engine, schema=schema)


async def runs(
    store: DataStore, instances: int, interval: float, warmup: float, seconds: float
) -> dict[str, Any]:
    """Runs/s of ``instances`` schedules due every ``interval`` seconds, no-op task.

    The interval is short enough that every schedule is always due (the
    scheduler is saturated), and long enough that APScheduler's catching up
    of missed fire times (one trigger step each, coalesced) stays small.
    """
    # Any number of the no-op task's jobs may run at once (its default is 1).
    defaults = TaskDefaults(max_running_jobs=None)
    async with AsyncScheduler(
        store, cleanup_interval=timedelta(hours=1), task_defaults=defaults
    ) as scheduler:
        for k in range(instances):
            await scheduler.add_schedule(
                noop,
                IntervalTrigger(seconds=interval),
                id=f"s{k}",
                conflict_policy=ConflictPolicy.replace,
            )
        await scheduler.start_in_background()
        await asyncio.sleep(warmup)
        before, t0, cpu0 = RUNS[0], time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        done, elapsed = RUNS[0] - before, time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        await scheduler.stop()
    return {"runs": done, "runs_per_s": done / elapsed, "cpu_per_run": cpu / max(done, 1)}


async def add(store: DataStore, count: int, in_flight: int) -> dict[str, Any]:
    """add_schedule calls/s, ``in_flight`` at a time, each a new schedule due in an hour."""
    async with AsyncScheduler(store, cleanup_interval=timedelta(hours=1)) as scheduler:
        await scheduler.add_schedule(noop, IntervalTrigger(hours=1), id="warm")
        sem = asyncio.Semaphore(in_flight)

        async def one(k: int) -> None:
            async with sem:
                await scheduler.add_schedule(
                    noop, IntervalTrigger(hours=1), id=f"a{k}", paused=False
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(count)))
        elapsed = time.perf_counter() - t0
    return {"calls": count, "calls_per_s": count / elapsed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["runs", "add"])
    p.add_argument("kind", choices=["memory", "sqlite", "postgres"])
    p.add_argument("url")
    p.add_argument("--schema")
    p.add_argument("--instances", type=int, default=2000)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--in-flight", type=int, default=64)
    a = p.parse_args()
    store = data_store(a.kind, a.url, a.schema)
    if a.mode == "runs":
        result = asyncio.run(runs(store, a.instances, a.interval, a.warmup, a.seconds))
    else:
        result = asyncio.run(add(store, a.count, a.in_flight))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
