"""Logging fields, and OpenTelemetry spans and metrics when it is installed.

Every log record about an instance carries the ``extra`` fields of
:func:`log_fields`, so a log pipeline can filter by job and instance without
parsing messages.

OpenTelemetry is optional (the ``otel`` extra installs ``opentelemetry-api``
only). When it is importable, :data:`telemetry` opens spans on the global
tracer provider and records on the global meter provider, which the
application configures with the SDK (or leaves alone: the API's defaults do
nothing). When it is not, :data:`telemetry` is a stand-in whose methods do
nothing, so the runtime calls it unconditionally.

- A span per client call (``start``, ``add``, ``send``, ``trigger``, ...),
  named ``"{kind} {job} {method}"``.
- A span per handler call, named ``"{kind} {job}"``. Inside a client call
  (``trigger``, a task's ``send``, a debounce reducer) it is a child of that
  call's span. A run started by an alarm is a new trace (its parent would
  otherwise be whatever span was current when ``open_jobs`` started), and it
  *links* to the span of the client call that made it due.
- That link survives restarts: a client call stamps its span context
  (a W3C ``traceparent`` string) on the ``AlarmSet`` events it commits, and
  the instance keeps the latest one while its alarm stands (alarms set by
  runs keep it, so every run of a schedule links to the ``start``).
- Metrics: ``durable_jobs.runs`` (counter by kind, job, handler and outcome),
  ``durable_jobs.run.duration`` and ``durable_jobs.alarm.lateness``
  (histograms, seconds, measured on the job's clock),
  ``durable_jobs.commit.batch_size`` (histogram) and ``durable_jobs.alarms.due``
  (observable gauge, summed over the open runtimes of the process).
"""

from __future__ import annotations

import contextvars
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from durable_jobs._errors import HandlerTimeout

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "AlarmSource",
    "HandlerSpan",
    "Telemetry",
    "load",
    "log_fields",
    "outcome_name",
    "parse_traceparent",
    "telemetry",
]

#: The instrumentation scope name of our tracer and meter.
SCOPE = "durable_jobs"
log = logging.getLogger("durable_jobs.telemetry")


def log_fields(
    kind: str,
    job: str,
    instance_id: str | None = None,
    *,
    run_count: int | None = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    """The ``extra`` fields of a log record about an instance (or a job, or a run)."""
    fields: dict[str, Any] = {"dj_kind": kind, "dj_job": job}
    if instance_id is not None:
        fields["dj_instance_id"] = instance_id
    if run_count is not None:
        fields["dj_run_count"] = run_count
    if attempt is not None:
        fields["dj_attempt"] = attempt
    return fields


def outcome_name(error: BaseException | None) -> str:
    """``succeeded``, ``failed``, ``timed_out`` or ``interrupted`` (not an Exception)."""
    if error is None:
        return "succeeded"
    if isinstance(error, HandlerTimeout):
        return "timed_out"
    if not isinstance(error, Exception):
        return "interrupted"
    return "failed"


class AlarmSource(Protocol):
    """What the ``durable_jobs.alarms.due`` gauge reads: a runtime's due alarms."""

    def alarms_due(self) -> int:
        """Alarms due now and not started yet."""
        ...


class HandlerSpan:
    """The span of one handler call (does nothing without OpenTelemetry)."""

    __slots__ = ("span",)

    def __init__(self, span: Span | None = None) -> None:
        self.span = span

    def finish(self, outcome: str, error: BaseException | None) -> None:
        """Record the call's outcome (and its exception, as an error status)."""
        span = self.span
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("durable_jobs.outcome", outcome)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


_NO_SPAN = HandlerSpan()
_UNKNOWN = object()


class _Untraced:
    """The context manager of a call that makes no span (a plain class: a generator
    context manager costs on every handler call)."""

    __slots__ = ()

    def __enter__(self) -> HandlerSpan:
        return _NO_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_UNTRACED = _Untraced()
# Set while a client call's span is current: handler calls inside it are its children.
_CLIENT_SPAN: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "durable_jobs_client_span", default=None
)


