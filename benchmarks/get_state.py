"""``get_state`` on an instance with a long log (default 100,000 events).

One continuous instance gets ``--events`` events (runs committed through
``Store.save`` a thousand at a time, snapshots on as by default); then, under
``open_jobs``, ``get_state`` is timed once cold and ``--repeat`` times after:
p50 and p99. For scale, the same store's ``Store.get`` (a rebuild from the
latest snapshot plus the events after it, no cache) is timed as often.

    .venv/bin/python benchmarks/get_state.py [--quick] [--events 100000]
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

import trio
from _common import (
    check_postgres,
    header,
    now_utc,
    open_target,
    parser,
    percentile,
    stores_arg,
    table,
    target,
)

import durable_jobs as dj
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.instance import Intents
from durable_jobs._store.base import Store

SCHEDULE = dj.every(timedelta(minutes=1))


def fill(store: Store, events: int) -> int:
    """Give instance "long" about ``events`` events; returns its version."""
    t0 = now_utc() + timedelta(days=365)  # its next alarm stays in the future
    inst, _ = ContinuousInstance.start(None, "bench", "long", now=t0, state=0, first_run_at=t0)
    n = 0
    while inst.version < events:
        for _ in range(min(1000, (events - inst.version) // 3 + 1)):
            n += 1
            inst.complete_run(
                inst.next_ticket(fresh=False),
                Intents(state=n),
                now=t0 + timedelta(minutes=n),
                duration=0.0,
                schedule=SCHEDULE,
            )
        store.save(inst)
    return int(inst.version)


def measure(store: Store, repeat: int) -> tuple[float, list[float], list[float]]:
    registry = dj.Registry()

    @registry.continuous("bench", state=int, schedule=SCHEDULE)
    async def bench(ctx: dj.ContinuousContext[int]) -> None:
        pass

    async def main() -> tuple[float, list[float]]:
        async with dj.open_jobs(registry, store) as jobs:
            client = jobs.continuous(bench)
            t0 = time.perf_counter()
            await client.get_state("long")
            cold = time.perf_counter() - t0
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                await client.get_state("long")
                times.append(time.perf_counter() - t0)
        return cold, times

    cold, times = trio.run(main)
    rebuilds = []
    for _ in range(max(3, repeat // 10)):
        t0 = time.perf_counter()
        store.get("continuous", "bench", "long")
        rebuilds.append(time.perf_counter() - t0)
    return cold, times, rebuilds


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=200)
    a = p.parse_args()
    if a.quick:
        a.events, a.repeat = 300, 10
    stores = stores_arg(a.stores)
    header(f"get_state on an instance with {a.events:,} events")
    if "postgres" in stores:
        check_postgres()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for kind in stores:
            with target(kind, Path(d), "state") as t:
                store = open_target(t)
                try:
                    t0 = time.perf_counter()
                    version = fill(store, a.events)
                    took = time.perf_counter() - t0
                    cold, times, rebuilds = measure(store, a.repeat)
                finally:
                    store.close()
            rows.append(
                [
                    t.label,
                    version,
                    f"{percentile(times, 0.5) * 1e3:.3f} ms",
                    f"{percentile(times, 0.99) * 1e3:.3f} ms",
                    f"{cold * 1e3:.2f} ms",
                    f"{percentile(rebuilds, 0.5) * 1e3:.2f} ms",
                    f"{took:.0f} s",
                ]
            )
    table(
        [
            "store",
            "events",
            "get_state p50",
            "get_state p99",
            "first get_state",
            "Store.get p50 (no cache)",
            "fill took",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
