"""The event catalogue: payload models of ADR-009's events, registered by (eventType, major).

`CATALOGUE` is the one table of every event: its type, version, payload model, topic and Kafka key
rule. The registry, the publishers (`event_message`) and the AsyncAPI generator all read it, so a
topic or key can never differ between the code that writes an event and the document describing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from pipeline.contracts.topics import FILES, GALLERIES, INVITES, SHOOTS, USERS
from pipeline.envelope import CamelModel, Envelope, build_envelope
from pipeline.publisher import Outgoing
from pipeline.registry import EventRegistry

SHOOT_CREATED = "shoot.created"
SHOOT_UPDATED = "shoot.updated"
SHOOT_COMPLETED = "shoot.completed"
SHOOT_DELIVERED = "shoot.delivered"
USER_CREATED = "user.created"
USER_VERIFIED = "user.verified"
USER_UPDATED = "user.updated"
INVITE_CREATED = "invite.created"
INVITE_SENT = "invite.sent"
INVITE_ACCEPTED = "invite.accepted"
FILE_UPLOADED = "file.uploaded"
FILE_PROCESSED = "file.processed"
FILE_DELETED = "file.deleted"
GALLERY_UPDATED = "gallery.updated"
GALLERY_VIEWED = "gallery.viewed"
FILE_DOWNLOADED = "file.downloaded"

# Kafka header naming the rendition of a `file.processed`, so the gallery can filter without parsing.
H_RENDITION = "rendition"

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_RENDITION = r"^[a-z][a-z0-9_-]{0,31}$"
# Deliberately loose: the address is checked by sending to it (user.verified), not by a regex.
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


# -- shoots ---------------------------------------------------------------------------------------


class ShootCreated(CamelModel):
    """A photographer created a shoot for a client; the client gets invited to its gallery."""

    shoot_id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=200)
    client_email: str = Field(pattern=_EMAIL, max_length=254)
    photographer: str | None = Field(default=None, max_length=200)


class ShootUpdated(CamelModel):
    """Title or client of a shoot changed; absent fields are unchanged."""

    shoot_id: str = Field(pattern=_ID)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    client_email: str | None = Field(default=None, pattern=_EMAIL, max_length=254)


class ShootCompleted(CamelModel):
    """The photographer finished uploading: the gallery is final."""

    shoot_id: str = Field(pattern=_ID)
    photo_count: int | None = Field(default=None, ge=0)


class ShootDelivered(CamelModel):
    """The gallery was handed over to the client (who is notified)."""

    shoot_id: str = Field(pattern=_ID)
    message: str | None = Field(default=None, max_length=2000)


# -- users ----------------------------------------------------------------------------------------


class UserCreated(CamelModel):
    """A platform user exists (created for a shoot's client, or by sign-up)."""

    user_id: str = Field(pattern=_ID)
    email: str = Field(pattern=_EMAIL, max_length=254)
    role: Literal["client", "photographer"] = "client"


class UserVerified(CamelModel):
    """The user's e-mail address was verified."""

    user_id: str = Field(pattern=_ID)
    email: str = Field(pattern=_EMAIL, max_length=254)


class UserUpdated(CamelModel):
    """A user's profile changed; absent fields are unchanged."""

    user_id: str = Field(pattern=_ID)
    email: str | None = Field(default=None, pattern=_EMAIL, max_length=254)
    display_name: str | None = Field(default=None, max_length=200)


# -- invites --------------------------------------------------------------------------------------


class InviteCreated(CamelModel):
    """A verified user is invited to a shoot's gallery."""

    invite_id: str = Field(pattern=_ID)
    shoot_id: str = Field(pattern=_ID)
    user_id: str = Field(pattern=_ID)
    email: str = Field(pattern=_EMAIL, max_length=254)


class InviteSent(CamelModel):
    """The invite e-mail was accepted by the mail server."""

    invite_id: str = Field(pattern=_ID)
    shoot_id: str = Field(pattern=_ID)
    email: str = Field(pattern=_EMAIL, max_length=254)
    message_id: str = Field(min_length=3, max_length=250)


class InviteAccepted(CamelModel):
    """The client accepted the invite."""

    invite_id: str = Field(pattern=_ID)
    shoot_id: str = Field(pattern=_ID)
    user_id: str = Field(pattern=_ID)


# -- files ----------------------------------------------------------------------------------------


class FileUploaded(CamelModel):
    """An original landed in the object store."""

    file_id: str = Field(pattern=_ID)
    shoot_id: str = Field(pattern=_ID)
    bucket: str
    key: str
    size: int = Field(ge=0)
    etag: str
    # The file name under the shoot as the photographer sees it (NFC), e.g. "IMG_0001 (1).JPG".
    name: str | None = Field(default=None, max_length=1024)
    # This upload of the original (storage.keys.version_of); renditions are written per version.
    version: str | None = Field(default=None, pattern=_ID)


class CaptureFacts(CamelModel):
    """What the original's header says about the capture (issue 12); absent fields were not recorded.

    `capturedAt` is ISO 8601 with the camera's UTC offset when it recorded one (EXIF
    OffsetTimeOriginal), else local time without offset. `width`/`height`: the original, right way
    up. GPS is present only when the pipeline file opts in (`facts: {gps: true}`).
    """

    width: int = Field(ge=1)
    height: int = Field(ge=1)
    original_name: str | None = Field(default=None, max_length=255)
    make: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=100)
    lens: str | None = Field(default=None, max_length=200)
    focal_length_mm: float | None = Field(default=None, gt=0)
    aperture: float | None = Field(default=None, gt=0)
    exposure_time_s: float | None = Field(default=None, gt=0)
    shutter: str | None = Field(default=None, max_length=20)
    iso: int | None = Field(default=None, ge=1)
    captured_at: str | None = Field(default=None, max_length=40)
    gps_latitude: float | None = Field(default=None, ge=-90, le=90)
    gps_longitude: float | None = Field(default=None, ge=-180, le=180)


