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

Ratios are against "absent", measured in the same run.

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
) -> float | None:
    with fresh_target(kind, tmp, f"otel_{mode}") as t:
        args = [str(HERE / "_telemetry_child.py"), mode, t.kind, t.url]
        args += ["--instances", str(instances), "--warmup", str(warmup), "--seconds", str(seconds)]
        result = run_child(args, timeout=120 + instances / 20)
    return None if result is None else float(result["runs_per_s"])


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
            absent = measure("absent", kind, tmp, a.instances, a.warmup, a.seconds)
            api = measure("api", kind, tmp, a.instances, a.warmup, a.seconds) if sdk else None
            full = measure("sdk", kind, tmp, a.instances, a.warmup, a.seconds) if sdk else None
            label = {"memory": "memory", "sqlite": "SQLite", "postgres": "Postgres"}[kind]
            rows.append([label, absent, api, ratio(api, absent), full, ratio(full, absent)])
    table(
        [
            "store",
            "runs/s, otel absent",
            "runs/s, API only",
            "API only vs absent",
            "runs/s, SDK recording",
            "SDK vs absent",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
