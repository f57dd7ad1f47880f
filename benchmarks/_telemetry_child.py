"""One telemetry mode's continuous runs/s, in its own process (OpenTelemetry's
providers are process-wide). Not a benchmark script of its own: ``telemetry.py``
starts it and reads the JSON object it prints last.

    python benchmarks/_telemetry_child.py absent sqlite sqlite:///x.db --instances 2000
"""

from __future__ import annotations

import argparse
import json
import sys

MODES = ("absent", "api", "sdk")


def configure(mode: str) -> None:
    """``absent``: opentelemetry does not import; ``api``: installed, not configured;
    ``sdk``: the SDK records every span (exported to nowhere) and every metric."""
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
        return
    if mode == "api":
        return
    from collections.abc import Sequence

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=MODES)
    p.add_argument("kind")
    p.add_argument("url")
    p.add_argument("--instances", type=int, required=True)
    p.add_argument("--warmup", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args()
    configure(a.mode)
    from _common import Target
    from runs import ours

    from durable_jobs._telemetry import telemetry

    assert telemetry.enabled == (a.mode != "absent")
    rate, cpu = ours(Target(a.kind, a.url), a.instances, a.warmup, a.seconds)
    print(json.dumps({"runs_per_s": rate, "cpu_per_run": cpu}))


if __name__ == "__main__":
    main()
