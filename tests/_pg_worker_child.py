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

With a fourth argument ``serve`` it starts no instance (it only serves those
of the others); with ``produce`` it also makes client calls without end,
going on when one fails: ``add`` to the debounce job ``digest`` (``d1``) and,
every tenth, ``start`` of a new quick instance; it prints ``added <n>`` and
``started <id>`` once acknowledged, ``refused <n> <seconds the call took>``
when a call raised ``StoreError``.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta

import trio

import durable_jobs as dj

MS = timedelta(milliseconds=1)
# The library only has a NullHandler: the parent reads the warnings on stderr.
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


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

    @registry.debounce("digest", event=int, state=int, flush_after=50 * MS, max_events=5)
    async def digest(ctx: dj.DebounceContext[int]) -> None:
        pass

    @digest.on_event
    def count(ctx: dj.DebounceEventContext[int, int]) -> int:
        return (ctx.state or 0) + 1

    return registry


def observe(record: dj.RecordedEvent) -> None:
    say(f"commit {record.instance_id} {record.version} {record.name} {time.time():.6f}")


async def produce(jobs: dj.Jobs) -> None:
    n = 0
    while True:
        began = time.monotonic()
        try:
            if n % 10 == 0:
                await jobs.continuous("quick").start(f"c{n}", 0)
                say(f"started c{n}")
            else:
                await jobs.debounce("digest").add("d1", n, idempotency_key=f"k{n}")
                say(f"added {n}")
        except dj.StoreError:
            say(f"refused {n} {time.monotonic() - began:.3f}")
            await trio.sleep(0.05)
        n += 1
        await trio.sleep(0.01)


async def main(url: str, lease: float, slow_seconds: float, mode: str) -> None:
    registry = make_registry(slow_seconds)
    async with dj.open_jobs(registry, url, observers=[observe], lease=lease) as jobs:
        if mode != "serve":
            await jobs.continuous("slow").start("s1", 0)
            for name in ("q1", "q2"):
                await jobs.continuous("quick").start(name, 0)
        say("ready")
        if mode == "produce":
            await produce(jobs)
        await trio.sleep_forever()


if __name__ == "__main__":
    mode = sys.argv[4] if len(sys.argv) > 4 else ""
    trio.run(main, sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), mode)
