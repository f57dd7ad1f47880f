"""``start`` / ``add`` / ``send`` calls per second on each store, many in flight.

Each call makes a new instance (continuous ``start``, debounce ``add``, task
``send``), ``--in-flight`` calls at a time, and returns after its commit. No
run becomes due while it is measured (the first run or flush is an hour
away), so this is the cost of the calls alone. Baseline: APScheduler 4's
``add_schedule`` on the same store (its own process), as many in flight.
"CPU per call" is this process's CPU time (all its threads) over the calls: less
sensitive to a loaded machine than the rates.

    .venv/bin/python benchmarks/client_calls.py [--quick] [--count 2000] [--in-flight 64]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import trio
from _common import (
    HERE,
    Target,
    check_postgres,
    drop_schema,
    header,
    parser,
    peer_missing,
    pg_url,
    ratio,
    run_child,
    stores_arg,
    table,
    target,
    unique,
)

import durable_jobs as dj

HOUR = timedelta(hours=1)


def registry() -> dj.Registry:
    reg = dj.Registry()

    @reg.continuous("c", state=int, schedule=dj.every(HOUR), start_immediately=False)
    async def c(ctx: dj.ContinuousContext[int]) -> None:
        pass

    @reg.debounce("d", event=int, flush_after=HOUR)
    async def d(ctx: dj.DebounceContext[int]) -> None:
        pass

    @reg.task("t", event=int, state=int)
    async def t(ctx: dj.TaskContext[int]) -> None:
        pass

    @t.on_event
    async def t_event(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.set_state(event)

    return reg


async def rate(
    call: Callable[[int], Awaitable[object]], count: int, in_flight: int
) -> tuple[float, float]:
    """(calls per second, CPU µs per call)."""
    limit = trio.Semaphore(in_flight)

    async def one(k: int) -> None:
        await call(k)
        limit.release()

    t0, cpu0 = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for k in range(count):
            await limit.acquire()
            nursery.start_soon(one, k)
    return count / (time.perf_counter() - t0), (time.process_time() - cpu0) / count * 1e6


def ours(t: Target, count: int, in_flight: int) -> dict[str, tuple[float, float]]:
    async def main() -> dict[str, tuple[float, float]]:
        async with dj.open_jobs(registry(), t.url) as jobs:
            c, d, task = jobs.continuous("c"), jobs.debounce("d"), jobs.task("t")
            return {
                "start": await rate(lambda k: c.start(f"c{k}", k), count, in_flight),
                "add": await rate(lambda k: d.add(f"d{k}", k), count, in_flight),
                "send": await rate(lambda k: task.send(f"t{k}", k), count, in_flight),
            }

    return trio.run(main)


def apscheduler(t: Target, tmp: Path, count: int, in_flight: int) -> float | None:
    schema = None
    if t.kind == "memory":
        url = "-"
    elif t.kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / (unique('aps') + '.db')}"
    else:
        schema = unique("djb_aps")
        url = pg_url().replace("postgresql://", "postgresql+asyncpg://", 1)
    args = [str(HERE / "_apscheduler_child.py"), "add", t.kind, url]
    args += ["--count", str(count), "--in-flight", str(in_flight)]
    if schema:
        args += ["--schema", schema]
    try:
        result = run_child(args, timeout=120 + count / 20)
    finally:
        if schema:
            drop_schema(schema)
    return float(result["calls_per_s"]) if result else None


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--in-flight", type=int, default=64)
    a = p.parse_args()
    if a.quick:
        a.count = 30
    stores = stores_arg(a.stores)
    header(f"start/add/send calls/s ({a.count} calls each, {a.in_flight} in flight)")
    if "postgres" in stores:
        check_postgres()
    no_aps = peer_missing("apscheduler")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in stores:
            with target(kind, tmp, "calls") as t:
                r = ours(t, a.count, a.in_flight)
            aps = None if no_aps else apscheduler(t, tmp, a.count, a.in_flight)
            cpu = " / ".join(f"{r[k][1]:,.0f}" for k in ("start", "add", "send"))
            rows.append(
                [
                    t.label,
                    r["start"][0],
                    r["add"][0],
                    r["send"][0],
                    f"{cpu} µs",
                    aps,
                    ratio(r["start"][0], aps),
                ]
            )
    table(
        [
            "store",
            "start/s",
            "add/s",
            "send/s",
            "CPU per call: start / add / send",
            "APScheduler 4 add_schedule/s",
            "start vs add_schedule",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
