"""An OTLP/HTTP collector stand-in on 127.0.0.1: keeps the spans and metric names it receives."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class OtlpCollector:
    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []  # (service.name, span)
        self.metrics: dict[str, list[Any]] = {}  # metric name -> data points
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def receive(self, path: str, body: bytes) -> bool:
        if path == "/v1/traces":
            traces = ExportTraceServiceRequest.FromString(body)
            with self._lock:
                for resource_spans in traces.resource_spans:
                    service = next((a.value.string_value for a in
                                    resource_spans.resource.attributes
                                    if a.key == "service.name"), "")
                    for scope in resource_spans.scope_spans:
                        self.spans.extend((service, span) for span in scope.spans)
            return True
        if path == "/v1/metrics":
            exported = ExportMetricsServiceRequest.FromString(body)
            with self._lock:
                for resource_metrics in exported.resource_metrics:
                    for scope in resource_metrics.scope_metrics:
                        for metric in scope.metrics:
                            kind = metric.WhichOneof("data")
                            points = list(getattr(metric, kind).data_points) if kind else []
                            self.metrics.setdefault(metric.name, []).extend(points)
            return True
        return False

    def trace(self, trace_id: bytes) -> list[tuple[str, Span]]:
        with self._lock:
            return [(service, span) for service, span in self.spans
                    if span.trace_id == trace_id]

    def spans_named(self, prefix: str) -> list[Span]:
        with self._lock:
            return [span for _, span in self.spans if span.name.startswith(prefix)]


def _handler(collector: OtlpCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            accepted = collector.receive(self.path, body)
            self.send_response(200 if accepted else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
