"""Runs per second through the trio runtime against the store alone, in one run.

``instances`` continuous jobs with ``every(1 s)`` run for ``seconds`` of
virtual time (trio's MockClock, so no real waiting: what is measured is the
runtime's work and the store's commits). The baseline is the same number of
run commits made directly with ``Store.save`` on the same kind of store: the
ratio is what the scheduler, locks, threads and handler calls cost on top.

    .venv/bin/python benchmarks/runtime_throughput.py [--instances 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import trio
import trio.testing
from psycopg import sql

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.instance import Intents

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE = dj.every(timedelta(seconds=1))


def baseline(url: str, runs: int, instances: int) -> float:
    """Run commits per second with Store.save, one instance per transaction."""
    with dj.open_store(url) as store:
        insts = [
            ContinuousInstance.start(None, "bench", f"i{k}", now=T0, state=0, first_run_at=T0)[0]
            for k in range(instances)
        ]
        store.save(*insts)
        start = time.perf_counter()
        done = 0
        n = 0
        while done < runs:
            n += 1
            for inst in insts:
                inst.complete_run(
                    inst.next_ticket(fresh=False),
                    Intents(state=n),
                    now=T0 + timedelta(seconds=n),
                    duration=0.0,
                    schedule=SCHEDULE,
                )
                store.save(inst)
                done += 1
        return done / (time.perf_counter() - start)


def through_runtime(url: str, seconds: int, instances: int) -> tuple[int, float]:
    """(runs, runs per second of real time) through open_jobs."""
    registry = dj.Registry()
    count = [0]

    @registry.continuous("bench", state=int, schedule=SCHEDULE)
    async def bench(ctx: dj.ContinuousContext[int]) -> None:
        count[0] += 1
        ctx.set_state(ctx.state + 1)

    async def main() -> float:
        async with dj.open_jobs(registry, url, clock=dj.VirtualClock(T0)) as jobs:
            client = jobs.continuous(bench)
            for k in range(instances):
                await client.start(f"i{k}", 0)
            await jobs.wait_idle()
            count[0] = 0
            start = time.perf_counter()
            await trio.sleep(seconds)
            await jobs.wait_idle()
            return time.perf_counter() - start

    elapsed = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return count[0], count[0] / elapsed


def postgres_reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def drop_schema(url: str) -> None:
    """Start each Postgres measurement on a fresh schema."""
    base, _, query = url.partition("?schema=")
    if query:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(query)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, str, str]] = [
            ("memory", "memory://", "memory://"),
            (
                "sqlite (synchronous=full)",
                f"sqlite:///{Path(tmp) / 'runtime.db'}",
                f"sqlite:///{Path(tmp) / 'baseline.db'}",
            ),
        ]
        pg = os.environ.get(
            "DURABLE_JOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        )
        if postgres_reachable(pg):
            stores += (("postgres", f"{pg}?schema=dj_bench_rt", f"{pg}?schema=dj_bench_base"),)
        else:
            print(f"(Postgres at {pg.rpartition('@')[2]} unreachable: skipped)")
        for label, runtime_url, baseline_url in stores:
            for url in (runtime_url, baseline_url):
                drop_schema(url)
            runs, ours = through_runtime(runtime_url, args.seconds, args.instances)
            base = baseline(baseline_url, runs, args.instances)
            for url in (runtime_url, baseline_url):
                drop_schema(url)
            print(
                f"{label:<28} runtime {ours:8.0f} runs/s   Store.save alone {base:8.0f} "
                f"commits/s   ratio {ours / base:.2f}x  ({runs} runs)"
            )


if __name__ == "__main__":
    main()
