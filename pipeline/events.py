"""The event catalogue: payload models of ADR-009's events, registered by (eventType, major)."""

from __future__ import annotations

from pydantic import Field

from pipeline.envelope import CamelModel
from pipeline.registry import EventRegistry

FILE_UPLOADED = "file.uploaded"
FILE_PROCESSED = "file.processed"

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class FileUploaded(CamelModel):
    """An original landed in the object store."""

    file_id: str = Field(pattern=_ID)
    shoot_id: str = Field(pattern=_ID)
    bucket: str
    key: str
    size: int = Field(ge=0)
    etag: str


class FileProcessed(CamelModel):
    """One rendition of a file exists in the object store."""

    file_id: str = Field(pattern=_ID)
    shoot_id: str = Field(pattern=_ID)
    rendition: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    bucket: str
    key: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=1)
    format: str
    source_event_id: str


def default_registry() -> EventRegistry:
    """A registry holding every event of the catalogue."""
    registry = EventRegistry()
    registry.register(FILE_UPLOADED, "1.0.0", FileUploaded)
    registry.register(FILE_PROCESSED, "1.0.0", FileProcessed)
    return registry
