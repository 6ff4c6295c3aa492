"""Ingest: S3 event records → file.uploaded, without any service."""

from __future__ import annotations

import json

import pytest

from pipeline.contracts.events import default_registry
from pipeline.envelope import Envelope, headers_dict
from pipeline.errors import InvalidEvent
from pipeline.stage import Received
from stages.ingest.stage import IngestStage, uploaded_event


def record(key: str, event: str = "s3:ObjectCreated:Put", bucket: str = "darkroom") -> dict:
    return {
        "eventName": event, "eventTime": "2026-11-26T19:15:04Z",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 5, "eTag": '"5d41402abc4b2a76b9719d911017c592"'}},
    }


def message(body: object) -> Received:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Received("storage.events", 0, 7, b"s3", raw, [], 0)


def test_a_put_of_an_original_becomes_file_uploaded_keyed_by_file_id() -> None:
    [out] = IngestStage("darkroom", "test").process(message({"Records": [record("originals/shoots/s1/f1.jpg")]}))
    assert out.topic == "files" and out.key == b"f1"
    assert headers_dict(out.headers)["eventType"] == b"file.uploaded"
    event = default_registry().decode(out.value)
    assert event.payload.model_dump() == {
        "file_id": "f1", "shoot_id": "s1", "bucket": "darkroom", "key": "originals/shoots/s1/f1.jpg",
        "size": 5, "etag": "5d41402abc4b2a76b9719d911017c592",
    }
    assert event.envelope.subject == "f1" and event.envelope.correlation_id == event.envelope.event_id


def test_the_event_id_is_the_same_from_the_notification_and_the_reconciler() -> None:
    [out] = IngestStage("darkroom", "test").process(message({"Records": [record("originals/shoots/s1/f1.jpg")]}))
    _, envelope = uploaded_event("darkroom", "originals/shoots/s1/f1.jpg", 5, "5d41402abc4b2a76b9719d911017c592", "reconciler")
    assert Envelope.from_bytes(out.value).event_id == envelope.event_id


@pytest.mark.parametrize("body", [
    {"Bucket": "Test-Bucket", "Event": "s3:TestEvent", "Service": "S3"},
    {"Records": [record("renditions/shoots/s1/f1/web.jpg")]},
    {"Records": [record("originals/shoots/s1/f1.jpg", event="s3:ObjectRemoved:Delete")]},
    {"Records": [record("originals/shoots/s1/f1.jpg", bucket="someone-else")]},
])
def test_notifications_that_are_not_uploads_of_originals_are_skipped(body: dict) -> None:
    assert IngestStage("darkroom", "test").process(message(body)) == []


@pytest.mark.parametrize("key,reason", [
    ("originals/shoots/../../etc/passwd.jpg", "untrusted key"),
    ("originals/shoots/s1/evil%0Aname.jpg", "untrusted key"),
    ("originals/shoots/s1/notes.txt", "untrusted key"),
    ("originals/shoots/s1/a/b/c.jpg", "untrusted key"),
])
def test_untrusted_keys_are_refused_with_the_reason(key: str, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        IngestStage("darkroom", "test").process(message({"Records": [record(key)]}))


@pytest.mark.parametrize("body,reason", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    ({"Hello": "world"}, "no Records"),
    ({"Records": [{"eventName": "s3:ObjectCreated:Put"}]}, "invalid S3 event record"),
])
def test_unreadable_notifications_are_invalid_events(body: object, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        IngestStage("darkroom", "test").process(message(body))
