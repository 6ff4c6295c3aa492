"""Object-store adapter on boto3 (botocore)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import boto3.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from storage.credentials import aws_session
from storage.errors import ObjectNotFound, StorageConfigError, StorageError, classify, unreachable
from storage.port import ObjectInfo, PresignedUpload, attachment, check_metadata

if TYPE_CHECKING:
    from pipeline.settings import StorageSettings

# Failures where the request may not have reached the server or the answer was cut off.
_TRANSIENT_BOTO = (BotoConnectionError, HTTPClientError, IncompleteReadError, ChecksumError)


def _ca_bundle(settings: StorageSettings) -> str | None:
    """The CA file to verify the endpoint with; a configured but missing file is a StorageError, not a TLS error later."""
    if settings.ca_bundle is None:
        return None
    if not settings.ca_bundle.is_file():
        raise StorageConfigError(f"DARKROOM_STORAGE__CA_BUNDLE {str(settings.ca_bundle)!r} is not a file")
    return str(settings.ca_bundle)


class Boto3Store:
    """:class:`storage.port.ObjectStore` on one boto3 S3 client, safe to share between threads."""

    def __init__(
        self, settings: StorageSettings, *, page_size: int = 1000, max_pool_connections: int = 32
    ) -> None:
        """Build the client; no request is sent until the first operation.

        ``page_size`` is the ListObjectsV2 page size (tests make it small to exercise paging);
        ``max_pool_connections`` should cover the threads that share this store.
        """
        self.bucket = settings.bucket
        self.endpoint = settings.endpoint_url
        self._page_size = page_size
        config = Config(
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            # The stage runner retries with backoff and pauses the partition; stacking a long
            # client-side retry loop under it would only hide outages and stall the worker.
            retries={"max_attempts": 2, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=max_pool_connections,
            # botocore >= 1.36 adds CRC trailers / checksum-mode headers by default, which several
            # S3-compatible servers reject; over plain http the payload is SHA-256 signed anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A private session: the module-level default session of boto3 is not thread-safe.
        # Its credentials: the configured keys or the standard AWS chain (storage/credentials.py).
        session = boto3.session.Session(botocore_session=aws_session(settings))
        self._client: Any = session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            # A private CA (DARKROOM_STORAGE__CA_BUNDLE) for https endpoints; None = botocore's default bundle.
            verify=_ca_bundle(settings),
            config=config,
        )

    def __repr__(self) -> str:
        return f"Boto3Store(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    @contextmanager
    def _errors(self, op: str, key: str | None = None) -> Iterator[None]:
        """Translate botocore exceptions into the port's errors, chaining the original."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise classify(
                status=status,
                code=error.get("Code"),
                detail=error.get("Message") or str(exc),
                op=op,
                endpoint=self.endpoint,
                bucket=self.bucket,
                key=key,
            ) from exc
        except _TRANSIENT_BOTO as exc:
            raise unreachable(
                op=op, endpoint=self.endpoint, bucket=self.bucket, key=key, detail=str(exc)
            ) from exc
        except BotoCoreError as exc:
            # Credentials missing, parameter validation... nothing a retry would fix.
            raise StorageError(f"S3 {op} at {self.endpoint} failed before sending: {exc}") from exc

    def get(self, key: str) -> bytes:
        """Return the whole object; raises ObjectNotFound."""
        with self._errors("GET", key):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                return body.read()
            finally:
                body.close()

    def put(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Write the object in one PutObject request and return what was written."""
        meta = check_metadata(metadata)
        with self._errors("PUT", key):
            response = self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, Metadata=meta
            )
        return ObjectInfo(
            key=key,
            size=len(data),
            etag=response.get("ETag", "").strip('"'),
            last_modified=datetime.now(timezone.utc),
        )

    def head(self, key: str) -> ObjectInfo:
        """Return the object's info; raises ObjectNotFound."""
        with self._errors("HEAD", key):
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            etag=response.get("ETag", "").strip('"'),
            last_modified=response["LastModified"],
        )

    def exists(self, key: str) -> bool:
        """Whether the key exists (one HEAD request)."""
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield the objects under ``prefix``, one ListObjectsV2 page at a time."""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self._page_size}
        )
        with self._errors("LIST", prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=int(item["Size"]),
                        etag=item.get("ETag", "").strip('"'),
                        last_modified=item["LastModified"],
                    )

    def delete(self, key: str) -> None:
        """Delete the object; S3 answers 204 for a missing key too, so this is idempotent."""
        with self._errors("DELETE", key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def presign_get(self, key: str, expires_s: int = 3600, download_as: str | None = None) -> str:
        """Return a presigned GET URL (computed locally, no request)."""
        params = {"Bucket": self.bucket, "Key": key}
        if download_as:
            params["ResponseContentDisposition"] = attachment(download_as)
        with self._errors("PRESIGN", key):
            return self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)

    def presign_put(self, key: str, expires_s: int = 3600) -> PresignedUpload:
        """Return a presigned PUT URL of exactly ``key`` (computed locally, no request)."""
        with self._errors("PRESIGN-PUT", key):
            url = self._client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s)
        return PresignedUpload(url, "PUT", {}, key, expires_s)

    def ensure_bucket(self) -> None:
        """Create the bucket if HEAD says it is missing; "already owned by you" counts as done."""
        with self._errors("HEAD-BUCKET"):
            try:
                # HEAD first: production credentials often may not CreateBucket at all.
                self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status != 404:
                    raise
        with self._errors("CREATE-BUCKET"):
            params: dict[str, Any] = {"Bucket": self.bucket}
            region = self._client.meta.region_name
            if region and region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self._client.create_bucket(**params)
            except ClientError as exc:
                # Another worker may have created it between our HEAD and CREATE.
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise

    def ping(self) -> None:
        """HEAD the bucket: proves the server answers, credentials work and the bucket exists."""
        with self._errors("HEAD-BUCKET"):
            self._client.head_bucket(Bucket=self.bucket)
