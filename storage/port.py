"""The object-store port: what stages, ingest and orchestration may ask of S3 storage.

Code outside ``storage/`` depends on :class:`ObjectStore` only, never on boto3 or minio, so the
adapter can be swapped by configuration (``DARKROOM_STORAGE__CLIENT``) and faked in tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object."""

    key: str
    size: int
    etag: str  # without the surrounding quotes S3 puts on the wire
    last_modified: datetime


@dataclass(frozen=True)
class PresignedPost:
    """A browser upload form: POST `fields` plus `file` (last) as multipart/form-data to `url`.

    The store checks the signed policy: the key must be `key` and start with `prefix`, the body must
    be at most `max_bytes` and the Content-Type field must start with `image/`. Anything else is
    refused by the store itself (403), so the server that handed out the form never carries bytes.
    """

    url: str
    fields: dict[str, str]  # includes `key` and `Content-Type`
    key: str
    prefix: str
    max_bytes: int
    expires_s: int


@runtime_checkable
class ObjectStore(Protocol):
    """An S3-compatible bucket. Implementations are thread-safe.

    Every method raises :class:`storage.errors.StorageUnavailable` for transient failures and
    :class:`storage.errors.StorageError` for permanent ones.
    """

    bucket: str

    def get(self, key: str) -> bytes:
        """Return the whole object; raises ObjectNotFound if the key does not exist."""
        ...

    def put(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Write (or overwrite) the object in one request; return its size and etag."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Return the object's info without its body; raises ObjectNotFound."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the key exists."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield every object under ``prefix`` in key order, following pagination lazily."""
        ...

    def delete(self, key: str) -> None:
        """Delete the object; deleting a missing key is not an error."""
        ...

    def presign_get(self, key: str, expires_s: int = 3600, download_as: str | None = None) -> str:
        """Return a URL that lets anyone GET the object for ``expires_s`` seconds.

        With ``download_as`` the response says ``Content-Disposition: attachment`` with that file
        name, so a browser saves the file instead of showing it.
        """
        ...

    def presign_post(self, key: str, prefix: str, content_type: str, expires_s: int = 3600,
                     max_bytes: int = 100 * 1024 * 1024) -> PresignedPost:
        """Return a browser upload form for exactly ``key`` (under ``prefix``), an image of at most ``max_bytes``.

        One form per key, not one per prefix: a policy that only says "starts with the prefix" lets
        ``prefix/../elsewhere`` through on stores that resolve dot segments (versitygw 1.8's posix
        backend does; tests/integration/test_web.py shows the exact key closes it).
        """
        ...

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing; an existing bucket of ours is success."""
        ...

    def ping(self) -> None:
        """Cheap health check of server and bucket; raises StorageUnavailable if unreachable."""
        ...


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Validate user metadata the same way for every adapter and return it as a plain dict.

    Metadata travels as ``x-amz-meta-*`` HTTP headers, so names and values must be printable
    ASCII; the libraries would otherwise fail in different, less readable ways.
    """
    if not metadata:
        return {}
    checked: dict[str, str] = {}
    for name, value in metadata.items():
        if not name or not all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
            raise ValueError(f"metadata name {name!r} must be non-empty ASCII letters, digits, '-' or '_'")
        if not all(c.isascii() and c.isprintable() for c in value):
            raise ValueError(f"metadata value of {name!r} must be printable ASCII, got {value!r}")
        checked[name] = value
    return checked


def attachment(filename: str) -> str:
    """A Content-Disposition value that makes a browser save the object as `filename` (ASCII only)."""
    safe = "".join(c for c in filename if c.isascii() and (c.isalnum() or c in "._-")) or "download"
    return f'attachment; filename="{safe}"'
