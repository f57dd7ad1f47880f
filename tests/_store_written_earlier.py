"""Wrote ``stores_written_earlier/store-2026-12.db``: a small SQLite store of every kind.

``tests/test_stores_written_earlier.py`` opens the committed file with the
current code; this script is how it was made (``python
tests/_store_written_earlier.py``), and its :func:`registry` the jobs the test
runs on it. The tests never rewrite the file: the point of it is that it stays
as that code wrote it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
import trio.testing

import durable_jobs as dj

T = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
HERE = Path(__file__).parent / "stores_written_earlier"


def registry() -> dj.Registry:
    """The jobs the stored file holds (the test defines the same ones)."""
    reg = dj.Registry()

    @reg.continuous("tick", state=int, schedule=dj.every(HOUR))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        ctx.set_state(ctx.state + 1)

    @reg.debounce(
        "collect",
        event=int,
        state=list[int],
        flush_after=HOUR,
        max_events=3,
        retry=dj.Retry(max_attempts=50, delay=timedelta(days=1), jitter=0),
    )
    async def collect(ctx: dj.DebounceContext[list[int]]) -> None:
        if ctx.instance_id == "d-4":
            raise RuntimeError("d-4 keeps failing")

    @collect.on_event
    def fold(ctx: dj.DebounceEventContext[int, list[int]]) -> Any:
        return [*(ctx.state or []), ctx.event]

    @reg.task("inbox", event=str, state=list[str])
    async def inbox(ctx: dj.TaskContext[list[str]]) -> None:
        if ctx.instance_id == "t-1":
            ctx.terminate("done")

    @inbox.on_event
    async def received(event: str, ctx: dj.TaskContext[list[str]]) -> None:
        ctx.set_state([*(ctx.state or []), event])
        ctx.schedule(HOUR)

    return reg


async def write(url: str | dj.Store) -> None:
    async with dj.open_jobs(registry(), url, clock=dj.VirtualClock(T), poll_interval=None) as jobs:
        await jobs.continuous("tick").start("c-1", 0)
        deb = jobs.debounce("collect")
        for n in range(7):  # two batches closed by max_events, then one open batch
            await deb.add("d-1", n)
        await jobs.wait_idle()
        await deb.add("d-2", 1)
        await deb.clear("d-2")
        await deb.add("d-3", 5)
        await deb.flush("d-3")
        await jobs.task("inbox").send("t-1", "hello")
        await jobs.task("inbox").send("t-2", "kept")
        await jobs.wait_idle()
        for n in range(4):  # a closed batch whose flush keeps failing, and an open one
            await deb.add("d-4", n)
        await trio.sleep((3 * HOUR).total_seconds())
        await jobs.wait_idle()
        await deb.add("d-5", 9)  # an open batch, not yet due


def main() -> None:
    target = HERE / "store-2026-12.db"
    if target.exists():
        sys.exit(f"{target} exists: it is the file as earlier code wrote it; keep it.")
    # snapshot_interval=3: snapshots of every kind are stored as well as events.
    store = dj.open_store(f"sqlite:///{target}", snapshot_interval=3)
    trio.run(write, store, clock=trio.testing.MockClock(autojump_threshold=0))
    store.close()


if __name__ == "__main__":
    main()
