"""OTEL_* variables, producer spans, process metrics and JSON logs, without a broker."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.errors import ConfigError
from pipeline.logs import JsonFormatter
from pipeline.metrics import StageMetrics
from pipeline.settings import TelemetrySettings
from pipeline.telemetry import build_tracer_provider, exporting, resource
from pipeline.tracing import context_from_headers, headers_with_span


def test_otel_service_name_wins_over_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resource(TelemetrySettings(), "resize").attributes["service.name"] == "darkroom-resize"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "studio-resize")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    attrs = resource(TelemetrySettings(), "resize").attributes
    assert attrs["service.name"] == "studio-resize" and attrs["deployment.environment"] == "prod"
    assert attrs["darkroom.stage"] == "resize"


def test_the_standard_endpoint_variable_turns_export_on_and_sdk_disabled_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    assert not exporting(TelemetrySettings())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert exporting(TelemetrySettings())
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not exporting(TelemetrySettings())


def test_the_sampler_comes_from_otel_traces_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = build_tracer_provider(TelemetrySettings(), "resize")
    assert "0.25" in provider.sampler.get_description()


def test_an_unsupported_otlp_protocol_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        build_tracer_provider(TelemetrySettings(), "resize")


def test_the_send_span_context_replaces_the_propagation_headers() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    span = provider.get_tracer("t").start_span("send files", context=context_from_headers([("traceparent", parent.encode())]))
    headers = headers_with_span([("eventType", b"file.uploaded"), ("traceparent", parent.encode())], span)
    span.end()
    tp = dict(headers)["traceparent"].decode()
    assert tp == f"00-0af7651916cd43dd8448eb211c80319c-{span.get_span_context().span_id:016x}-01"
    assert [k for k, _ in headers].count("traceparent") == 1 and ("eventType", b"file.uploaded") in headers


def test_metrics_include_process_memory_and_cpu() -> None:
    metrics = StageMetrics("resize")
    text = metrics.render().decode()
    assert "process_resident_memory_bytes " in text and "process_cpu_seconds_total " in text
    metrics.shutdown()


def test_json_logs_carry_the_trace_and_span_ids() -> None:
    tracer = TracerProvider().get_tracer("t")
    record = logging.LogRecord("darkroom", logging.WARNING, __file__, 1, "hello %s", ("there",), None)
    with tracer.start_as_current_span("process files") as span:
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello there" and line["level"] == "WARNING"
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "trace_id" not in json.loads(JsonFormatter().format(record))
