"""Observability on the real stack: /metrics counters, one trace per photo across processes, /health/*.

The Kafka outage test stops the session's broker; it runs last in this module and brings the stack
back with `stack.up()` (same data dir: topics, offsets and the gateway's notifications survive),
then waits until the worker sees the broker again, so later modules find the stack as it was.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from operations.devstack import DevStack
from pipeline.contracts.events import FILE_PROCESSED
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES
from pipeline.tracing import trace_id_of
from storage import ObjectStore
from storage.upload import upload_files
from tests.integration.conftest import WorkerProcess, make_photos
from tests.integration.helpers import (
    await_processed,
    dead_letters,
    events_of,
    uploaded_events,
)

pytestmark = pytest.mark.integration


def http_url(worker: WorkerProcess) -> str:
    line = worker.wait_for_line(r"health and metrics on http://")
    match = re.search(r"(http://[\d.]+:\d+)", line)
    assert match is not None
    return match.group(1)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def poll(what: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float, describe: str) -> Any:
    """Poll an endpoint until `done(result)`; HTTP has no event to await, a deadline bounds the wait."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = what()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{describe} not reached within {timeout_s:.0f}s; last: {result!r}")
        time.sleep(0.2)


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_processed_and_dead_lettered_photos(
    store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files, dlq = watch(FILES), watch(DEAD_LETTER_QUEUE)
    start_worker("ingest")
    resize = start_worker("resize", DARKROOM_TELEMETRY__STATS_INTERVAL_MS="500")
    url = http_url(resize)
    resize.wait_for_line(r"resize: assigned")
    before = get(f"{url}/metrics")[1]

    good = make_photos(photo_dir / "metrics", 2, seed=61, sizes=[(1200, 900)])
    corrupt = photo_dir / "metrics" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    results = upload_files(store, [*good, corrupt], shoot_id)
    ids = {r.file_id for r in results}
    bad_id = next(r.file_id for r in results if r.path == corrupt)
    await_processed(files, ids - {bad_id})
    dlq.until(lambda seen: any(s.key == bad_id.encode() for s in seen), 60)
    assert [d.stage for d in dead_letters(dlq) if d.key == bad_id.encode()] == ["resize"]

    def delta(text: str, name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    # Counters are updated when the offset finishes, a moment after the output is acknowledged.
    after = poll(lambda: get(f"{url}/metrics")[1],
                 lambda t: delta(t, "darkroom_events_processed_total", stage="resize", event_type="file.uploaded") >= 2
                 and delta(t, "darkroom_events_dead_lettered_total", stage="resize") >= 1,
                 30, "processed and dead-lettered counters")
    assert delta(after, "darkroom_events_failed_total", stage="resize", kind="permanent") >= 1
    assert delta(after, "darkroom_processing_duration_seconds_count", stage="resize", outcome="ok") >= 2
    assert metric(after, "darkroom_events_skipped_total", stage="resize", event_type="file.processed") >= 2
    assert "darkroom_in_flight{" in after
    # The lag gauge comes from librdkafka statistics, per assigned partition, once offsets are committed.
    poll(lambda: get(f"{url}/metrics")[1], lambda t: 'darkroom_consumer_lag{partition="' in t, 30, "consumer lag gauge")


def test_one_upload_is_one_trace_across_the_worker_processes(
    store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str, tmp_path: Path
) -> None:
    span_file = tmp_path / "spans.jsonl"
    files = watch(FILES)
    for stage in ("ingest", "resize"):
        start_worker(stage, DARKROOM_TELEMETRY__SPAN_FILE=str(span_file)).wait_for_line(rf"{stage}: assigned")
    [photo] = make_photos(photo_dir / "traced", 1, seed=62, sizes=[(1000, 800)])
    [result] = upload_files(store, [photo], shoot_id)
    await_processed(files, {result.file_id})
    [processed] = events_of(files.seen, FILE_PROCESSED, {result.file_id})
    uploaded = uploaded_events(files, {result.file_id})[result.file_id]
    processed_tp = processed.headers["traceparent"].decode()
    uploaded_tp = uploaded.headers["traceparent"].decode()
    trace_id = trace_id_of(processed_tp)
    assert trace_id is not None and trace_id_of(uploaded_tp) == trace_id  # one trace id from ingest to resize

    def spans() -> list[dict[str, Any]]:
        if not span_file.exists():
            return []
        found = [json.loads(line) for line in span_file.read_text().splitlines() if line]
        return [s for s in found if s["context"]["trace_id"] == f"0x{trace_id}"]

    # Spans are flushed by a batch processor (every 200 ms), so wait for all four to land in the file:
    # ingest's `process storage.events` and `send files`, resize's `process files` and `send files`.
    def complete(s: list[dict[str, Any]]) -> bool:
        names = [x["name"] for x in s]
        return {"process storage.events", "process files"} <= set(names) and names.count("send files") >= 2

    trace = poll(spans, complete, 30, "the four spans")
    [ingest] = [s for s in trace if s["name"] == "process storage.events"]
    [resize] = [s for s in trace if s["name"] == "process files"]
    sends = {s["parent_id"]: s for s in trace if s["name"] == "send files"}
    ingest_send, resize_send = sends[ingest["context"]["span_id"]], sends[resize["context"]["span_id"]]
    assert ingest["resource"]["attributes"]["service.name"] == "darkroom-ingest"
    assert resize["resource"]["attributes"]["service.name"] == "darkroom-resize"
    assert ingest["parent_id"] is None  # the upload notification carries no trace: ingest starts it
    # Messaging conventions: the consumer's processing is a child of the producer's send span.
    assert resize["parent_id"] == ingest_send["context"]["span_id"]
    assert ingest_send["kind"] == "SpanKind.PRODUCER" and resize["kind"] == "SpanKind.CONSUMER"
    # Headers name the send span of the message: file.uploaded → ingest's, file.processed → resize's.
    assert uploaded_tp.split("-")[2] == ingest_send["context"]["span_id"].removeprefix("0x")
    assert processed_tp.split("-")[2] == resize_send["context"]["span_id"].removeprefix("0x")
    assert resize["attributes"]["messaging.kafka.message.key"] == result.file_id
    assert resize["attributes"]["messaging.consumer.group.name"] == "darkroom.resize"


def test_health_endpoints_follow_the_broker_down_and_back(stack: DevStack, start_worker) -> None:
    """Runs last in this module: it stops the session's broker and restores it."""
    resize = start_worker("resize", DARKROOM_TELEMETRY__CHECK_TIMEOUT_S="2")
    url = http_url(resize)
    resize.wait_for_line(r"resize: assigned")
    for path in ("live", "ready", "kafka", "storage"):
        status, body = get(f"{url}/health/{path}")
        assert status == 200, (path, body)

    stack.kafka.stop()
    try:
        stopped_at = time.monotonic()
        status, body = poll(lambda: get(f"{url}/health/kafka"), lambda r: r[0] == 503, 15, "/health/kafka 503")
        assert time.monotonic() - stopped_at < 10
        assert json.loads(body)["reason"].startswith("kafka")
        # Readiness turns only after the check failed several times in a row (one blip is not an outage).
        poll(lambda: get(f"{url}/health/ready"), lambda r: r[0] == 503, 30, "/health/ready 503 while Kafka stays down")
        assert get(f"{url}/health/live")[0] == 200  # the worker itself is fine: no reason to restart it
    finally:
        stack.up()
    poll(lambda: get(f"{url}/health/kafka"), lambda r: r[0] == 200, 60, "/health/kafka 200 after restart")
    poll(lambda: get(f"{url}/health/ready"), lambda r: r[0] == 200, 60, "/health/ready 200 after restart")
