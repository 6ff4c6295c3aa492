"""Ingest: S3 event records on `storage.events` → `file.uploaded` / `file.deleted` on `files`, keyed by file id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.contracts.events import FILE_DELETED, FILE_UPLOADED, FileDeleted, FileUploaded
from pipeline.contracts.topics import FILES, STORAGE_EVENTS
from pipeline.envelope import Envelope, build_envelope, deterministic_id
from pipeline.errors import ErrorKind, InvalidEvent, default_classify
from pipeline.publisher import Outgoing
from pipeline.settings import Settings
from pipeline.stage import Received
from storage.keys import ORIGINALS_PREFIX, InvalidKey, parse_original_key, version_of

# Objects under this prefix are uploads of originals: in a shoot (ORIGINALS_PREFIX) or refused with the reason.
ORIGINALS_ROOT = ORIGINALS_PREFIX.split("/", 1)[0] + "/"
_CREATED = "s3:ObjectCreated:"  # Put, Post, Copy, CompleteMultipartUpload
_REMOVED = "s3:ObjectRemoved:"  # Delete, DeleteMarkerCreated

KeyEncoding = Literal["raw", "url"]


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str
    size: int = Field(default=0, ge=0)
    # Absent (null) in delete records.
    e_tag: str | None = Field(default=None, alias="eTag")
    sequencer: str | None = None


class _S3Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str


class _S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore")
    bucket: _S3Bucket
    object: _S3Object


class _S3Record(BaseModel):
    """The part of an AWS-style S3 event record we read."""

    model_config = ConfigDict(extra="ignore")
    event_name: str = Field(alias="eventName")
    event_time: datetime | None = Field(default=None, alias="eventTime")
    s3: _S3Entity


def decode_record_key(raw: str, encoding: KeyEncoding) -> str:
    """The object key of an event record, decoded the way the store encoded it.

    AWS S3 (and MinIO) URL-encode the key as in an HTML form: ``a+b (1).jpg`` arrives as
    ``a%2Bb+%281%29.jpg``. versitygw (measured on v1.8.0: a PUT of ``a+b.jpg``, ``100%.jpg`` and
    ``IMG_0001 (1).JPG`` with boto3) writes the key itself. The two cannot be told apart from the
    record (is ``a+b.jpg`` "a b.jpg" or "a+b.jpg"?), hence the setting ``storage.event_key_encoding``.
    """
    if encoding == "url":
        # errors="strict": a key whose escapes are not UTF-8 is refused rather than mangled.
        try:
            return unquote_plus(raw, errors="strict")
        except UnicodeDecodeError as exc:
            raise InvalidKey(f"key {raw!r} is not URL-encoded UTF-8: {exc}") from exc
    return raw


def uploaded_event(bucket: str, key: str, size: int, etag: str, producer: str,
                   occurred_at: datetime | None = None, put: str = "") -> tuple[str, Envelope]:
    """The `file.uploaded` envelope of an original, and its Kafka key (the file id).

    The event id is a function of the object (bucket, key, etag) and of `put`, what tells this PUT
    from another one of the same bytes: the record's time and sequencer for a notification, the
    object's Last-Modified for the reconciler. So a redelivered notification is the same event, a
    new version is a new one, and so is putting back earlier bytes (a retouch undone, a photo
    deleted by mistake and uploaded again), which an id of (key, etag) alone would take for a
    redelivery. The version (rendition keys) derives from the event id. Raises InvalidKey for an
    untrusted key.
    """
    ref = parse_original_key(key)
    etag = etag.strip('"')
    event_id = deterministic_id("file.uploaded", bucket, key, etag, *([put] if put else []))
    payload = FileUploaded(file_id=ref.file_id, shoot_id=ref.shoot_id, bucket=bucket, key=key, size=size, etag=etag,
                           name=ref.name, version=version_of(event_id))
    envelope = build_envelope(FILE_UPLOADED, "1.0.0", payload, subject=ref.file_id, producer=producer,
                              event_id=event_id, occurred_at=occurred_at)
    return ref.file_id, envelope


def record_put(event_time: datetime | None, sequencer: str | None) -> str:
    """What identifies one notification of a store: its time and sequencer (both absent: '')."""
    if event_time is None and not sequencer:
        return ""
    return f"{event_time.isoformat() if event_time else ''}|{sequencer or ''}"


def deleted_event(bucket: str, key: str, producer: str, occurred_at: datetime | None, sequencer: str | None = None,
                  file_id: str | None = None) -> tuple[str, Envelope]:
    """The `file.deleted` envelope of an original the store reports deleted, and its Kafka key (the file id).

    Keyed by file id like the file's other events, so it is ordered after the uploads it undoes. The
    id comes from the record (time and sequencer), so a redelivered record gives the same event,
    and a later delete of the same key after a new upload gives a new one.
    """
    ref = parse_original_key(key)
    file_id = file_id or ref.file_id  # the reconciler names files announced before file ids hashed the key
    payload = FileDeleted(file_id=file_id, shoot_id=ref.shoot_id, key=key, reason="deleted from the object store")
    envelope = build_envelope(
        FILE_DELETED, "1.0.0", payload, subject=file_id, producer=producer,
        event_id=deterministic_id("file.deleted", bucket, key, record_put(occurred_at, sequencer)), occurred_at=occurred_at,
    )
    return file_id, envelope


class IngestStage:
    """A raw stage: object-store notifications carry no envelope, so it parses the records itself."""

    name = "ingest"
    topics = (STORAGE_EVENTS,)

    def __init__(self, bucket: str, producer: str, key_encoding: KeyEncoding = "raw") -> None:
        self._bucket = bucket
        self._producer = producer
        self._key_encoding = key_encoding

    def accepts(self, headers: Mapping[str, bytes]) -> bool:
        return True

    def process(self, message: Received) -> list[Outgoing]:
        try:
            body = json.loads(message.value or b"")
        except ValueError as exc:
            raise InvalidEvent(f"storage notification is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise InvalidEvent("storage notification is not a JSON object")
        if "Records" not in body:
            if body.get("Event") == "s3:TestEvent":
                return []  # sent by the gateway at start-up
            raise InvalidEvent("storage notification has no Records: expected an S3 event record")
        try:
            records = [_S3Record.model_validate(r) for r in body["Records"]]
        except ValidationError as exc:
            raise InvalidEvent(f"invalid S3 event record: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
        outputs = []
        for record in records:
            created = record.event_name.startswith(_CREATED)
            removed = record.event_name.startswith(_REMOVED)
            if not (created or removed) or record.s3.bucket.name != self._bucket:
                continue
            raw = record.s3.object.key
            try:
                key = decode_record_key(raw, self._key_encoding)
            except InvalidKey as exc:
                raise InvalidEvent(f"refusing {record.event_name} of untrusted key {raw!r}: {exc}") from exc
            if not key.startswith(ORIGINALS_ROOT):
                continue  # renditions we wrote ourselves, or objects of other tools
            # Under originals/ but not in a shoot (originals/loose.jpg) is an upload gone wrong: refused below.
            when = record.event_time.astimezone(UTC) if record.event_time else None
            try:
                if created:
                    file_id, envelope = uploaded_event(
                        self._bucket, key, record.s3.object.size, record.s3.object.e_tag or "", self._producer, when,
                        record_put(when, record.s3.object.sequencer))
                else:
                    file_id, envelope = deleted_event(self._bucket, key, self._producer, when, record.s3.object.sequencer)
            except InvalidKey as exc:
                if removed:
                    continue  # a key we refused when it was put: nothing of it exists downstream
                raise InvalidEvent(f"refusing upload with untrusted key {key!r}: {exc}") from exc
            outputs.append(Outgoing.event(FILES, file_id, envelope))
        return outputs

    def classify(self, exc: BaseException) -> ErrorKind:
        return default_classify(exc)

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None


def build_stage(settings: Settings) -> IngestStage:
    """The ingest stage for the configured bucket (entry point `darkroom.stages:ingest`)."""
    return IngestStage(settings.storage.bucket, settings.producer_name, settings.storage.event_key_encoding)
