"""Ingest: S3 event records → file.uploaded / file.deleted, without any service."""

from __future__ import annotations

import json
import unicodedata
from urllib.parse import quote_plus

import pytest

from pipeline.contracts.events import default_registry
from pipeline.envelope import Envelope, headers_dict
from pipeline.errors import InvalidEvent
from pipeline.stage import Received
from stages.ingest.stage import IngestStage, decode_record_key, uploaded_event
from storage.keys import file_id_of, version_of

ETAG = "5d41402abc4b2a76b9719d911017c592"


def record(key: str, event: str = "s3:ObjectCreated:Put", bucket: str = "darkroom", etag: str | None = ETAG,
           time: str = "2026-11-26T19:15:04Z", sequencer: str = "1") -> dict:
    """A record as versitygw v1.8.0 writes it (observed: the key itself, etag null on deletes)."""
    return {
        "eventName": event, "eventTime": time,
        "s3": {"bucket": {"name": bucket}, "object": {
            "key": key, "size": 0 if etag is None else 5, "eTag": None if etag is None else f'"{etag}"',
            "sequencer": sequencer}},
    }


def message(body: object) -> Received:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Received("storage.events", 0, 7, b"s3", raw, [], 0)


def ingest(*records: dict, encoding: str = "raw") -> list:
    return IngestStage("darkroom", "test", encoding).process(message({"Records": list(records)}))  # type: ignore[arg-type]


def test_a_put_of_an_original_becomes_file_uploaded_keyed_by_file_id() -> None:
    key = "originals/shoots/s1/f1.jpg"
    [out] = ingest(record(key))
    assert out.topic == "files" and out.key == file_id_of(key).encode()
    assert headers_dict(out.headers)["eventType"] == b"file.uploaded"
    event = default_registry().decode(out.value)
    assert event.payload.model_dump() == {
        "file_id": file_id_of(key), "shoot_id": "s1", "bucket": "darkroom", "key": key,
        "size": 5, "etag": ETAG, "name": "f1.jpg", "version": version_of(event.envelope.event_id),
    }
    assert event.envelope.subject == file_id_of(key) and event.envelope.correlation_id == event.envelope.event_id


def test_a_redelivery_is_the_same_event_but_the_same_bytes_put_again_are_a_new_upload() -> None:
    key = "originals/shoots/s1/f1.jpg"
    [first], [again] = ingest(record(key)), ingest(record(key))
    # Put back later (a retouch undone, a photo deleted by mistake and uploaded again): same ETag.
    [later] = ingest(record(key, time="2026-11-26T19:30:00Z", sequencer="12"))
    ids = [Envelope.from_bytes(m.value).event_id for m in (first, again, later)]
    assert ids[0] == ids[1] != ids[2]
    assert first.key == later.key, "the same file, so it stays in order behind what came before"
    versions = [default_registry().decode(m.value).payload.version for m in (first, again, later)]
    assert versions[0] == versions[1] != versions[2], "each upload's renditions at keys of their own"
    # The reconciler's event for the same object (its notification lost) is deterministic too.
    reconciled = [uploaded_event("darkroom", key, 5, ETAG, "reconciler", None, "reconciled|2026-11-26T19:15:04+00:00")
                  for _ in range(2)]
    assert reconciled[0][1].event_id == reconciled[1][1].event_id and reconciled[0][0] == first.key.decode()


NAMES = ["IMG_0001 (1).JPG", "a+b.jpg", "Tom & Jerry #2.jpeg", "100%.png", unicodedata.normalize("NFC", "Café.jpg"),
         unicodedata.normalize("NFD", "Café.jpg"), "写真.jpg", "x" * 200 + ".webp"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("encoding", ["raw", "url"])
def test_names_arrive_intact_whether_the_store_writes_keys_raw_or_url_encoded(name: str, encoding: str) -> None:
    key = f"originals/shoots/s1/{name}"
    # versitygw writes the key itself; AWS S3 and MinIO URL-encode it with '+' for a space.
    sent = key if encoding == "raw" else quote_plus(key, safe="/")
    [out] = ingest(record(sent), encoding=encoding)
    data = default_registry().decode(out.value).payload
    assert data.key == key and data.file_id == file_id_of(key)
    assert data.name == unicodedata.normalize("NFC", name)


def test_a_plus_is_a_space_only_in_url_encoded_keys() -> None:
    assert decode_record_key("originals/shoots/s1/a+b.jpg", "raw") == "originals/shoots/s1/a+b.jpg"
    assert decode_record_key("originals/shoots/s1/a+b.jpg", "url") == "originals/shoots/s1/a b.jpg"
    assert decode_record_key("originals/shoots/s1/a%2Bb.jpg", "url") == "originals/shoots/s1/a+b.jpg"
    assert decode_record_key("originals/shoots/s1/caf%C3%A9.jpg", "url") == "originals/shoots/s1/café.jpg"


def test_a_url_encoded_key_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="not URL-encoded UTF-8"):
        ingest(record("originals/shoots/s1/caf%E9.jpg"), encoding="url")


