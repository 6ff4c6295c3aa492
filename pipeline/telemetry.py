"""Tracing set-up of a worker process: an OpenTelemetry tracer provider and its span exporters.

The standard `OTEL_*` variables are honoured, mostly by letting the SDK read them: the OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._TRACES_ENDPOINT`), headers, timeout and protocol
(`http/protobuf`; `grpc` with the `grpc` extra), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`,
the sampler (`OTEL_TRACES_SAMPLER`, `..._ARG`), `OTEL_PROPAGATORS` and `OTEL_SDK_DISABLED`. Without
them, `DARKROOM_TELEMETRY__OTLP_ENDPOINT` and `__SERVICE_NAME` (+ `-<stage>`) apply. Spans also go to a
JSON-lines file when `DARKROOM_TELEMETRY__SPAN_FILE` is set (tests; several processes may share it).
With no exporter, no span is made at all: the `traceparent` header still carries the trace on.
"""

from __future__ import annotations

import os
import socket
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

from pipeline.errors import ConfigError
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


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def otlp_configured(settings: TelemetrySettings) -> bool:
    """True when spans go to an OTLP collector: our setting, or the standard OTEL_* endpoint variables."""
    if _env("OTEL_SDK_DISABLED").lower() == "true" or _env("OTEL_TRACES_EXPORTER").lower() == "none":
        return False
    return bool(settings.otlp_endpoint or _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def exporting(settings: TelemetrySettings) -> bool:
    """True when spans go anywhere (spans cost a few microseconds each: made only then)."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return False
    return otlp_configured(settings) or settings.span_file is not None


def resource(settings: TelemetrySettings, stage: str) -> Resource:
    """Who reports: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over `<service_name>-<stage>`."""
    attributes: dict[str, str] = {"darkroom.stage": stage, "service.instance.id": f"{socket.gethostname()}-{os.getpid()}"}
    named_by_env = _env("OTEL_SERVICE_NAME") or "service.name=" in _env("OTEL_RESOURCE_ATTRIBUTES")
    if not named_by_env:
        attributes["service.name"] = f"{settings.service_name}-{stage}"
    return Resource.create(attributes)


def _otlp_exporter(settings: TelemetrySettings) -> SpanExporter:
    """The OTLP exporter the protocol variables ask for; endpoint, headers and timeout are read by the SDK."""
    protocol = (_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    endpoint = traces_url(settings.otlp_endpoint) if settings.otlp_endpoint else None
    if protocol == "http/protobuf":
        # Imported only when used: it pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint)
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError as exc:
            raise ConfigError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the grpc exporter: pip install 'darkroom[grpc]'") from exc
        exporter: SpanExporter = GrpcSpanExporter(endpoint=settings.otlp_endpoint) if endpoint else GrpcSpanExporter()
        return exporter
    raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported; use http/protobuf or grpc")


def build_tracer_provider(settings: TelemetrySettings, stage: str) -> TracerProvider:
    """A tracer provider for a worker of `stage`, exporting where the settings and OTEL_* variables say.

    The sampler is the SDK's reading of OTEL_TRACES_SAMPLER (default: parent-based, always on).
    """
    provider = TracerProvider(resource=resource(settings, stage))
    if otlp_configured(settings):
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings)))
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
