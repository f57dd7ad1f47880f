"""Debounce adds and flushes per second with a fixed and a sliding window, on each store.

A sliding window records one more alarm change per ``add`` (the flush moves);
this measures what that costs. Real time, no-op handlers, a list reducer:

- adds/s: ``--adders`` concurrent callers add to ``--instances`` instances for
  ``--seconds`` (``flush_after`` 1 hour: nothing flushes);
- flushes/s: one event in each of ``--batches`` instances, ``flush_after``
  10 ms, timed until every batch has flushed.

    .venv/bin/python benchmarks/debounce_windows.py [--quick] [--stores memory,sqlite,postgres]
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import trio
from _common import Target, check_postgres, header, parser, ratio, stores_arg, table, target

import durable_jobs as dj


def make_registry(window: str, flush_after: timedelta) -> tuple[dj.Registry, Any, list[int]]:
    registry = dj.Registry()
    flushed = [0]
    sliding = window == "sliding"

    @registry.debounce(
        "bench",
        event=int,
        state=list[int],
        flush_after=flush_after,
        window="sliding" if sliding else "fixed",
        max_wait=10 * flush_after if sliding else None,
    )
    async def bench(ctx: dj.DebounceContext[list[int]]) -> None:
        flushed[0] += 1

    @bench.on_event
    def collect(ctx: dj.DebounceEventContext[int, list[int]]) -> list[int]:
        return [*(ctx.state or [])[-9:], ctx.event]

    return registry, bench, flushed


def adds_per_second(t: Target, window: str, instances: int, adders: int, seconds: float) -> float:
    registry, job, _ = make_registry(window, timedelta(hours=1))

    async def main() -> float:
        done = [0]
        async with dj.open_jobs(registry, t.url) as jobs:
            client = jobs.debounce(job)
            deadline = trio.current_time() + seconds

            async def adder(k: int) -> None:
                n = 0
                while trio.current_time() < deadline:
                    await client.add(f"i{(k + n * adders) % instances}", n)
                    n += 1
                    done[0] += 1

            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for k in range(adders):
                    nursery.start_soon(adder, k)
            return done[0] / (time.perf_counter() - t0)

    return trio.run(main)


def flushes_per_second(t: Target, window: str, batches: int) -> float:
    registry, job, flushed = make_registry(window, timedelta(milliseconds=10))

    async def main() -> float:
        async with dj.open_jobs(registry, t.url) as jobs:
            client = jobs.debounce(job)
            async with trio.open_nursery() as nursery:
                for k in range(batches):
                    nursery.start_soon(client.add, f"i{k}", k)
            t0 = time.perf_counter()
            while flushed[0] < batches:
                await trio.sleep(0.005)
            return batches / (time.perf_counter() - t0)

    return trio.run(main)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--instances", type=int, default=50)
    p.add_argument("--adders", type=int, default=20)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--batches", type=int, default=300)
    a = p.parse_args()
    if a.quick:
        a.instances, a.adders, a.seconds, a.batches = 5, 4, 0.3, 20
    stores = stores_arg(a.stores)
    if "postgres" in stores:
        check_postgres()
    header(
        f"Debounce, fixed vs sliding window ({a.adders} adders on {a.instances} instances, "
        f"{a.batches} batches)"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for kind in stores:
            figures: dict[str, tuple[float, float]] = {}
            for window in ("fixed", "sliding"):
                with target(kind, tmp, "adds") as t:
                    adds = adds_per_second(t, window, a.instances, a.adders, a.seconds)
                with target(kind, tmp, "flushes") as t:
                    flushes = flushes_per_second(t, window, a.batches)
                figures[window] = (adds, flushes)
            fixed, slide = figures["fixed"], figures["sliding"]
            rows.append(
                [
                    kind,
                    fixed[0],
                    slide[0],
                    ratio(slide[0], fixed[0]),
                    fixed[1],
                    slide[1],
                    ratio(slide[1], fixed[1]),
                ]
            )
    table(
        [
            "store",
            "adds/s fixed",
            "adds/s sliding",
            "sliding/fixed",
            "flushes/s fixed",
            "flushes/s sliding",
            "sliding/fixed",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