class Telemetry:
    """Spans and metrics; this base class does nothing (OpenTelemetry is not installed)."""

    #: Whether OpenTelemetry is installed (spans and metrics go to its global providers).
    enabled = False

    def client_call(
        self, kind: str, job: str, method: str, instance_id: object
    ) -> AbstractContextManager[object]:
        """The span of one client call."""
        return _UNTRACED

    def handler_call(
        self,
        kind: str,
        job: str,
        handler: str,
        instance_id: str,
        *,
        run_count: int | None,
        attempt: int | None,
        link: str | None,
    ) -> AbstractContextManager[HandlerSpan]:
        """The span of one handler call; ``link`` is the traceparent of the call that
        made an alarm run due."""
        return _UNTRACED

    def call_trace(self) -> str | None:
        """The traceparent of the client call in progress, if any (to store)."""
        return None

    def record_run(self, kind: str, job: str, handler: str, outcome: str, duration: float) -> None:
        """Count a handler call and its duration (seconds)."""

    def record_lateness(self, kind: str, job: str, seconds: float) -> None:
        """How late an alarm run started after its alarm's time."""

    def record_commit(self, size: int) -> None:
        """The number of instances one store transaction wrote."""

    def watch(self, source: AlarmSource) -> Callable[[], None]:
        """Report ``source``'s due alarms in the gauge until the returned call."""
        return _nothing


def _nothing() -> None:
    return None


#: Distinct attribute sets kept (jobs x handlers x outcomes; beyond, they are made again).
_MAX_ATTRIBUTE_SETS = 4096


def _attributes(attributes: dict[str, str], made: dict[Any, Any]) -> dict[str, str]:
    """``attributes``, to be kept in ``made`` (emptied first once it holds too many)."""
    if len(made) >= _MAX_ATTRIBUTE_SETS:
        made.clear()
    return attributes


# Whether an instrument drops what it is given: OpenTelemetry API's stand-in
# instruments do until the application sets a meter provider, which may happen at
# any time (they then record), so it is looked at on every call, written inline
# (``_dropped``): ``getattr(instrument, "_real_instrument", instrument) is None``.


