"""The envelope, its headers and the registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.contracts.events import FILE_UPLOADED, FileUploaded, default_registry
from pipeline.envelope import (
    Envelope,
    build_envelope,
    deterministic_id,
    envelope_headers,
    headers_dict,
)
from pipeline.errors import InvalidEvent
from pipeline.tracing import trace_id_of


def uploaded() -> FileUploaded:
    return FileUploaded(file_id="f1", shoot_id="s1", bucket="b", key="originals/shoots/s1/f1.jpg", size=3, etag="e")


def test_envelope_round_trips_in_camel_case() -> None:
    env = build_envelope(FILE_UPLOADED, "1.0.0", uploaded(), subject="f1", producer="test", event_id="id-1")
    body = json.loads(env.to_bytes())
    assert set(body) == {"eventId", "eventType", "version", "occurredAt", "producer", "correlationId",
                         "causationId", "subject", "data"}
    assert body["data"]["fileId"] == "f1" and body["correlationId"] == "id-1"
    assert Envelope.from_bytes(env.to_bytes()) == env


def test_causation_and_correlation_follow_the_cause() -> None:
    cause = build_envelope(FILE_UPLOADED, "1.0.0", uploaded(), subject="f1", producer="t", event_id="a", correlation_id="upload-7")
    child = build_envelope(FILE_UPLOADED, "1.0.0", uploaded(), subject="f1", producer="t", event_id="b", cause=cause)
    assert child.correlation_id == "upload-7" and child.causation_id == "a"


def test_deterministic_ids_are_stable_and_distinct() -> None:
    assert deterministic_id("a", "b") == deterministic_id("a", "b")
    assert deterministic_id("a", "b") != deterministic_id("ab", "")


def test_headers_carry_type_version_and_a_continued_trace() -> None:
    env = build_envelope(FILE_UPLOADED, "1.0.0", uploaded(), subject="f1", producer="t", event_id="a")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = headers_dict(envelope_headers(env, parent))
    assert headers["eventType"] == b"file.uploaded" and headers["version"] == b"1.0.0"
    assert headers["content-type"] == b"application/json"
    assert trace_id_of(headers["traceparent"].decode()) == "0af7651916cd43dd8448eb211c80319c"
    assert headers["traceparent"].decode() != parent  # a new span in the same trace
    fresh = headers_dict(envelope_headers(env))["traceparent"].decode()
    assert trace_id_of(fresh) is not None


def test_registry_decodes_typed_payloads() -> None:
    env = build_envelope(FILE_UPLOADED, "1.4.2", uploaded(), subject="f1", producer="t", event_id="a")
    event = default_registry().decode(env.to_bytes())
    assert isinstance(event.payload, FileUploaded) and event.payload.file_id == "f1"


@pytest.mark.parametrize("raw,reason", [
    (b"", "empty message body"),
    (b"not json", "invalid envelope"),
    (b'{"eventId": "x"}', "invalid envelope"),
])
def test_registry_rejects_unreadable_bodies(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        default_registry().decode(raw)


def test_registry_rejects_unknown_types_and_majors_and_bad_payloads() -> None:
    base = build_envelope(FILE_UPLOADED, "1.0.0", uploaded(), subject="f1", producer="t", event_id="a")
    unknown_major = base.model_copy(update={"version": "2.0.0"})
    with pytest.raises(InvalidEvent, match="unknown event file.uploaded v2"):
        default_registry().decode(unknown_major.to_bytes())
    bad = base.model_copy(update={"data": {"fileId": "../etc"}})
    with pytest.raises(InvalidEvent, match="invalid file.uploaded"):
        default_registry().decode(bad.to_bytes())


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        Envelope(event_id="a", event_type="a.b", version="1.0.0", occurred_at=datetime(2026, 1, 1),
                 producer="p", correlation_id="c", subject="s", data={})
    Envelope(event_id="a", event_type="a.b", version="1.0.0", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
             producer="p", correlation_id="c", subject="s", data={})
