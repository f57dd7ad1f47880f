"""A jobs app whose handlers write with ``ctx.execute``, for test_execute_crash.py to SIGKILL.

``python _execute_crash_child.py URL MODE FIRST``; the ``writes`` table (no
unique key: a run committed twice would show as two rows) must exist.

* ``loop``: a continuous job every 20 ms inserts ``('beat', run_count)``; a
  task's ``on_event`` inserts ``('send', event)``; the app sends events
  ``FIRST, FIRST+1, ...``. Lines: ``commit <kind> <instance> <version> <name>``
  after each commit (the observer hook), ``sent <n>`` once ``send`` returned.
* ``hang``: the same continuous job; the commit of its run 3 stops inside the
  store transaction, after its statements ran and before it commits, and says
  ``hanging`` (the parent then kills the process).
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import trio

import durable_jobs as dj
from _child_output import observe, say

MS = timedelta(milliseconds=1)
HANG_AT_RUN = 3


def placeholder(url: str) -> str:
    return "%s" if url.startswith("postgres") else "?"


def make_registry(url: str, hang: dict[str, bool]) -> dj.Registry:
    p = placeholder(url)
    insert = f"INSERT INTO writes (what, n) VALUES ({p}, {p})"
    registry = dj.Registry()

    @registry.continuous("beat", state=int, schedule=dj.every(20 * MS))
    async def beat(ctx: dj.ContinuousContext[int]) -> None:
        ctx.execute(insert, ("beat", ctx.run_count))
        ctx.set_state(ctx.state + 1)
        if ctx.run_count == HANG_AT_RUN:
            hang["now"] = True

    @registry.task("ping", event=int, state=int)
    async def ping(ctx: dj.TaskContext[int]) -> None:
        pass

    @ping.on_event
    async def on_ping(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.execute(insert, ("send", event))
        ctx.set_state(event)

    return registry


async def main(url: str, mode: str, first: int) -> None:
    hang = {"now": False}
    store = dj.open_store(url)

    def in_transaction() -> None:
        if hang["now"]:
            say("hanging")
            time.sleep(3600)  # inside the open transaction, in the store's thread

    if mode == "hang":
        store.index.fault_hook = in_transaction
    async with dj.open_jobs(make_registry(url, hang), store, observers=[observe]) as jobs:
        await jobs.continuous("beat").start("b1", 0)
        n = first
        while True:
            if mode == "loop":
                await jobs.task("ping").send("p1", n)
                say(f"sent {n}")
                n += 1
            await trio.sleep(0.003)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
