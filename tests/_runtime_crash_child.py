"""A jobs app that the runtime crash test SIGKILLs (see test_runtime_crash.py).

It serves three jobs on the given store with the system clock and prints one
line per fact the parent checks, flushed at once:

* ``commit <kind> <instance> <version> <name>`` for every committed record
  (the observer hook runs after the commit);
* ``added <n>`` once ``add`` of event ``n`` returned (acknowledged);
* ``sent <n>`` once ``send`` of event ``n`` returned.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import trio

import durable_jobs as dj
from _child_output import observe, say

MS = timedelta(milliseconds=1)


def make_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("beat", state=int, schedule=dj.every(20 * MS))
    async def beat(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    @registry.debounce("digest", event=int, state=list[int], flush_after=50 * MS, max_events=3)
    async def digest(ctx: dj.DebounceContext[list[int]]) -> None:
        await trio.sleep(0.005)

    @digest.on_event
    def fold(ctx: dj.DebounceEventContext[int, list[int]]) -> list[int]:
        return [*(ctx.state or []), ctx.event]

    @registry.task("ping", event=int, state=int)
    async def ping(ctx: dj.TaskContext[int]) -> None:
        ctx.set_state((ctx.state or 0) + 1)
        ctx.schedule(10 * MS)

    @ping.on_event
    async def on_ping(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(10 * MS)

    return registry


async def main(url: str, first: int) -> None:
    async with dj.open_jobs(make_registry(), url, observers=[observe]) as jobs:
        await jobs.continuous("beat").start("b1", 0)
        n = first
        while True:
            await jobs.debounce("digest").add("d1", n, idempotency_key=f"k{n}")
            say(f"added {n}")
            if n % 4 == 0:
                await jobs.task("ping").send("p1", n)
                say(f"sent {n}")
            n += 1
            await trio.sleep(0.002)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
