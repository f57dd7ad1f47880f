"""A worker process for the Postgres lock-loss, lease and outage tests.

``python _pg_worker_child.py URL LEASE_SECONDS SLOW_SECONDS`` serves two
continuous jobs on the store with the system clock and prints, flushed at
once, one line per fact the parent checks (times are ``time.time()``):

* ``ready`` once ``open_jobs`` serves and the instances are started;
* ``start <instance> <time>`` when a handler starts, and
  ``end <instance> <time> ok|cancelled`` when it ends;
* ``commit <instance> <version> <name> <time>`` for every committed record.

``slow`` (instance ``s1``) runs for SLOW_SECONDS; ``quick`` (``q1``, ``q2``)
runs briefly every 100 ms.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import trio

import durable_jobs as dj

MS = timedelta(milliseconds=1)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_registry(slow_seconds: float) -> dj.Registry:
    registry = dj.Registry()

    async def run(ctx: dj.ContinuousContext[int], seconds: float) -> None:
        say(f"start {ctx.instance_id} {time.time():.6f}")
        outcome = "cancelled"
        try:
            await trio.sleep(seconds)
            ctx.set_state(ctx.state + 1)
            outcome = "ok"
        finally:
            say(f"end {ctx.instance_id} {time.time():.6f} {outcome}")

    @registry.continuous("slow", state=int, schedule=dj.every(100 * MS))
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        await run(ctx, slow_seconds)

    @registry.continuous("quick", state=int, schedule=dj.every(100 * MS))
    async def quick(ctx: dj.ContinuousContext[int]) -> None:
        await run(ctx, 0.01)

    return registry


def observe(record: dj.RecordedEvent) -> None:
    say(f"commit {record.instance_id} {record.version} {record.name} {time.time():.6f}")


async def main(url: str, lease: float, slow_seconds: float) -> None:
    registry = make_registry(slow_seconds)
    async with dj.open_jobs(registry, url, observers=[observe], lease=lease) as jobs:
        await jobs.continuous("slow").start("s1", 0)
        for name in ("q1", "q2"):
            await jobs.continuous("quick").start(name, 0)
        say("ready")
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
