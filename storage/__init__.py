"""Object storage: the port every other package uses, its S3 adapters and the key layout.

Use :func:`open_store` with ``Settings().storage`` to get an :class:`ObjectStore`; catch
:class:`StorageUnavailable` (transient: retry later) apart from other :class:`StorageError`
(permanent). Keys are built and validated by :mod:`storage.keys`; never format them by hand.
The S3 libraries (boto3, minio) are imported only by the adapter that is configured.
"""

from storage.errors import ObjectNotFound, StorageConfigError, StorageError, StorageOutage, StorageUnavailable
from storage.factory import open_store
from storage.keys import (
    ORIGINALS_PREFIX,
    InvalidKey,
    OriginalRef,
    file_id_of,
    original_key,
    originals_prefix,
    parse_original_key,
    rendition_key,
    version_of,
)
from storage.port import ObjectInfo, ObjectStore, PresignedUpload

__all__ = [
    "ORIGINALS_PREFIX",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "OriginalRef",
    "PresignedUpload",
    "StorageConfigError",
    "StorageError",
    "StorageOutage",
    "StorageUnavailable",
    "file_id_of",
    "open_store",
    "original_key",
    "originals_prefix",
    "parse_original_key",
    "rendition_key",
    "version_of",
]