# A BlurHash: size flag, maximum, DC and up to 80 AC components in base 83.
_BLURHASH = r"^[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]{6,200}$"


class FileProcessed(CamelModel):
    """One rendition of a file exists in the object store.

    Renditions made from the original carry the original's capture `facts`; thumbnails carry a
    BlurHash `placeholder` a page can paint before the image arrives.
    """

    file_id: str = Field(pattern=_ID)
    shoot_id: str = Field(pattern=_ID)
    rendition: str = Field(pattern=_RENDITION)
    bucket: str
    key: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=1)
    format: str
    source_event_id: str
    # The version of the original it was made from (absent: made before versions existed).
    version: str | None = Field(default=None, pattern=_ID)
    facts: CaptureFacts | None = None
    placeholder: str | None = Field(default=None, pattern=_BLURHASH)


class FileDeleted(CamelModel):
    """A photo was removed from its shoot: its renditions and gallery entry go too."""

    file_id: str = Field(pattern=_ID)
    shoot_id: str = Field(pattern=_ID)
    reason: str | None = Field(default=None, max_length=500)
    # The original's key, when the deletion comes from the store.
    key: str | None = None


# -- galleries ------------------------------------------------------------------------------------


class GalleryRendition(CamelModel):
    """One rendition of a gallery photo."""

    name: str = Field(pattern=_RENDITION)
    key: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=1)
    format: str


class GalleryUpdated(CamelModel):
    """A photo entered (every declared rendition exists), changed (a new version's renditions all exist) or left a gallery."""

    shoot_id: str = Field(pattern=_ID)
    file_id: str = Field(pattern=_ID)
    change: Literal["added", "removed", "updated"]
    renditions: list[GalleryRendition] = Field(default_factory=list)
    photo_count: int = Field(ge=0)
    updated_at: datetime
    # The photo's file name (NFC) and the version of the original its renditions show.
    name: str | None = Field(default=None, max_length=1024)
    version: str | None = Field(default=None, pattern=_ID)
    facts: CaptureFacts | None = None
    placeholder: str | None = Field(default=None, pattern=_BLURHASH)


# -- gallery access (ADR-009's high-volume events: one per view or download) ---------------------


class GalleryViewed(CamelModel):
    """A client opened a shoot's gallery (no file id) or one photo of it in the viewer (file id set)."""

    shoot_id: str = Field(pattern=_ID)
    invite_id: str = Field(pattern=_ID)
    file_id: str | None = Field(default=None, pattern=_ID)
    viewed_at: datetime


class FileDownloaded(CamelModel):
    """A client downloaded a rendition of a gallery photo (e.g. the watermarked `proof`)."""

    shoot_id: str = Field(pattern=_ID)
    invite_id: str = Field(pattern=_ID)
    file_id: str = Field(pattern=_ID)
    rendition: str = Field(pattern=_RENDITION)
    downloaded_at: datetime


