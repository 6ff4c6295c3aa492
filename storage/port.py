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
class PresignedUpload:
    """A browser upload: PUT the bytes to `url` (with `headers`) before `expires_s` runs out.

    The signature covers the method and the key, so the URL writes that one key and nothing else:
    the store refuses (403) any other key, a changed method or an expired URL. The server that
    hands it out never carries the bytes.
    """

    url: str
    method: str
    headers: dict[str, str]
    key: str
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

    def presign_put(self, key: str, expires_s: int = 3600) -> PresignedUpload:
        """Return a URL that lets anyone PUT exactly ``key`` for ``expires_s`` seconds.

        A PUT, not a POST form: a store's notification of a PUT names the key like any upload's
        (versitygw 1.8 sends POST-object events without the key, and resolves ``..`` in a POST
        form's key, so a prefix-only POST policy let a browser write outside its prefix).
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