def test_two_extensions_two_shoots_and_two_normalisations_are_different_files() -> None:
    keys = ["originals/shoots/s1/DSC_0001.JPG", "originals/shoots/s1/DSC_0001.webp", "originals/shoots/s2/DSC_0001.JPG",
            "originals/shoots/s1/" + NAMES[4], "originals/shoots/s1/" + NAMES[5]]
    outs = ingest(*[record(k) for k in keys])
    assert len({o.key for o in outs}) == len(keys)


def test_a_multipart_upload_is_an_upload() -> None:
    # versitygw writes size 0 and an etag with the part count for CompleteMultipartUpload.
    rec = record("originals/shoots/s1/big.jpg", event="s3:ObjectCreated:CompleteMultipartUpload",
                 etag="37b0b951c60d3eaeda0603646bb26db8-3")
    [out] = ingest(rec)
    event = default_registry().decode(out.value)
    assert event.payload.etag == "37b0b951c60d3eaeda0603646bb26db8-3"
    assert event.payload.version == version_of(event.envelope.event_id)


def test_a_new_version_is_a_new_event_and_a_redelivery_is_the_same_event() -> None:
    key = "originals/shoots/s1/retouched.jpg"
    [first] = ingest(record(key))
    [again] = ingest(record(key))
    [second] = ingest(record(key, etag="0" * 32, time="2026-11-26T19:20:00Z"))
    ids = [Envelope.from_bytes(m.value).event_id for m in (first, again, second)]
    assert ids[0] == ids[1] != ids[2]
    assert first.key == second.key, "one file, so its versions stay in order on one partition"
    versions = [default_registry().decode(m.value).payload.version for m in (first, second)]
    assert versions[0] != versions[1]


def test_a_delete_of_an_original_becomes_file_deleted_keyed_by_file_id() -> None:
    key = "originals/shoots/s1/IMG 1 (2).jpg"
    rec = record(key, event="s3:ObjectRemoved:Delete", etag=None, sequencer="7")
    [out] = ingest(rec)
    assert out.key == file_id_of(key).encode() and headers_dict(out.headers)["eventType"] == b"file.deleted"
    event = default_registry().decode(out.value)
    assert event.payload.model_dump() == {"file_id": file_id_of(key), "shoot_id": "s1", "key": key,
                                          "reason": "deleted from the object store"}
    [again] = ingest(rec)
    [later] = ingest(record(key, event="s3:ObjectRemoved:Delete", etag=None, sequencer="9", time="2026-11-26T20:00:00Z"))
    ids = [Envelope.from_bytes(m.value).event_id for m in (out, again, later)]
    assert ids[0] == ids[1] != ids[2], "a redelivery is the same deletion; a later one (after a new upload) is not"


@pytest.mark.parametrize("body", [
    {"Bucket": "Test-Bucket", "Event": "s3:TestEvent", "Service": "S3"},
    {"Records": [record("renditions/shoots/s1/f1/web.jpg")]},
    {"Records": [record("assets/logo.png")]},
    {"Records": [record("renditions/shoots/s1/f1/web.jpg", event="s3:ObjectRemoved:Delete", etag=None)]},
    {"Records": [record("originals/shoots/s1/f1.jpg", event="s3:ObjectRestore:Completed")]},
    {"Records": [record("originals/shoots/s1/f1.jpg", bucket="someone-else")]},
    # Deletes of keys that were refused when they were put: nothing of them exists downstream.
    {"Records": [record("originals/shoots/s1/notes.txt", event="s3:ObjectRemoved:Delete", etag=None)]},
])
def test_notifications_that_concern_no_original_are_skipped(body: dict) -> None:
    assert IngestStage("darkroom", "test").process(message(body)) == []


@pytest.mark.parametrize("key,reason", [
    ("originals/shoots/../../etc/passwd.jpg", r"'\.\.' segment"),
    ("originals/shoots/s1/../../x.jpg", r"'\.\.' segment"),
    ("originals/shoots/s1/evil\nname.jpg", "control character U\\+000A"),
    ("originals/shoots/s1/evil\u202egpj.jpg", "bidirectional control"),
    ("originals/shoots/s1/notes.txt", "not an accepted image type"),
    ("originals/shoots/loose.jpg", "not inside a shoot"),
    ("originals/loose.jpg", "does not start with 'originals/shoots/'"),
])
def test_untrusted_keys_are_refused_with_the_reason(key: str, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=f"untrusted key.*{reason}"):
        ingest(record(key))


def test_an_encoded_control_character_is_refused_after_decoding() -> None:
    with pytest.raises(InvalidEvent, match="control character U\\+000A"):
        ingest(record("originals/shoots/s1/evil%0Aname.jpg"), encoding="url")


@pytest.mark.parametrize("body,reason", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    ({"Hello": "world"}, "no Records"),
    ({"Records": [{"eventName": "s3:ObjectCreated:Put"}]}, "invalid S3 event record"),
])
def test_unreadable_notifications_are_invalid_events(body: object, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        IngestStage("darkroom", "test").process(message(body))
