"""OTEL_* variables reach the SDK: a worker exports spans to the OTLP/HTTP receiver this test runs,
under OTEL_SERVICE_NAME, with the messaging conventions' attributes on its process and send spans.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline.contracts.topics import FILES
from storage import ObjectStore
from storage.upload import upload_files
from tests.integration.conftest import make_photos
from tests.integration.helpers import await_processed

pytestmark = pytest.mark.integration


class OtlpReceiver:
    """A minimal OTLP/HTTP (protobuf) trace receiver: keeps every span with its resource attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                receiver.add(self.path, dict(self.headers), request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def add(self, path: str, headers: dict[str, str], request: ExportTraceServiceRequest) -> None:
        found = []
        for rs in request.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attrs = {a.key: _value(a.value) for a in span.attributes}
                    found.append({"name": span.name, "kind": span.kind, "resource": resource, "attributes": attrs,
                                  "path": path, "span_id": span.span_id.hex(), "parent": span.parent_span_id.hex()})
        with self._changed:
            self.spans += found
            self.headers.append({k.lower(): v for k, v in headers.items()})
            self._changed.notify_all()

    def wait_for(self, predicate: Any, timeout_s: float) -> list[dict[str, Any]]:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.spans), timeout_s), (
                f"spans not received within {timeout_s:.0f}s; got {[s['name'] for s in self.spans]}"
            )
            return list(self.spans)

    def close(self) -> None:
        self._server.shutdown()


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


def test_a_worker_exports_to_the_otel_endpoint_under_otel_service_name(
    receiver: OtlpReceiver, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files = watch(FILES)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "studio-resize",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=studio", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
            "OTEL_BSP_SCHEDULE_DELAY": "200"}
    start_worker("ingest")
    start_worker("resize", **otel).wait_for_line(r"resize: assigned", 90)
    [photo] = make_photos(photo_dir / "otlp", 1, seed=171, sizes=[(900, 600)])
    [result] = upload_files(store, [photo], shoot_id)
    await_processed(files, {result.file_id})

    def both(spans: list[dict[str, Any]]) -> bool:
        names = {s["name"] for s in spans if s["attributes"].get("messaging.kafka.message.key") == result.file_id}
        return {"process files", "send files"} <= names

    spans = [s for s in receiver.wait_for(both, 60) if s["attributes"].get("messaging.kafka.message.key") == result.file_id]
    process = next(s for s in spans if s["name"] == "process files")
    send = next(s for s in spans if s["name"] == "send files" and s["parent"] == process["span_id"])
    assert process["path"] == "/v1/traces"
    assert receiver.headers[0].get("x-tenant") == "studio"  # OTEL_EXPORTER_OTLP_HEADERS
    for span in (process, send):
        assert span["resource"]["service.name"] == "studio-resize"
        assert span["resource"]["deployment.environment"] == "test"
        assert span["attributes"]["messaging.system"] == "kafka"
        assert span["attributes"]["messaging.destination.name"] == FILES
    assert process["attributes"]["messaging.operation.name"] == "process"
    assert process["attributes"]["messaging.consumer.group.name"] == "darkroom.resize"
    assert send["attributes"]["messaging.operation.name"] == "send"
    assert "messaging.destination.partition.id" in send["attributes"]  # set on the broker's acknowledgement
    assert (process["kind"], send["kind"]) == (5, 4)  # SPAN_KIND_CONSUMER, SPAN_KIND_PRODUCER
