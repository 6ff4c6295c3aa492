"""Tracing set-up of a worker process: an OpenTelemetry tracer provider and its span exporters.

Spans go to an OTLP/HTTP collector when `DARKROOM_TELEMETRY__OTLP_ENDPOINT` is set, and/or to a
JSON-lines file when `DARKROOM_TELEMETRY__SPAN_FILE` is set (tests read it; several worker processes
may share one file). With neither, spans are still created, because the ids of the processing span
are what the runner propagates in the `traceparent` header of its outputs; they are just not exported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from pipeline.settings import TelemetrySettings

# Files are for tests and debugging: flush often so a test can await its spans quickly.
_FILE_EXPORT_DELAY_MS = 200.0


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one line of OTel's JSON (`ReadableSpan.to_json`) to a file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(span.to_json(indent=None) + "\n" for span in spans).encode()
        try:
            with self._lock:
                # One O_APPEND write per batch, so lines of processes sharing the file do not interleave.
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector base URL (as OTEL_EXPORTER_OTLP_ENDPOINT is read)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def build_tracer_provider(settings: TelemetrySettings, stage: str) -> TracerProvider:
    """A tracer provider for a worker of `stage`, exporting where the settings say."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"{settings.service_name}-{stage}"}))
    if settings.otlp_endpoint:
        # Imported only when used: it pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint))))
    if settings.span_file is not None:
        provider.add_span_processor(
            BatchSpanProcessor(JsonLinesSpanExporter(settings.span_file), schedule_delay_millis=_FILE_EXPORT_DELAY_MS)
        )
    return provider


def install_tracer_provider(settings: TelemetrySettings, stage: str) -> TracerProvider:
    """Build the provider and make it the process-wide one, so code below the runner can add child spans."""
    provider = build_tracer_provider(settings, stage)
    trace.set_tracer_provider(provider)
    return provider
