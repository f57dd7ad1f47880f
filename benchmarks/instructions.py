"""Instructions per run and per queue job, counted by valgrind's callgrind: a repeatable
figure for comparing two commits on a busy machine.

Timings move with whatever else the machine does; instruction counts do not
(within about 1.5% here). Each workload is run twice in a fresh process under
``valgrind --tool=callgrind``, with a small and a large amount of fixed work;
the difference of the two totals, divided by the difference in work, is the
cost of one unit without the start-up (imports, opening the store):

- ``runs``: continuous runs (``--instances`` instances, ``every(1 µs)``, a
  no-op handler, each due again as soon as its run commits);
- ``queue``: task jobs, ``send`` -> ``execute`` once (a new instance per job,
  64 sends in flight), as in ``queue_workload.py``.

Counts include the store driver's C code (SQLite's, libpq's) but not the
Postgres server's work, nor time spent waiting. To compare two commits, run it
in a checkout of each. Not part of ``make bench`` (callgrind runs about fifty
times slower than the program): run it on its own.

    .venv/bin/python benchmarks/instructions.py [--quick] [--stores ...] [--workloads runs,queue]
"""

from __future__ import annotations

import functools
import json
import re
import shutil
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
    parser,
    stores_arg,
    table,
    target,
)

import durable_jobs as dj

WORKLOADS = {"runs": "run", "queue": "queue job"}  # workload: its unit
IN_FLIGHT = 64
COLLECTED = re.compile(r"Collected : (\d+)")


def runs_child(url: str, units: int, instances: int) -> float:
    """``units`` continuous runs on a store already holding ``instances`` due instances;
    returns the CPU seconds they took."""
    registry = dj.Registry()
    count = [0]
    done = trio.Event()

    @registry.continuous("bench", state=int, schedule=dj.every(timedelta(microseconds=1)))
    async def bench(ctx: dj.ContinuousContext[int]) -> None:
        count[0] += 1
        if count[0] == units:
            done.set()

    store = dj.open_store(url)
    due = functools.partial(continuous_due, now_utc())
    fill_pending(store, "continuous", "bench", instances, due)

    async def main() -> float:
        async with dj.open_jobs(registry, store):
            cpu0 = time.process_time()
            await done.wait()
            return time.process_time() - cpu0

    try:
        return trio.run(main)
    finally:
        store.close()


def queue_child(url: str, units: int) -> float:
    """``units`` task jobs sent and executed once; returns the CPU seconds they took."""
    registry = dj.Registry()
    count = [0]
    done = trio.Event()

    @registry.task("q", event=int, state=int)
    async def q(ctx: dj.TaskContext[int]) -> None:
        count[0] += 1
        if count[0] == units:
            done.set()

    @q.on_event
    async def enqueue(event: int, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(0))

    async def main() -> float:
        async with dj.open_jobs(registry, url) as jobs:
            client = jobs.task(q)
            limiter = trio.Semaphore(IN_FLIGHT)

            async def send(k: int) -> None:
                await client.send(f"j{k}", k)
                limiter.release()

            cpu0 = time.process_time()
            async with trio.open_nursery() as nursery:
                for k in range(units):
                    await limiter.acquire()
                    nursery.start_soon(send, k)
            await done.wait()
            return time.process_time() - cpu0

    return trio.run(main)


def child(workload: str, url: str, units: int, instances: int) -> None:
    """In the process valgrind runs: the fixed work, then its CPU time as JSON."""
    cpu = runs_child(url, units, instances) if workload == "runs" else queue_child(url, units)
    print(json.dumps({"cpu_s": cpu}))


def counted(workload: str, url: str, units: int, instances: int, *, native: bool) -> float:
    """The instructions callgrind counted in a child doing ``units`` of ``workload``
    (``native``: no callgrind, the child's CPU seconds instead)."""
    args = [
        *([] if native else ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]),
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        workload,
        url,
        str(units),
        str(instances),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    if native and proc.returncode == 0:
        return float(json.loads(proc.stdout.splitlines()[-1])["cpu_s"])
    found = COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        msg = f"{workload} under callgrind failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        raise SystemExit(msg)
    return int(found.group(1))


def per_unit(
    kind: str, workload: str, small: int, large: int, instances: int, *, native: bool
) -> float:
    """Instructions per run (or job) on a fresh store of ``kind`` (``native``: CPU µs
    per unit of the large count, no callgrind)."""
    if native:
        with tempfile.TemporaryDirectory() as tmp, target(kind, Path(tmp), "ipr") as t:
            return counted(workload, t.url, large, instances, native=True) / large * 1e6
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for units in (small, large):
            with target(kind, Path(tmp), f"ipr_{workload}") as t:
                totals.append(counted(workload, t.url, units, instances, native=False))
    return (totals[1] - totals[0]) / (large - small)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        name, url, units, count = sys.argv[2:6]
        child(name, url, int(units), int(count))
        return
    p = parser(__doc__)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="runs,queue (default: both)")
    p.add_argument("--small", type=int, default=2000, help="units of work in the first count")
    p.add_argument("--large", type=int, default=8000, help="units of work in the second count")
    p.add_argument("--instances", type=int, default=500, help="continuous instances for runs")
    args = p.parse_args()
    stores = stores_arg(args.stores)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in workloads if w not in WORKLOADS]
    if bad:
        raise SystemExit(f"unknown workload(s) {bad}; use runs, queue")
    small, large, instances = args.small, args.large, args.instances
    if args.quick:
        small, large, instances = 30, 90, 20
    if large <= small:
        raise SystemExit("--large must be more than --small")
    header("Instructions per run and per queue job (callgrind)")
    # --quick is a smoke run of the workloads (the test suite's): without callgrind,
    # which takes about 20 s of CPU to start each child.
    native = args.quick or shutil.which("valgrind") is None
    if not args.quick and native:
        print("note: valgrind is not installed (apt-get install valgrind): CPU µs instead")
    if "postgres" in stores:
        check_postgres()
    rows = [
        [kind, *(per_unit(kind, w, small, large, instances, native=native) for w in workloads)]
        for kind in stores
    ]
    unit = "CPU µs" if native else "instructions"
    if native:
        print(f"{large:,} units of work, no callgrind; {instances} continuous instances")
    else:
        print(f"{small:,} and {large:,} units of work per count; {instances} continuous instances")
    print()
    table(["store", *(f"{unit} per {WORKLOADS[w]}" for w in workloads)], rows)


if __name__ == "__main__":
    main()
