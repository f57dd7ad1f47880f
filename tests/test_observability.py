"""Logging fields, OpenTelemetry spans, links and metrics (in virtual time).

The OpenTelemetry SDK's in-memory exporters are installed once per process as
the global providers (the library only ever uses the global ones); each test
uses its own job names, so what other tests recorded does not get in the way.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import durable_jobs as dj
from _runtime import MINUTE, T, advance, running
from durable_jobs._domain.continuous import ContinuousInstance
from durable_jobs._domain.instance import JobInstance
from durable_jobs._runtime.runtime import Runtime
from durable_jobs._store.mapper import JsonMapper
from durable_jobs._telemetry import _OpenTelemetry, load, parse_traceparent, telemetry

_READER: list[InMemoryMetricReader] = []


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The library bound to SDK providers on in-memory exporters for this test (the
    global providers stay unset: other tests must not record traces)."""
    assert isinstance(telemetry, _OpenTelemetry)
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    telemetry.bind(tracer_provider, meter_provider)
    _READER[:] = [reader]
    try:
        yield exporter
    finally:
        telemetry.bind()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else str(request.getfixturevalue("sqlite_url"))


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(exporter, name)
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def linked_to(span: ReadableSpan) -> list[tuple[int, int]]:
    return [(link.context.trace_id, link.context.span_id) for link in span.links]


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def points(name: str, **attributes: Any) -> list[Any]:
    """The data points of metric ``name`` whose attributes include ``attributes``."""
    data = _READER[0].get_metrics_data()
    assert data is not None
    found = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    if all(attrs.get(k) == v for k, v in attributes.items()):
                        found.append(point)
    return found


def ticker(name: str, *, fail: bool = False) -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous(
        name, state=int, schedule=dj.every(MINUTE), start_immediately=False, retry=None
    )
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        if fail:
            raise RuntimeError("boom")
        ctx.set_state(ctx.state + 1)

    return registry


