"""OpenTelemetry: tracer and meter providers from the standard OTEL_* variables, and our metrics.

Exporters follow the OpenTelemetry conventions: ``OTEL_TRACES_EXPORTER`` /
``OTEL_METRICS_EXPORTER`` = ``otlp`` | ``console`` | ``none``. Unset, OTLP (HTTP/protobuf) is
used when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the signal's own endpoint) is set, and nothing
otherwise. Spans and metrics cost next to nothing when no exporter is configured.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Histogram, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

log = logging.getLogger("team_memory_core.telemetry")

tracer = trace.get_tracer("team_memory")
meter = metrics.get_meter("team_memory")

saves = meter.create_counter(
    "team_memory.saves", unit="{memory}",
    description="save_memory calls, by whether the text was already saved")
decisions = meter.create_counter(
    "team_memory.decisions", unit="{memory}",
    description="Ingestion decisions committed, by kind (add/duplicate/update/supersede) "
    "and policy")
activity_duration = meter.create_histogram(
    "team_memory.activity.duration", unit="s",
    description="Duration of one activity attempt, by activity type and outcome")
search_duration = meter.create_histogram(
    "team_memory.search.duration", unit="s", description="Duration of search_memory")
llm_tokens = meter.create_counter(
    "team_memory.llm.tokens", unit="{token}",
    description="Tokens billed by the LLM, by model and direction (input/output)")

_configured: list[TracerProvider | MeterProvider] = []


E = TypeVar("E")  # a span or metric exporter


def _exporter(signal: str, otlp: Callable[[], E], console: Callable[[], E]) -> E | None:
    """The exporter OTEL_<SIGNAL>_EXPORTER names for ``signal`` (traces, metrics); unset, OTLP
    when an OTLP endpoint is set. None: nothing to export."""
    choice = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower()
    if not choice:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        choice = "otlp" if endpoint else "none"
    choice = choice.split(",")[0].strip()
    if choice == "otlp":
        return otlp()
    if choice == "console":
        return console()
    if choice != "none":
        log.warning("OTEL_%s_EXPORTER=%s is not supported (otlp, console, none)",
                    signal.upper(), choice)
    return None


def _otlp_spans() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _otlp_metrics() -> MetricExporter:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def configure_telemetry(component: str) -> bool:
    """Install the global providers for this process (once); True when anything is exported.

    ``component`` (serve, worker, ...) becomes the default ``service.name``
    (``team-memory-<component>``); OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override.
    """
    if _configured:
        return True
    span_exporter = _exporter("traces", _otlp_spans, ConsoleSpanExporter)
    metric_exporter = _exporter("metrics", _otlp_metrics, ConsoleMetricExporter)
    if span_exporter is None and metric_exporter is None:
        return False
    resource = Resource.create({"service.name": os.environ.get(
        "OTEL_SERVICE_NAME", f"team-memory-{component}")})
    if span_exporter is not None:
        tracer_provider = TracerProvider(resource=resource)
        processor = (SimpleSpanProcessor(span_exporter)
                     if isinstance(span_exporter, ConsoleSpanExporter)
                     else BatchSpanProcessor(span_exporter))
        tracer_provider.add_span_processor(processor)
        trace.set_tracer_provider(tracer_provider)
        _configured.append(tracer_provider)
    if metric_exporter is not None:
        readers: list[MetricReader] = [PeriodicExportingMetricReader(metric_exporter)]
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(meter_provider)
        _configured.append(meter_provider)
    atexit.register(shutdown_telemetry)
    return True


def shutdown_telemetry() -> None:
    """Flush and stop the exporters (spans of the last requests are not lost at exit)."""
    while _configured:
        _configured.pop().shutdown()


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


P = ParamSpec("P")
R = TypeVar("R")


def timed(histogram: Histogram) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Record the duration of an async function (successes and failures alike)."""

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            outcome = "ok"
            try:
                return await function(*args, **kwargs)
            except BaseException:
                outcome = "error"
                raise
            finally:
                histogram.record(time.perf_counter() - started, {"outcome": outcome})

        return wrapper

    return decorate


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span active in this context, if any."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (empty when nothing is traced), to continue
    the trace elsewhere: the outbox relay starts a save's workflow in the save's trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def continued(carrier: dict[str, str] | None) -> Iterator[None]:
    """Run the block in the trace ``carrier`` (a ``trace_carrier()``) was taken from."""
    if not carrier:
        yield
        return
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def tracing_enabled() -> bool:
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def record_sql_span(query: Any) -> None:
    """asyncpg query logger: one span per statement (it runs in the caller's context, so the
    span's parent is the activity or request that ran it). Arguments are never recorded."""
    end = time.time_ns()
    statement: str = " ".join(query.query.split())
    operation = statement.split(" ", 1)[0].rstrip(";").upper() if statement else "SQL"
    sql_span = tracer.start_span(
        f"postgresql {operation}", kind=trace.SpanKind.CLIENT,
        start_time=end - int(query.elapsed * 1e9),
        attributes={"db.system.name": "postgresql", "db.operation.name": operation,
                    "db.query.text": statement[:2000]},
    )
    if query.exception is not None:
        sql_span.record_exception(query.exception)
        sql_span.set_status(trace.StatusCode.ERROR, type(query.exception).__name__)
    sql_span.end(end_time=end)


class _Latest:
    """The last value a background refresh measured, reported by an observable gauge."""

    def __init__(self) -> None:
        self.value: int | None = None

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [] if self.value is None else [Observation(self.value)]


pending_ingestions = _Latest()
meter.create_observable_gauge(
    "team_memory.ingestions.pending", callbacks=[pending_ingestions.observe],
    unit="{workflow}", description="Ingestion workflows running (saved, not yet committed)")


def metrics_enabled() -> bool:
    return isinstance(metrics.get_meter_provider(), MeterProvider)


class ActivityMetricsInterceptor(Interceptor):
    """Worker interceptor: the duration of every activity attempt, by type and outcome."""

    def intercept_activity(
        self, next: ActivityInboundInterceptor
    ) -> ActivityInboundInterceptor:
        return _ActivityTimer(next)


class _ActivityTimer(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await super().execute_activity(input)
        except BaseException:
            outcome = "error"
            raise
        finally:
            activity_duration.record(time.perf_counter() - started, {
                "activity": activity.info().activity_type, "outcome": outcome})
