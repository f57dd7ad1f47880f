"""1, 2 and 3 worker processes serving one Postgres schema: continuous runs/s in total.

The workload of ``runs.py`` (``--instances`` continuous instances, ``every(1
µs)``, no-op handler) written once; then ``W`` processes each open
``open_jobs`` on the same schema at the same moment and count the runs their
handlers made during the same wall-clock window. Each instance's run is
claimed by one process at a time (the store's locks), so the sum is the
system's rate. The ratio compares with one process in the same run; "store
loads/run" counts the instances the workers loaded from the store (not in
their cache: first runs, or runs after another worker ran the instance).
The warm-up (5 s) lets each worker load its instances once before the window.

    .venv/bin/python benchmarks/workers.py [--quick] [--workers 1,2,3]
"""

from __future__ import annotations

import functools
import json
import subprocess
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
    stores_arg,
    table,
    target,
)

import durable_jobs as dj


def registry(count: list[int]) -> dj.Registry:
    reg = dj.Registry()

    @reg.continuous("bench", state=int, schedule=dj.every(timedelta(microseconds=1)))
    async def bench(ctx: dj.ContinuousContext[int]) -> None:
        count[0] += 1

    return reg


def child(url: str, warmup: float, seconds: float) -> None:
    """In a worker process: once imported, say so; serve from the start time the parent
    sends (when every worker is ready), count runs in the shared window."""
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    count = [0]

    async def main() -> dict[str, float]:
        async with dj.open_jobs(registry(count), url) as jobs:
            await trio.sleep(max(0.0, start + warmup - time.time()))
            before, cpu0 = count[0], time.process_time()
            loads = jobs.statistics().cache_misses
            await trio.sleep(max(0.0, start + warmup + seconds - time.time()))
            return {
                "runs": count[0] - before,
                "cpu": time.process_time() - cpu0,
                "loads": jobs.statistics().cache_misses - loads,
            }

    print(json.dumps(trio.run(main)))


def measure(url: str, workers: int, warmup: float, seconds: float) -> tuple[float, float, float]:
    """(runs/s in total, CPU seconds per run summed over the workers, instances loaded
    from the store per run: a worker loads one it does not hold in its cache, as after
    another worker ran it)."""
    args = ["--child", url, str(warmup), str(seconds)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    # Imports take seconds on a loaded machine: the window starts once every worker
    # has imported, so that none of it is spent with fewer workers than counted.
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"a worker process failed (exit {proc.wait()})")
    start = time.time() + 0.5
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start}\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=start - time.time() + warmup + seconds + 120)
        if proc.returncode != 0:
            raise SystemExit(f"a worker process failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    runs = sum(r["runs"] for r in results)
    cpu = sum(r["cpu"] for r in results)
    loads = sum(r["loads"] for r in results)
    return runs / seconds, cpu / max(runs, 1), loads / max(runs, 1)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
        return
    p = parser(__doc__)
    p.add_argument("--workers", default="1,2,3")
    p.add_argument("--instances", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=5.0)
    # Long enough for every worker to have loaded its instances once: the window
    # measures the steady state, not each worker's first load of each instance.
    p.add_argument("--warmup", type=float, default=5.0)
    a = p.parse_args()
    if a.quick:
        a.workers, a.instances, a.seconds, a.warmup = "1,2", 20, 0.3, 0.2
    counts = [int(w) for w in a.workers.split(",") if w.strip()]
    header(
        f"Worker processes on one Postgres schema ({a.instances} continuous instances, "
        "every 1 µs, no-op handler)"
    )
    columns = [
        "store",
        "worker processes",
        "runs/s (all)",
        "CPU/run (all)",
        "store loads/run",
        "vs 1 process",
    ]
    if not stores_arg(a.stores, allowed=("postgres",)):
        print("(Postgres is not among --stores: nothing to run)")
        table(columns, [])
        return
    check_postgres()
    rows = []
    one = None
    with tempfile.TemporaryDirectory() as d:
        for workers in counts:
            with target("postgres", Path(d), "workers") as t:
                store = open_target(t)
                now = now_utc()
                fill_pending(
                    store,
                    "continuous",
                    "bench",
                    a.instances,
                    functools.partial(continuous_due, now),
                )
                store.close()
                rate, cpu, loads = measure(t.url, workers, a.warmup, a.seconds)
            one = rate if workers == 1 else one
            ratio = f"{rate / one:.2f}x" if one else None
            rows.append([t.label, workers, rate, f"{cpu * 1e6:.0f} µs", f"{loads:.2f}", ratio])
    table(columns, rows)


if __name__ == "__main__":
    main()
