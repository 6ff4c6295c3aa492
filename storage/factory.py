"""Build the configured object-store adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.port import ObjectStore

if TYPE_CHECKING:
    from pipeline.settings import StorageSettings


def open_store(settings: StorageSettings) -> ObjectStore:
    """Return a :class:`ObjectStore` for ``settings``, on boto3 or minio per ``settings.client``.

    Sends no request: call ``ping()`` to check the server is reachable.
    """
    # Imported lazily so a process only loads the S3 library it actually uses.
    if settings.client == "boto3":
        from storage.s3_boto import Boto3Store

        return Boto3Store(settings)
    if settings.client == "minio":
        from storage.s3_minio import MinioStore

        return MinioStore(settings)
    raise ValueError(f"unknown storage client {settings.client!r}; use 'boto3' or 'minio'")
