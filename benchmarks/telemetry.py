"""What OpenTelemetry costs: continuous runs/s with the ``otel`` extra absent,
installed but not configured, and configured with the SDK, on each store.

Workload: ``runs.py``'s (``--instances`` continuous instances due again as soon
as their run commits, a no-op handler, real time). Each mode runs in its own
process, since OpenTelemetry's providers are process-wide:

- absent: ``opentelemetry`` does not import (the extra is not installed);
- API only: installed, no SDK configured (the API's no-op providers);
- SDK: a ``TracerProvider`` recording every span (batched to an exporter that
  drops them) and a ``MeterProvider`` with an in-memory reader: a span per run
  and per commit-triggering client call, five instruments.

Ratios are against "absent", measured in the same run. On a shared machine
runs/s moves with the load; the CPU time per run (this process's, including
the store's worker threads) moves much less: compare those.

    .venv/bin/python benchmarks/telemetry.py [--quick] [--stores memory,sqlite,postgres]
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from _common import HERE, check_postgres, header, parser, ratio, run_child, stores_arg, table
from _common import target as fresh_target


def measure(
    mode: str, kind: str, tmp: Path, instances: int, warmup: float, seconds: float
) -> tuple[float, float] | None:
    """(runs/s, CPU seconds per run) of ``mode``."""
    with fresh_target(kind, tmp, f"otel_{mode}") as t:
        args = [str(HERE / "_telemetry_child.py"), mode, t.kind, t.url]
        args += ["--instances", str(instances), "--warmup", str(warmup), "--seconds", str(seconds)]
        result = run_child(args, timeout=120 + instances / 20)
    if result is None:
        return None
    return float(result["runs_per_s"]), float(result["cpu_per_run"])


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--instances", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    a = p.parse_args()
    if a.quick:
        a.instances, a.seconds, a.warmup = 20, 0.3, 0.1
    stores = stores_arg(a.stores)
    header(f"OpenTelemetry's cost: continuous runs/s ({a.instances} instances, no-op handler)")
    if "postgres" in stores:
        check_postgres()
    sdk = importlib.util.find_spec("opentelemetry.sdk") is not None
    if not sdk:
        print(
            "note: opentelemetry-sdk is not installed (pip install -e '.[dev]'): "
            "its columns are '-'"
        )
        print()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in stores:
            label = {"memory": "memory", "sqlite": "SQLite", "postgres": "Postgres"}[kind]
            absent = measure("absent", kind, tmp, a.instances, a.warmup, a.seconds)
            row: list[object] = [label, *cpu_cells(absent, None)[:2]]
            for mode in ("api", "sdk"):
                got = measure(mode, kind, tmp, a.instances, a.warmup, a.seconds) if sdk else None
                row += cpu_cells(got, absent)
            rows.append(row)
    table(
        [
            "store",
            "absent: runs/s",
            "CPU/run",
            "API only: runs/s",
            "CPU/run",
            "CPU/run vs absent",
            "SDK: runs/s",
            "CPU/run",
            "CPU/run vs absent",
        ],
        rows,
    )


def cpu_cells(got: tuple[float, float] | None, base: tuple[float, float] | None) -> list[object]:
    """runs/s, CPU µs per run, and the CPU per run against ``base``'s."""
    if got is None:
        return [None, None, None]
    cpu_ratio = None if base is None else ratio(got[1], base[1])
    return [got[0], f"{got[1] * 1e6:.0f} µs", cpu_ratio]


if __name__ == "__main__":
    main()
