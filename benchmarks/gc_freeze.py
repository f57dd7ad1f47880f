"""What Python's garbage collector costs a worker, and what ``gc.freeze()`` saves.

Workload: ``benchmarks/runs.py``'s (``--instances`` continuous instances,
``every(1 µs)``, no-op handler), each measurement in its own process, once as
is and once with ``gc.collect(); gc.freeze()`` called after the imports and
the store are ready (what an application does once its startup is over).

Python's full collections scan every tracked object, including the tens of
thousands that the imports made (modules, functions, classes), which never
become garbage. A run's objects on SQLite and Postgres live through the group
commit's wait, so some reach the oldest generation, and every so often a full
collection scans everything again. ``gc.freeze()`` moves what exists at that
moment out of the collector's sight; later objects are collected as usual.

The rounds alternate (as is, frozen, as is, ...) and the table shows medians.
Columns: runs/s, CPU per run (all threads), full collections per 10,000 runs,
and the longest full-collection pause (CPU time of the collecting thread).

    .venv/bin/python benchmarks/gc_freeze.py [--quick] [--stores memory,sqlite,postgres]
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    HERE,
    STORE_LABELS,
    check_postgres,
    header,
    median,
    parser,
    ratio,
    run_child,
    stores_arg,
    table,
    target,
)


class Pauses:
    """Full collections and their CPU time (``gc.callbacks``), while installed."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._t0 = time.thread_time()
        else:
            self.pauses.append(time.thread_time() - self._t0)


def child(kind: str, frozen: bool, instances: int, warmup: float, seconds: float) -> None:
    """One measurement, printed as JSON on the last line."""
    import runs

    with tempfile.TemporaryDirectory() as d, target(kind, Path(d), "gc") as t:
        pauses = Pauses()
        if frozen:
            gc.collect()
            gc.freeze()
        gc.callbacks.append(pauses)
        try:
            rate, cpu = runs.ours(t, instances, warmup, seconds)
        finally:
            gc.callbacks.remove(pauses)
    done = rate * (warmup + seconds)  # the pauses are counted over the warm-up too
    result = {
        "runs_per_s": rate,
        "cpu_per_run": cpu,
        "full_per_10k": len(pauses.pauses) / max(done, 1) * 10_000,
        "max_pause": max(pauses.pauses, default=0.0),
        "frozen": gc.get_freeze_count(),
    }
    print(json.dumps(result))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind_arg, frozen_arg, instances, warmup, seconds = sys.argv[2:7]
        child(kind_arg, frozen_arg == "1", int(instances), float(warmup), float(seconds))
        return
    p = parser(__doc__)
    p.add_argument("--instances", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    if a.quick:
        a.instances, a.seconds, a.warmup, a.rounds = 20, 0.3, 0.1, 1
    stores = stores_arg(a.stores)
    header(f"Garbage collection: as is and with gc.freeze() ({a.instances} instances, no-op runs)")
    if "postgres" in stores:
        check_postgres()
    rows: list[list[object]] = []
    for kind in stores:
        got: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for _ in range(a.rounds):
            for frozen in (False, True):
                args = [str(HERE / "gc_freeze.py"), "--child", kind, "1" if frozen else "0"]
                args += [str(a.instances), str(a.warmup), str(a.seconds)]
                result = run_child(args, timeout=120 + a.instances / 20)
                if result is not None:
                    got[frozen].append(result)
        base = median([r["runs_per_s"] for r in got[False]]) if got[False] else None
        for frozen in (False, True):
            results = got[frozen]
            if not results:
                rows.append(
                    [
                        STORE_LABELS[kind],
                        "frozen" if frozen else "as is",
                        None,
                        None,
                        None,
                        None,
                        None,
                    ]
                )
                continue
            rate = median([r["runs_per_s"] for r in results])
            rows.append(
                [
                    STORE_LABELS[kind],
                    f"gc.freeze() ({results[0]['frozen']:,} objects)" if frozen else "as is",
                    rate,
                    f"{median([r['cpu_per_run'] for r in results]) * 1e6:.0f} µs",
                    median([r["full_per_10k"] for r in results]),
                    f"{max(r['max_pause'] for r in results) * 1e3:.1f} ms",
                    ratio(rate, base),
                ]
            )
    table(
        [
            "store",
            "collector",
            "runs/s",
            "CPU/run",
            "full collections per 10k runs",
            "longest full collection",
            "vs as is",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