# -- the catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueEntry:
    """One event of the catalogue: what it is, where it goes and what its Kafka key is."""

    event_type: str
    version: str
    model: type[BaseModel]
    topic: str
    # The payload field whose value is the Kafka key (docs/ARCHITECTURE.md, "Events and keys"), snake_case.
    key_field: str
    summary: str

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    def key_of(self, payload: BaseModel) -> str:
        """The Kafka key of a payload of this event."""
        return str(getattr(payload, self.key_field))


CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(SHOOT_CREATED, "1.0.0", ShootCreated, SHOOTS, "shoot_id", "A shoot was created for a client."),
    CatalogueEntry(SHOOT_UPDATED, "1.0.0", ShootUpdated, SHOOTS, "shoot_id", "A shoot's title or client changed."),
    CatalogueEntry(SHOOT_COMPLETED, "1.0.0", ShootCompleted, SHOOTS, "shoot_id", "A shoot's uploads are complete."),
    CatalogueEntry(SHOOT_DELIVERED, "1.0.0", ShootDelivered, SHOOTS, "shoot_id", "A shoot was delivered to its client."),
    CatalogueEntry(USER_CREATED, "1.0.0", UserCreated, USERS, "user_id", "A user was created."),
    CatalogueEntry(USER_VERIFIED, "1.0.0", UserVerified, USERS, "user_id", "A user's e-mail address was verified."),
    CatalogueEntry(USER_UPDATED, "1.0.0", UserUpdated, USERS, "user_id", "A user's profile changed."),
    CatalogueEntry(INVITE_CREATED, "1.0.0", InviteCreated, INVITES, "invite_id", "A user was invited to a gallery."),
    CatalogueEntry(INVITE_SENT, "1.0.0", InviteSent, INVITES, "invite_id", "An invite e-mail was sent."),
    CatalogueEntry(INVITE_ACCEPTED, "1.0.0", InviteAccepted, INVITES, "invite_id", "An invite was accepted."),
    CatalogueEntry(FILE_UPLOADED, "1.0.0", FileUploaded, FILES, "file_id", "An original was uploaded."),
    CatalogueEntry(FILE_PROCESSED, "1.0.0", FileProcessed, FILES, "file_id", "A rendition of a file was stored."),
    CatalogueEntry(FILE_DELETED, "1.0.0", FileDeleted, FILES, "file_id", "A photo was deleted from its shoot."),
    CatalogueEntry(GALLERY_UPDATED, "1.0.0", GalleryUpdated, GALLERIES, "shoot_id", "A photo entered or left a gallery."),
    CatalogueEntry(GALLERY_VIEWED, "1.0.0", GalleryViewed, GALLERIES, "shoot_id", "A client viewed a gallery or a photo of it."),
    CatalogueEntry(FILE_DOWNLOADED, "1.0.0", FileDownloaded, GALLERIES, "shoot_id", "A client downloaded a photo."),
)

_BY_TYPE: dict[str, CatalogueEntry] = {entry.event_type: entry for entry in CATALOGUE}


def entry(event_type: str) -> CatalogueEntry:
    """The catalogue entry of an event type (the version we publish); KeyError if unknown."""
    return _BY_TYPE[event_type]


def event_message(
    payload: BaseModel,
    *,
    event_id: str,
    producer: str,
    cause: Envelope | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    traceparent: str | None = None,
    occurred_at: datetime | None = None,
) -> tuple[Envelope, Outgoing]:
    """The envelope of `payload` and its Kafka message, on the catalogue's topic with its key rule.

    `causation_id` names the causing event when only its id is at hand (e.g. work resumed from a
    database row); `cause` takes precedence.
    """
    spec = next(e for e in CATALOGUE if e.model is type(payload))
    key = spec.key_of(payload)
    envelope = build_envelope(
        spec.event_type, spec.version, payload, subject=key, producer=producer, event_id=event_id,
        correlation_id=correlation_id, cause=cause, occurred_at=occurred_at,
    )
    if cause is None and causation_id is not None:
        envelope = envelope.model_copy(update={"causation_id": causation_id})
    message = Outgoing.event(spec.topic, key, envelope, traceparent)
    if isinstance(payload, FileProcessed):
        message = Outgoing(message.topic, message.key, message.value, [*message.headers, (H_RENDITION, payload.rendition.encode())])
    return envelope, message


def default_registry() -> EventRegistry:
    """A registry holding every event of the catalogue."""
    registry = EventRegistry()
    for spec in CATALOGUE:
        registry.register(spec.event_type, spec.version, spec.model)
    return registry