def _traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` of a stored traceparent, None if malformed."""
    parts = value.split("-")
    if len(parts) != 4 or parts[0] != "00":
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if (len(parts[1]), len(parts[2]), len(parts[3])) != (32, 16, 2) or not trace_id or not span_id:
        return None
    return trace_id, span_id, flags & 0xFF


class _OpenTelemetry(Telemetry):
    """Spans and metrics on OpenTelemetry's global providers."""

    enabled = True

    def __init__(self) -> None:
        from opentelemetry import context, trace

        self._trace = trace
        self._empty = context.Context()
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()
        #: The types of the errors the SDK raised on a span, logged once each.
        self._failures: set[str] = set()
        self.bind()

    def bind(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        """Use these providers instead of OpenTelemetry's global ones (None: the global
        ones again). For tests, which cannot undo setting a global provider."""
        from opentelemetry import metrics
        from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER

        self._tracer_provider = tracer_provider
        self._tracer: Any = None
        # OpenTelemetry loads a provider named by this variable at its first use.
        self._provider_named = OTEL_PYTHON_TRACER_PROVIDER in os.environ
        meter = (metrics if meter_provider is None else meter_provider).get_meter(SCOPE)
        #: The attributes of each (kind, job, handler, outcome) and (kind, job), made once.
        self._run_attributes: dict[tuple[str, ...], dict[str, str]] = {}
        self._job_attributes: dict[tuple[str, ...], dict[str, str]] = {}
        self._runs = meter.create_counter(
            "durable_jobs.runs", unit="{run}", description="Handler calls, by outcome."
        )
        self._duration = meter.create_histogram(
            "durable_jobs.run.duration", unit="s", description="How long handler calls took."
        )
        self._lateness = meter.create_histogram(
            "durable_jobs.alarm.lateness",
            unit="s",
            description="How long after its alarm's time an alarm run started.",
        )
        self._batch = meter.create_histogram(
            "durable_jobs.commit.batch_size",
            unit="{instance}",
            description="Instances written by one store transaction (group commit).",
        )
        meter.create_observable_gauge(
            "durable_jobs.alarms.due",
            callbacks=[self._observe_due],
            unit="{alarm}",
            description="Alarms due now and not started yet.",
        )

    def _recording_tracer(self) -> Any:
        """Our tracer once the application set a tracer provider, else None.

        The API's stand-in (no provider set yet) would make a non-recording span
        per call, at a cost of tens of microseconds: skip them until it is set.
        While none is set, the check is one read of the API's global (asking
        ``get_tracer_provider()`` reads the environment on every call).
        """
        tracer = self._tracer
        if tracer is None:
            trace = self._trace
            if (
                self._tracer_provider is None
                and getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None
                and not self._provider_named
            ):
                return None  # no global provider set yet, none named in the environment
            provider = self._tracer_provider or trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
                return None
            tracer = self._tracer = provider.get_tracer(SCOPE)
        return tracer

    def _observe_due(self, _options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        # Called from the metric reader's thread, while trio may change what it reads:
        # a read that meets a change is made again.
        total = 0
        for _ in range(3):
            try:
                total = sum(source.alarms_due() for source in list(self._sources))
            except RuntimeError:  # "changed size during iteration"
                continue
            break
        return [Observation(total)]

    def client_call(
        self, kind: str, job: str, method: str, instance_id: object
    ) -> AbstractContextManager[object]:
        tracer = self._recording_tracer()
        if tracer is None:
            return _UNTRACED
        return self._client_span(tracer, kind, job, method, instance_id)

    @contextmanager
    def _client_span(
        self, tracer: Any, kind: str, job: str, method: str, instance_id: object
    ) -> Iterator[None]:
        attributes: dict[str, str] = {
            "durable_jobs.kind": kind,
            "durable_jobs.job": job,
            "durable_jobs.call": method,
        }
        if isinstance(instance_id, str):
            attributes["durable_jobs.instance_id"] = instance_id
        span = self._start(tracer, f"{kind} {job} {method}", attributes=attributes)
        if span is None:
            yield
            return
        token = _CLIENT_SPAN.set(span)
        try:
            with self._trace.use_span(span, end_on_exit=False):
                yield
        finally:
            _CLIENT_SPAN.reset(token)
            self._end(span)

    def _start(self, tracer: Any, name: str, **options: Any) -> Any:
        """A new span, or None if the SDK's pipeline raised (see :meth:`_failed`)."""
        try:
            return tracer.start_span(name, **options)
        except Exception as exc:
            self._failed(exc)
            return None

    def _end(self, span: Any) -> None:
        try:
            span.end()
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """A span processor (or anything else the SDK calls as a span starts or ends)
        raised: the call or run goes on without it, and the first such error of each
        type is logged."""
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        if name in self._failures:
            return
        self._failures.add(name)
        log.warning(
            "OpenTelemetry raised %s while starting or ending a span; durable-jobs goes "
            "on without that span (check your span processors). Later errors of this "
            "type are not logged.",
            name,
            exc_info=exc,
        )

    def handler_call(
        self,
        kind: str,
        job: str,
        handler: str,
        instance_id: str,
        *,
        run_count: int | None,
        attempt: int | None,
        link: str | None,
    ) -> AbstractContextManager[HandlerSpan]:
        tracer = self._tracer
        if tracer is None:
            if (
                self._tracer_provider is None
                and getattr(self._trace, "_TRACER_PROVIDER", _UNKNOWN) is None
                and not self._provider_named
            ):
                return _UNTRACED  # _recording_tracer()'s first case, inline: every run
            tracer = self._recording_tracer()
            if tracer is None:
                return _UNTRACED
        return self._handler_span(
            tracer,
            kind,
            job,
            handler,
            instance_id,
            run_count=run_count,
            attempt=attempt,
            link=link,
        )

    @contextmanager
    def _handler_span(
        self,
        tracer: Any,
        kind: str,
        job: str,
        handler: str,
        instance_id: str,
        *,
        run_count: int | None,
        attempt: int | None,
        link: str | None,
    ) -> Iterator[HandlerSpan]:
        trace = self._trace
        attributes: dict[str, str | int] = {
            "durable_jobs.kind": kind,
            "durable_jobs.job": job,
            "durable_jobs.instance_id": instance_id,
            "durable_jobs.handler": handler,
        }
        if run_count is not None:
            attributes["durable_jobs.run_count"] = run_count
        if attempt is not None:
            attributes["durable_jobs.attempt"] = attempt
        links: list[Any] = []
        client = _CLIENT_SPAN.get()
        parent = None
        if client is not None:
            # A run inside a client call: its child, and linked to it as the call
            # that made it due.
            links.append(trace.Link(client.get_span_context()))
        else:
            parent = self._empty  # an alarm run starts a trace of its own
            ids = parse_traceparent(link) if link is not None else None
            if ids is not None:
                trace_id, span_id, flags = ids
                links.append(
                    trace.Link(
                        trace.SpanContext(
                            trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags)
                        )
                    )
                )
        span = self._start(
            tracer,
            f"{kind} {job}",
            context=parent,
            kind=trace.SpanKind.CONSUMER if client is None else trace.SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
        )
        if span is None:
            yield _NO_SPAN
            return
        try:
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                yield HandlerSpan(span)
        finally:
            self._end(span)

    def call_trace(self) -> str | None:
        client = _CLIENT_SPAN.get()
        if client is None:
            return None
        ctx = client.get_span_context()
        if not ctx.is_valid:
            return None
        return _traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))

    def record_run(self, kind: str, job: str, handler: str, outcome: str, duration: float) -> None:
        runs, durations = self._runs, self._duration
        # _dropped(runs) and _dropped(durations) (every handler call).
        if (
            getattr(runs, "_real_instrument", runs) is None
            and getattr(durations, "_real_instrument", durations) is None
        ):
            return
        key = (kind, job, handler, outcome)
        attributes = self._run_attributes.get(key)
        if attributes is None:
            attributes = self._run_attributes[key] = _attributes(
                {
                    "durable_jobs.kind": kind,
                    "durable_jobs.job": job,
                    "durable_jobs.handler": handler,
                    "durable_jobs.outcome": outcome,
                },
                self._run_attributes,
            )
        runs.add(1, attributes)
        durations.record(duration, attributes)

    def record_lateness(self, kind: str, job: str, seconds: float) -> None:
        lateness = self._lateness
        if getattr(lateness, "_real_instrument", lateness) is None:  # _dropped
            return
        key = (kind, job)
        attributes = self._job_attributes.get(key)
        if attributes is None:
            attributes = self._job_attributes[key] = _attributes(
                {"durable_jobs.kind": kind, "durable_jobs.job": job}, self._job_attributes
            )
        lateness.record(max(seconds, 0.0), attributes)

    def record_commit(self, size: int) -> None:
        batch = self._batch
        if getattr(batch, "_real_instrument", batch) is not None:  # not _dropped
            batch.record(size)

    def watch(self, source: AlarmSource) -> Callable[[], None]:
        self._sources.add(source)
        return lambda: self._sources.discard(source)


def load() -> Telemetry:
    """OpenTelemetry's implementation if ``opentelemetry-api`` imports, else the no-op."""
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return Telemetry()
    return _OpenTelemetry()


#: The process's telemetry (see the module).
telemetry: Telemetry = load()
