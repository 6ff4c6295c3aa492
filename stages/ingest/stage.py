"""Ingest: S3 event records on `storage.events` → `file.uploaded` on `files`, keyed by file id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.contracts.events import FILE_UPLOADED, FileUploaded
from pipeline.contracts.topics import FILES, STORAGE_EVENTS
from pipeline.envelope import Envelope, build_envelope, deterministic_id
from pipeline.errors import ErrorKind, InvalidEvent, default_classify
from pipeline.publisher import Outgoing
from pipeline.settings import Settings
from pipeline.stage import Received
from storage.keys import ORIGINALS_PREFIX, InvalidKey, parse_original_key

_CREATED = "s3:ObjectCreated:"


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str
    size: int = Field(default=0, ge=0)
    e_tag: str = Field(default="", alias="eTag")


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


def uploaded_event(bucket: str, key: str, size: int, etag: str, producer: str,
                   occurred_at: datetime | None = None) -> tuple[str, Envelope]:
    """The `file.uploaded` envelope of an original, and its Kafka key (the file id).

    The event id depends only on the object (bucket, key, etag), so the notification path and the
    reconciler produce the same id for the same upload. Raises InvalidKey for an untrusted key.
    """
    ref = parse_original_key(key)
    etag = etag.strip('"')
    payload = FileUploaded(file_id=ref.file_id, shoot_id=ref.shoot_id, bucket=bucket, key=key, size=size, etag=etag)
    envelope = build_envelope(
        FILE_UPLOADED, "1.0.0", payload, subject=ref.file_id, producer=producer,
        event_id=deterministic_id("file.uploaded", bucket, key, etag), occurred_at=occurred_at,
    )
    return ref.file_id, envelope


class IngestStage:
    """A raw stage: object-store notifications carry no envelope, so it parses the records itself."""

    name = "ingest"
    topics = (STORAGE_EVENTS,)

    def __init__(self, bucket: str, producer: str) -> None:
        self._bucket = bucket
        self._producer = producer

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
            # Keys arrive URL-encoded as in AWS notifications.
            key = unquote_plus(record.s3.object.key)
            if not record.event_name.startswith(_CREATED) or record.s3.bucket.name != self._bucket:
                continue
            if not key.startswith(ORIGINALS_PREFIX):
                continue  # renditions we wrote ourselves, or objects of other tools
            try:
                file_id, envelope = uploaded_event(
                    self._bucket, key, record.s3.object.size, record.s3.object.e_tag, self._producer,
                    record.event_time.astimezone(UTC) if record.event_time else None,
                )
            except InvalidKey as exc:
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
    return IngestStage(settings.storage.bucket, settings.producer_name)
