"""The app of ``test_runtime_interrupt.test_ctrl_c_in_a_child_process``.

``python tests/_interrupt_child.py URL serve``: starts ``slow`` (awaits 2 s, then adds
1), then ``sync``, whose handler sleeps synchronously (``time.sleep``) until the test
sends SIGINT; ``shutdown_grace`` is 10 s. ``... URL check``: serves the store until
everything due has run, then prints one ``CHECKED`` line saying what it holds.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import trio

import durable_jobs as dj

registry = dj.Registry()
MODE = sys.argv[2]
slow_started = trio.Event()


@registry.continuous("slow", state=int, schedule=dj.every(timedelta(hours=1)))
async def slow(ctx: dj.ContinuousContext[int]) -> None:
    print("slow started", flush=True)
    slow_started.set()
    await trio.sleep(2)
    ctx.set_state(ctx.state + 1)
    print("slow returned", flush=True)


@registry.continuous(
    "sync", state=int, schedule=dj.every(timedelta(hours=1)), retry=dj.Retry(max_attempts=1)
)
async def sync(ctx: dj.ContinuousContext[int]) -> None:
    print("sync started", flush=True)
    if MODE == "serve":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # blocking work, until Ctrl+C
            time.sleep(0.01)
    ctx.set_state(ctx.state + 1)
    print("sync returned", flush=True)


async def main(url: str) -> None:
    async with dj.open_jobs(registry, url, shutdown_grace=10) as jobs:
        if MODE == "serve":
            await jobs.continuous(slow).start("s", 0)
            await slow_started.wait()  # then slow's run awaits, in flight
            await jobs.continuous(sync).start("x", 0)
            await trio.sleep_forever()
        await jobs.wait_idle()
        s = jobs.continuous(sync)
        status = await s.status("x")
        failed = [r for r in await s.history("x") if r.name == "run_failed"]
        print(
            "CHECKED slow",
            await jobs.continuous(slow).get_state("s"),
            "sync",
            status.status,
            status.run_count,
            await s.get_state("x"),
            "failed",
            len(failed),
            flush=True,
        )


trio.run(main, sys.argv[1])
