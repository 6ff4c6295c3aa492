"""Tracing in the runner: each processing is a span, child of the consumed traceparent, parent of the outputs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from pipeline.envelope import H_TRACEPARENT, headers_dict
from pipeline.publisher import Outgoing
from pipeline.runner import StageRunner
from pipeline.stage import Received
from pipeline.telemetry import JsonLinesSpanExporter, traces_url
from pipeline.tracing import child_traceparent, trace_id_of
from tests.unit.fakes import FakeConsumer, FakeMessage, FakePublisher
from tests.unit.test_runner import SETTINGS, ScriptedStage

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class ForwardingStage(ScriptedStage):
    """Publishes one event per message the way real stages do: Outgoing.event-style headers via child_traceparent."""

    def process(self, message: Received) -> list[Outgoing]:
        if message.value == b"poison":
            return super().process(message)
        parent = message.header(H_TRACEPARENT)
        return [Outgoing("out", message.key, b"x", [(H_TRACEPARENT, child_traceparent(parent).encode())])]


def run(messages: list[FakeMessage]) -> tuple[list, FakePublisher]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    consumer = FakeConsumer(messages)
    publisher = FakePublisher(consumer.changed)
    runner = StageRunner(ForwardingStage(), consumer, publisher, SETTINGS, tracer=provider.get_tracer("test"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert consumer.wait_committed({("files", 0): len(messages)})
    runner.stop()
    thread.join(10)
    return list(exporter.get_finished_spans()), publisher


def test_processing_span_continues_the_consumed_trace_and_parents_the_outputs() -> None:
    spans, publisher = run([FakeMessage("files", 0, 0, b"k", b"v", [("eventType", b"x.y"), (H_TRACEPARENT, PARENT.encode())])])
    [span] = spans
    assert span.name == "process files"
    assert span.attributes["messaging.operation.name"] == "process"
    assert span.attributes["messaging.consumer.group.name"] == "darkroom.fake"
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert span.attributes["messaging.destination.name"] == "files" and span.attributes["darkroom.event_type"] == "x.y"
    [out] = publisher.published
    # The output names the processing span as its parent: the next stage's span becomes its child.
    assert headers_dict(out.headers)[H_TRACEPARENT].decode() == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"


def test_message_without_traceparent_starts_a_trace_and_failures_mark_the_span() -> None:
    spans, publisher = run([
        FakeMessage("files", 0, 0, b"a", b"v", [("eventType", b"x.y")]),
        FakeMessage("files", 0, 1, b"b", b"poison", [("eventType", b"x.y"), (H_TRACEPARENT, PARENT.encode())]),
    ])
    by_name: dict[str, list] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    [root] = [s for s in by_name["process files"] if s.attributes["messaging.kafka.offset"] == 0]
    assert root.parent is None
    [failed] = [s for s in by_name["process files"]
                if s.attributes["messaging.kafka.offset"] == 1 and not s.attributes["darkroom.dead_letter"]]
    assert failed.status.status_code is StatusCode.ERROR
    [letter] = [s for s in by_name["process files"] if s.attributes["darkroom.dead_letter"]]
    assert letter.context.trace_id == failed.context.trace_id  # the dead-lettering stays in the photo's trace
    out = [o for o in publisher.published if o.topic == "out"][0]
    assert trace_id_of(headers_dict(out.headers)[H_TRACEPARENT].decode()) == f"{root.context.trace_id:032x}"


def test_outside_a_span_child_traceparent_keeps_the_trace_with_a_new_span_id() -> None:
    child = child_traceparent(PARENT)
    assert trace_id_of(child) == "0af7651916cd43dd8448eb211c80319c" and child != PARENT


def test_json_lines_exporter_appends_one_span_per_line(tmp_path: Path) -> None:
    path = tmp_path / "spans" / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["name"] for s in lines] == ["inner", "outer"]
    assert lines[0]["parent_id"] == lines[1]["context"]["span_id"]


def test_otlp_endpoint_is_a_base_url() -> None:
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"
