"""The one envelope every event travels in, and the Kafka headers that describe it."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from pipeline.tracing import child_traceparent

CONTENT_TYPE = "application/json"
# Kafka header names (see docs/ARCHITECTURE.md, "Events and keys"): consumers filter on these without parsing the body.
H_EVENT_TYPE = "eventType"
H_VERSION = "version"
H_TIMESTAMP = "timestamp"
H_CONTENT_TYPE = "content-type"
H_TRACEPARENT = "traceparent"

# Namespace of deterministic event ids: the same cause always yields the same id, so a redelivery
# publishes an event a consumer can recognise as already seen.
_EVENT_ID_NAMESPACE = uuid.UUID("6f0f2a53-8d0e-4f43-9a55-3f1d8e2b7c10")

_SEMVER = r"^\d+\.\d+\.\d+$"


class CamelModel(BaseModel):
    """Base of every wire model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class Envelope(CamelModel):
    """One event: who, what, when, why, and the typed payload in `data`."""

    event_id: str = Field(min_length=1, max_length=128)
    event_type: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    version: str = Field(pattern=_SEMVER)
    occurred_at: datetime
    producer: str = Field(min_length=1)
    correlation_id: str = Field(min_length=1)
    causation_id: str | None = None
    subject: str = Field(min_length=1)
    data: dict[str, Any]

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurredAt must carry a time zone, e.g. 2026-01-01T00:00:00Z")
        return value

    @property
    def major(self) -> int:
        """Major version: the registry keys payload models by it."""
        return int(self.version.split(".", 1)[0])

    def to_bytes(self) -> bytes:
        """The JSON body written to Kafka."""
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse a body; raises pydantic.ValidationError."""
        return cls.model_validate_json(raw)


_NAMESPACE_BYTES = _EVENT_ID_NAMESPACE.bytes


def deterministic_id(*parts: str) -> str:
    """An event id derived from what caused the event, stable across redeliveries.

    Exactly `str(uuid.uuid5(namespace, "\x1f".join(parts)))`, without building a UUID object: this
    runs once per event published (a tenth of the event runner's time went to uuid5, bench/RESULTS.md).
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def build_envelope(
    event_type: str,
    version: str,
    data: BaseModel,
    *,
    subject: str,
    producer: str,
    event_id: str,
    correlation_id: str | None = None,
    cause: Envelope | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Build an envelope, inheriting the correlation id from `cause` when there is one.

    Not validated again: the payload is a validated model and the rest comes from the framework's own
    code (validation took as long as encoding, bench/RESULTS.md). Envelopes read from Kafka are always
    validated (`Envelope.from_bytes`).
    """
    when = occurred_at or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("occurredAt must carry a time zone, e.g. 2026-01-01T00:00:00Z")
    return Envelope.model_construct(
        event_id=event_id,
        event_type=event_type,
        version=version,
        occurred_at=when,
        producer=producer,
        correlation_id=correlation_id or (cause.correlation_id if cause else event_id),
        causation_id=cause.event_id if cause else None,
        subject=subject,
        data=data.model_dump(mode="json", by_alias=True),
    )


def envelope_headers(envelope: Envelope, parent_traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers for an envelope; the traceparent continues the trace of the causing event."""
    return [
        (H_EVENT_TYPE, envelope.event_type.encode()),
        (H_VERSION, envelope.version.encode()),
        (H_TIMESTAMP, str(int(envelope.occurred_at.timestamp() * 1000)).encode()),
        (H_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (H_TRACEPARENT, child_traceparent(parent_traceparent).encode()),
    ]


def headers_dict(headers: list[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Kafka's header list as a dict (the last value of a repeated name wins; a null value reads as b"")."""
    if not headers:
        return {}
    out: dict[str, bytes | None] = dict(headers)  # C speed: this runs for every message consumed
    if None in out.values():
        return {name: value or b"" for name, value in out.items()}
    return out  # type: ignore[return-value]


def now_ms() -> int:
    """Wall-clock milliseconds, for header timestamps."""
    return int(time.time() * 1000)