async def test_alarm_runs_are_spans_that_link_to_the_start_call(
    spans: InMemorySpanExporter, url: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(ticker("otel-tick"), url) as jobs:
        await jobs.continuous("otel-tick").start("a", 0)
        await advance(jobs, 2 * MINUTE)
    start = one(spans, "continuous otel-tick start")
    assert start.attributes is not None
    assert dict(start.attributes) == {
        "durable_jobs.kind": "continuous",
        "durable_jobs.job": "otel-tick",
        "durable_jobs.call": "start",
        "durable_jobs.instance_id": "a",
    }
    runs = named(spans, "continuous otel-tick")
    assert len(runs) == 2
    for n, run in enumerate(runs, start=1):
        assert run.attributes is not None
        assert dict(run.attributes) == {
            "durable_jobs.kind": "continuous",
            "durable_jobs.job": "otel-tick",
            "durable_jobs.instance_id": "a",
            "durable_jobs.handler": "execute",
            "durable_jobs.run_count": n,
            "durable_jobs.attempt": 1,
            "durable_jobs.outcome": "succeeded",
        }
        # A trace of its own (not a child of whatever was current), linked to the start.
        assert run.parent is None
        assert run.kind is trace.SpanKind.CONSUMER
        assert linked_to(run) == [ids(start)]
        assert run.status.status_code is StatusCode.UNSET


async def test_a_failed_run_records_the_exception_and_logs_a_warning(
    spans: InMemorySpanExporter,
    url: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_jobs")
    async with running(ticker("otel-fail", fail=True), url) as jobs:
        await jobs.continuous("otel-fail").start("b", 0)
        await advance(jobs, MINUTE)
    run = one(spans, "continuous otel-fail")
    assert run.attributes is not None
    assert run.attributes["durable_jobs.outcome"] == "failed"
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "RuntimeError: boom"
    (event,) = run.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "RuntimeError"
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    (record,) = failures
    assert record.levelno == logging.WARNING
    assert record.name.startswith("durable_jobs.")
    fields = {k: v for k, v in vars(record).items() if k.startswith("dj_")}
    assert fields == {
        "dj_kind": "continuous",
        "dj_job": "otel-fail",
        "dj_instance_id": "b",
        "dj_run_count": 1,
        "dj_attempt": 1,
    }
    # With its traceback: where the handler raised (the history keeps type and message).
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert 'raise RuntimeError("boom")' in caplog.text


async def test_successful_runs_log_nothing_above_debug(
    spans: InMemorySpanExporter,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_jobs")
    async with running(ticker("otel-quiet"), "memory://") as jobs:
        await jobs.continuous("otel-quiet").start("c", 0)
        await advance(jobs, 3 * MINUTE)
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []
    runs = [r for r in caplog.records if getattr(r, "dj_job", None) == "otel-quiet"]
    assert [(r.dj_instance_id, r.dj_run_count, r.dj_attempt) for r in runs] == [  # type: ignore[attr-defined]
        ("c", 1, 1),
        ("c", 2, 1),
        ("c", 3, 1),
    ]


def test_the_library_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("durable_jobs").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


async def test_a_flush_links_to_the_add_that_opened_its_batch(
    spans: InMemorySpanExporter, url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()
    flushed: list[int] = []

    @registry.debounce("otel-digest", event=int, flush_after=timedelta(seconds=30))
    async def digest(ctx: dj.DebounceContext[int]) -> None:
        flushed.append(ctx.event_count)

    async with running(registry, url) as jobs:
        client = jobs.debounce("otel-digest")
        await client.add("u", 1)
        await client.add("u", 2)
        await advance(jobs, MINUTE)
        await client.add("u", 3)
        await advance(jobs, MINUTE)
    assert flushed == [2, 1]
    adds = named(spans, "debounce otel-digest add")
    assert len(adds) == 3
    flushes = named(spans, "debounce otel-digest")
    assert [linked_to(f) for f in flushes] == [[ids(adds[0])], [ids(adds[2])]]
    assert [f.attributes["durable_jobs.run_count"] for f in flushes if f.attributes] == [1, 2]


async def test_task_handlers_in_a_send_are_its_children_and_the_run_links_to_it(
    spans: InMemorySpanExporter, url: str, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.task("otel-remind", event=str, state=None)
    async def remind(ctx: dj.TaskContext[None]) -> None:
        pass

    @remind.on_event
    async def on_event(event: str, ctx: dj.TaskContext[None]) -> None:
        ctx.schedule(timedelta(minutes=5))

    async with running(registry, url) as jobs:
        await jobs.task("otel-remind").send("r", "hello")
        await advance(jobs, 10 * MINUTE)
    send = one(spans, "task otel-remind send")
    on_ev, execute = named(spans, "task otel-remind")
    assert on_ev.attributes is not None and execute.attributes is not None
    assert on_ev.attributes["durable_jobs.handler"] == "on_event"
    assert on_ev.parent is not None and on_ev.parent.span_id == ids(send)[1]
    assert on_ev.context is not None and on_ev.context.trace_id == ids(send)[0]
    assert linked_to(on_ev) == [ids(send)]
    assert execute.attributes["durable_jobs.handler"] == "execute"
    assert execute.parent is None
    assert linked_to(execute) == [ids(send)]


async def test_a_triggered_run_is_a_child_of_the_trigger_call(
    spans: InMemorySpanExporter, url: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(ticker("otel-trig"), url) as jobs:
        client = jobs.continuous("otel-trig")
        await client.start("t", 0)
        await client.trigger("t")
        assert await client.get_state("t") == 1
        assert (await client.status("t")).run_count == 1
    trigger = one(spans, "continuous otel-trig trigger")
    run = one(spans, "continuous otel-trig")
    assert run.parent is not None and run.parent.span_id == ids(trigger)[1]
    assert linked_to(run) == [ids(trigger)]
    assert run.kind is trace.SpanKind.INTERNAL
    calls = {s.name for s in spans.get_finished_spans()}
    assert {
        "continuous otel-trig start",
        "continuous otel-trig get_state",
        "continuous otel-trig status",
    } <= calls


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_the_link_is_stored_and_survives_a_restart(
    spans: InMemorySpanExporter,
    sqlite_url: str,
    autojump_clock: trio.testing.MockClock,
    encrypted: bool,
) -> None:
    clock = dj.VirtualClock(T)
    key = dj.generate_key() if encrypted else None
    async with running(
        ticker("otel-restart"), sqlite_url, clock=clock, encryption_key=key
    ) as jobs:
        await jobs.continuous("otel-restart").start("s", 0)
    start = one(spans, "continuous otel-restart start")
    async with running(
        ticker("otel-restart"), sqlite_url, clock=clock, encryption_key=key
    ) as jobs:
        await advance(jobs, MINUTE)
        history = await jobs.continuous("otel-restart").history("s")
    run = one(spans, "continuous otel-restart")
    assert linked_to(run) == [ids(start)]
    assert any(r.name == "alarm_set" for r in history)
    assert not [r for r in history if "trace" in r.data]  # not a record's business
    with dj.open_store(sqlite_url, encryption_key=key) as store:
        agg = store.get("continuous", "otel-restart", "s")
        assert agg is not None
        # The next alarm was set by the run: it keeps the start's traceparent.
        assert agg.d.alarm_trace is not None
        assert start.context is not None
        flags = int(start.context.trace_flags)
        assert parse_traceparent(agg.d.alarm_trace) == (*ids(start), flags)


async def test_metrics(
    spans: InMemorySpanExporter, url: str, autojump_clock: trio.testing.MockClock
) -> None:
    name = (
        "otel-metrics-" + url.split(":", maxsplit=1)[0]
    )  # the counters add up over the whole session
    registry = ticker(name)
    registry.continuous(
        f"{name}-bad", state=int, schedule=dj.every(MINUTE), start_immediately=False
    )(_raise)
    async with running(registry, url) as jobs:
        await jobs.continuous(name).start("m1", 0)
        await jobs.continuous(name).start("m2", 0)
        await jobs.continuous(f"{name}-bad").start("m3", 0)
        await advance(jobs, 2 * MINUTE)
        due = points("durable_jobs.alarms.due")
        assert [p.value for p in due] == [0]
    ok = points("durable_jobs.runs", **{"durable_jobs.job": name})
    assert [(dict(p.attributes), p.value) for p in ok] == [
        (
            {
                "durable_jobs.kind": "continuous",
                "durable_jobs.job": name,
                "durable_jobs.handler": "execute",
                "durable_jobs.outcome": "succeeded",
            },
            4,
        )
    ]
    bad = points("durable_jobs.runs", **{"durable_jobs.job": f"{name}-bad"})
    assert [(p.attributes["durable_jobs.outcome"], p.value) for p in bad] == [("failed", 2)]
    (duration,) = points("durable_jobs.run.duration", **{"durable_jobs.job": name})
    assert duration.count == 4
    assert duration.sum == 0.0  # the handler takes no virtual time
    (late,) = points("durable_jobs.alarm.lateness", **{"durable_jobs.job": name})
    assert late.count == 4
    assert 0.0 <= late.max < 1.0
    (batches,) = points("durable_jobs.commit.batch_size")
    assert batches.count >= 1
    assert batches.min >= 1


async def _raise(ctx: dj.ContinuousContext[int]) -> None:
    raise ValueError("no")


def _values(ps: Sequence[NumberDataPoint]) -> list[float]:
    return [p.value for p in ps]


class _Due:
    def __init__(self, n: int) -> None:
        self.n = n

    def alarms_due(self) -> int:
        return self.n


async def test_the_gauge_sums_the_due_alarms_of_the_open_runtimes(
    spans: InMemorySpanExporter,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Runtime, "alarms_due", lambda self: 5)
    other = _Due(7)
    unwatch = telemetry.watch(other)
    try:
        async with running(ticker("otel-gauge"), "memory://"):
            assert _values(points("durable_jobs.alarms.due")) == [12]
        assert _values(points("durable_jobs.alarms.due")) == [7]
    finally:
        unwatch()
    assert _values(points("durable_jobs.alarms.due")) == [0]


async def test_a_runtime_reports_its_scheduler_s_due_alarms(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(ticker("otel-due"), "memory://") as jobs:
        await jobs.continuous("otel-due").start("d", 0)
        await advance(jobs, MINUTE)
        assert jobs._rt.alarms_due() == jobs.statistics().alarms_due == 0


def test_without_opentelemetry_everything_is_a_no_op(tmp_path: Any) -> None:
    """Simulate a machine without the otel extra: opentelemetry does not import."""
    program = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # "import opentelemetry" raises ImportError
        from datetime import timedelta
        import trio
        import trio.testing
        import durable_jobs as dj
        from durable_jobs._telemetry import Telemetry, load, telemetry

        assert type(telemetry) is Telemetry and not telemetry.enabled
        assert type(load()) is Telemetry
        registry = dj.Registry()
        seen = []

        @registry.continuous(
            "t", state=int, schedule=dj.every(timedelta(seconds=60)), start_immediately=False
        )
        async def tick(ctx: dj.ContinuousContext[int]) -> None:
            seen.append(ctx.run_count)

        async def main() -> None:
            async with dj.open_jobs(registry, "memory://", clock=dj.VirtualClock()) as jobs:
                await jobs.continuous("t").start("a", 0)
                await jobs.continuous("t").trigger("a")
                await trio.sleep(60)
                await jobs.wait_idle()

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        assert seen == [1, 2], seen
        print("ok")
        """
    )
    script = tmp_path / "no_otel.py"
    script.write_text(program)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_load_uses_opentelemetry_when_it_imports() -> None:
    assert load().enabled


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            (
                0x0AF7651916CD43DD8448EB211C80319C,
                0xB7AD6B7169203331,
                1,
            ),
        ),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01", None),
        ("00-xyz-b7ad6b7169203331-01", None),
        ("garbage", None),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-001", None),
    ],
)
def test_stored_traceparents_are_parsed_strictly(
    value: str, expected: tuple[int, int, int] | None
) -> None:
    assert parse_traceparent(value) == expected


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_alarm_rows_without_a_trace_are_written_as_before_and_both_load() -> None:
    mapper = JsonMapper()
    alarm_set: Any = ContinuousInstance.AlarmSet
    plain = alarm_set(originator_id=uuid4(), originator_version=2, timestamp=T, at=T)
    row = mapper.to_stored_event(plain)
    # What releases before tracing wrote, and read.
    assert set(json.loads(row.state)) == {"timestamp", "at"}
    assert mapper.to_domain_event(row) == plain
    traced = alarm_set(
        originator_id=uuid4(), originator_version=2, timestamp=T, at=T, trace=TRACEPARENT
    )
    row = mapper.to_stored_event(traced)
    assert json.loads(row.state)["trace"] == TRACEPARENT
    assert mapper.to_domain_event(row) == traced


def _alarm_trace(agg: JobInstance) -> str | None:
    return agg.d.alarm_trace


def test_stamping_sets_the_trace_of_pending_alarms_and_snapshots_keep_it() -> None:
    agg, _ = ContinuousInstance.start(
        None, "j", "i", now=T, state=0, first_run_at=T + MINUTE, type_version=1
    )
    assert _alarm_trace(agg) is None
    assert "alarm_trace" not in JobInstance.Snapshot.take(agg).state["data"]
    agg.stamp_trace(TRACEPARENT)
    assert _alarm_trace(agg) == TRACEPARENT
    alarms = [e for e in agg.pending_events if isinstance(e, JobInstance.AlarmSet)]
    assert [e.trace for e in alarms] == [TRACEPARENT]
    snapshot = JobInstance.Snapshot.take(agg)
    assert snapshot.state["data"]["alarm_trace"] == TRACEPARENT
    assert snapshot.mutate(None).d.alarm_trace == TRACEPARENT
    agg.set_alarm(None, now=T)
    assert _alarm_trace(agg) is None


async def test_a_handler_past_its_timeout_is_timed_out(
    spans: InMemorySpanExporter,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = dj.Registry()

    @registry.continuous(
        "otel-slow",
        state=int,
        schedule=dj.every(MINUTE),
        start_immediately=False,
        timeout=timedelta(seconds=5),
    )
    async def slow(ctx: dj.ContinuousContext[int]) -> None:
        await trio.sleep(60)

    async with running(registry, "memory://") as jobs:
        await jobs.continuous("otel-slow").start("s", 0)
        await advance(jobs, MINUTE + 10 * timedelta(seconds=1))
    run = one(spans, "continuous otel-slow")
    assert run.attributes is not None
    assert run.attributes["durable_jobs.outcome"] == "timed_out"
    assert run.status.status_code is StatusCode.ERROR
    (record,) = [r for r in caplog.records if getattr(r, "dj_job", None) == "otel-slow"]
    assert record.levelno == logging.WARNING
    assert "timed out" in record.getMessage()
    (timed_out,) = points(
        "durable_jobs.runs",
        **{"durable_jobs.job": "otel-slow", "durable_jobs.outcome": "timed_out"},
    )
    assert timed_out.value == 1


async def test_a_failing_client_call_s_span_has_an_error_status(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    registry = dj.Registry()

    @registry.task("otel-bad-send", event=str, state=None)
    async def task(ctx: dj.TaskContext[None]) -> None:
        pass

    @task.on_event
    async def on_event(event: str, ctx: dj.TaskContext[None]) -> None:
        raise ValueError(event)

    async with running(registry, "memory://") as jobs:
        with pytest.raises(dj.HandlerError):
            await jobs.task("otel-bad-send").send("x", "nope")
    send = one(spans, "task otel-bad-send send")
    assert send.status.status_code is StatusCode.ERROR
    handler = one(spans, "task otel-bad-send")
    assert handler.attributes is not None
    assert handler.attributes["durable_jobs.outcome"] == "failed"
    assert handler.parent is not None and handler.parent.span_id == ids(send)[1]


def test_spans_start_once_the_application_sets_a_tracer_provider(tmp_path: Any) -> None:
    """Before a provider is set (the API's stand-in) nothing is traced or stored; a
    provider set later, while jobs run, is used from then on."""
    program = textwrap.dedent(
        """
        from datetime import timedelta
        import trio
        import trio.testing
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        import durable_jobs as dj

        registry = dj.Registry()

        @registry.continuous(
            "t", state=int, schedule=dj.every(timedelta(seconds=60)), start_immediately=False
        )
        async def tick(ctx: dj.ContinuousContext[int]) -> None:
            pass

        exporter = InMemorySpanExporter()

        async def main() -> None:
            async with dj.open_jobs(registry, "memory://", clock=dj.VirtualClock()) as jobs:
                await jobs.continuous("t").start("a", 0)
                await trio.sleep(60)
                await jobs.wait_idle()
                assert exporter.get_finished_spans() == ()
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(provider)
                await jobs.continuous("t").trigger("a")
                await trio.sleep(60)
                await jobs.wait_idle()

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        finished = exporter.get_finished_spans()
        names = [s.name for s in finished]
        assert names == ["continuous t", "continuous t trigger", "continuous t"], names
        # The triggered run is the trigger's child; the next alarm is still the one
        # the untraced start set: its run links to nothing.
        triggered, trigger, alarm_run = finished
        assert triggered.parent.span_id == trigger.context.span_id
        assert alarm_run.parent is None and not alarm_run.links
        print("ok")
        """
    )
    script = tmp_path / "late_provider.py"
    script.write_text(program)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_tests_leave_the_global_providers_alone(spans: InMemorySpanExporter) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


async def test_without_a_provider_a_run_does_not_ask_opentelemetry_for_one(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # get_tracer_provider() reads the environment on every call: while no provider is
    # set, a handler call looks at the API's global instead.
    asked: list[object] = []
    real = trace.get_tracer_provider

    def counting() -> trace.TracerProvider:
        asked.append(None)
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", counting)
    async with running(ticker("otel-unset"), "memory://") as jobs:
        await jobs.continuous("otel-unset").start("u", 0)
        await advance(jobs, 3 * MINUTE)
        assert await jobs.continuous("otel-unset").get_state("u") == 3
    assert asked == []


class _BrokenProcessor(SpanProcessor):
    """A span processor that raises as spans start or end (a buggy vendor one: the
    SDK shields exporters, not processors)."""

    def __init__(self, *, on_start: bool, on_end: bool) -> None:
        self.raise_on_start, self.raise_on_end = on_start, on_end

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.raise_on_start:
            raise RuntimeError("processor broken on start")

    def on_end(self, span: ReadableSpan) -> None:
        if self.raise_on_end:
            raise RuntimeError("processor broken on end")


@pytest.mark.parametrize(("on_start", "on_end"), [(True, False), (False, True)])
async def test_a_span_processor_that_raises_changes_nothing_the_jobs_do(
    on_start: bool,
    on_end: bool,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Runs commit and client calls return their results, and one warning says why
    the spans are missing. Before: every alarm run failed (CRITICAL, retried every
    5 s, the schedule never moved) and ``start`` raised the processor's error for an
    instance it had committed."""
    assert isinstance(telemetry, _OpenTelemetry)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(_BrokenProcessor(on_start=on_start, on_end=on_end))
    telemetry.bind(provider)
    telemetry._failures.clear()
    try:
        async with running(ticker("otel-broken"), "memory://") as jobs:
            client = jobs.continuous("otel-broken")
            assert (await client.start("c1", 0)).created
            await advance(jobs, 3 * MINUTE)
            status = await client.status("c1")
            assert (status.status, status.run_count) == ("running", 3)
            assert await client.get_state("c1") == 3
    finally:
        telemetry.bind()
        provider.shutdown()
    warnings = [r for r in caplog.records if r.name == "durable_jobs.telemetry"]
    assert len(warnings) == 1, warnings  # once per error type
    assert "processor" in warnings[0].getMessage() or warnings[0].exc_info
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_reducer_and_on_exhausted_spans_say_which_run_they_belong_to(
    spans: InMemorySpanExporter, url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Every handler span carries run_count and attempt: a reducer's (the flush its
    event's batch will be, try 1) and an on_exhausted hook's (the failed run's), and
    the hook's span links to the start like the run's own spans do."""
    registry = dj.Registry()

    def give_up(error: BaseException, ctx: Any) -> str:
        return "pause"

    @registry.continuous(
        "otel-fails", state=int, schedule=dj.every(timedelta(hours=1)),
        retry=dj.Retry(2, delay=timedelta(seconds=10), jitter=0, on_exhausted=give_up),
    )  # fmt: skip
    async def fails(ctx: dj.ContinuousContext[int]) -> None:
        raise RuntimeError("no")

    @registry.debounce("otel-fold", event=int, state=int, flush_after=timedelta(seconds=30))
    async def fold(ctx: dj.DebounceContext[int]) -> None:
        pass

    @fold.on_event
    def add_up(ctx: dj.DebounceEventContext[int, int]) -> int:
        return (ctx.state or 0) + ctx.event

    async with running(registry, url) as jobs:
        await jobs.continuous("otel-fails").start("f", 0)
        await jobs.debounce("otel-fold").add("d", 1)
        await advance(jobs, MINUTE)
        await jobs.debounce("otel-fold").add("d", 2)
        await advance(jobs, MINUTE)

    def handler_spans(handler: str) -> list[dict[str, Any]]:
        found = [
            dict(s.attributes or {})
            for s in spans.get_finished_spans()
            if (s.attributes or {}).get("durable_jobs.handler") == handler
        ]
        assert found, handler
        return found

    reducers = handler_spans("reducer")
    assert [(a["durable_jobs.run_count"], a["durable_jobs.attempt"]) for a in reducers] == [
        (1, 1),
        (2, 1),
    ]
    [hook] = handler_spans("on_exhausted")
    assert (hook["durable_jobs.run_count"], hook["durable_jobs.attempt"]) == (1, 2)
    start = one(spans, "continuous otel-fails start")
    [hook_span] = [
        s
        for s in spans.get_finished_spans()
        if (s.attributes or {}).get("durable_jobs.handler") == "on_exhausted"
    ]
    assert linked_to(hook_span) == [ids(start)]


async def test_a_run_cancelled_at_shutdown_is_an_interrupted_span(
    spans: InMemorySpanExporter, url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A run still going when the block ends is cancelled after shutdown_grace: its span
    says interrupted (it had no outcome at all)."""
    registry = dj.Registry()
    started = trio.Event()

    @registry.continuous("otel-long", state=int, schedule=dj.every(timedelta(hours=1)))
    async def long(ctx: dj.ContinuousContext[int]) -> None:
        started.set()
        await trio.sleep_forever()

    async with running(registry, url, shutdown_grace=timedelta(seconds=1)) as jobs:
        await jobs.continuous("otel-long").start("e", 0)
        await started.wait()
    [run] = named(spans, "continuous otel-long")
    assert run.attributes is not None
    assert run.attributes["durable_jobs.outcome"] == "interrupted"
