"""Startup with many pending alarms: time until ``open_jobs`` is ready, and RSS.

``--alarms`` continuous instances (default 1,000,000), each with an alarm a day
ahead, are written to a SQLite file and a Postgres schema (the rows
``Store.save`` writes, made from one template instance). A fresh process then
opens the store and enters ``open_jobs``; it reports the seconds until the
block's body starts (the runtime has loaded its alarm window and is serving)
and its resident memory then. Baseline: the same process's RSS after
importing durable_jobs and opening the store, before ``open_jobs``.

    .venv/bin/python benchmarks/startup.py [--quick] [--alarms 1000000]
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import trio
from _common import (
    check_postgres,
    continuous_due,
    fill_pending,
    header,
    now_utc,
    open_target,
    parser,
    rss_mb,
    run_child,
    stores_arg,
    table,
    target,
)

import durable_jobs as dj


def child(url: str) -> None:
    """In the fresh process: open, time open_jobs until ready, report RSS."""
    registry = dj.Registry()

    @registry.continuous("bench", state=int, schedule=dj.every(timedelta(hours=1)))
    async def bench(ctx: dj.ContinuousContext[int]) -> None:
        pass

    store = dj.open_store(url)
    before = rss_mb()

    async def main() -> float:
        t0 = time.perf_counter()
        async with dj.open_jobs(registry, store):
            return time.perf_counter() - t0

    ready = trio.run(main)
    print(json.dumps({"ready_s": ready, "rss_mb": rss_mb(), "rss_before_mb": before}))
    store.close()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    p = parser(__doc__)
    p.add_argument("--alarms", type=int, default=1_000_000)
    a = p.parse_args()
    if a.quick:
        a.alarms = 200
    stores = [s for s in stores_arg(a.stores) if s != "memory"]
    header(f"Startup with {a.alarms:,} pending alarms (N = {a.alarms:,})")
    print("(memory is left out: a new process starts with an empty memory store)")
    print()
    if "postgres" in stores:
        check_postgres()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for kind in stores:
            with target(kind, Path(d), "start") as t:
                store = open_target(t)
                due = now_utc() + timedelta(days=1)
                t0 = time.perf_counter()
                fill_pending(
                    store,
                    "continuous",
                    "bench",
                    a.alarms,
                    functools.partial(continuous_due, due),
                    batch=10_000,
                )
                fill = time.perf_counter() - t0
                store.close()
                result = run_child([__file__, "--child", t.url], timeout=300)
                if result is None:
                    rows.append([t.label, a.alarms, None, None, None, f"{fill:.0f} s"])
                    continue
                rows.append(
                    [
                        t.label,
                        a.alarms,
                        f"{result['ready_s'] * 1e3:.0f} ms",
                        f"{result['rss_mb']:.0f} MB",
                        f"{result['rss_before_mb']:.0f} MB",
                        f"{fill:.0f} s",
                    ]
                )
    table(
        [
            "store",
            "pending alarms",
            "ready after",
            "RSS when ready",
            "RSS before open_jobs",
            "fill took",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
