"""Object-store adapter on the minio Python SDK (Apache-2.0; works with any S3 server)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import certifi
import urllib3
from botocore.credentials import Credentials as BotocoreCredentials
from minio import Minio
from minio.credentials import Credentials as MinioCredentials
from minio.credentials import Provider
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from urllib3.util.retry import Retry

from storage.credentials import resolve_credentials
from storage.errors import ObjectNotFound, StorageConfigError, StorageError, classify, unreachable
from storage.port import ObjectInfo, PresignedUpload, attachment, check_metadata

if TYPE_CHECKING:
    from pipeline.settings import StorageSettings

# The SDK switches to multipart above its computed part size (5 MiB); a single PUT keeps the etag
# an MD5 and the behaviour identical to the boto3 adapter. S3 caps a single PUT at 5 GiB.
_MIN_PART = 5 * 1024 * 1024
_MAX_SINGLE_PUT = 5 * 1024 * 1024 * 1024


def _ca_bundle(settings: StorageSettings) -> str:
    """The CA file to verify the endpoint with; a configured but missing file is a StorageError, not a TLS error later."""
    if settings.ca_bundle is None:
        return certifi.where()
    if not settings.ca_bundle.is_file():
        raise StorageConfigError(f"DARKROOM_STORAGE__CA_BUNDLE {str(settings.ca_bundle)!r} is not a file")
    return str(settings.ca_bundle)


class BotocoreProvider(Provider):
    """minio's credential provider over botocore's credentials: the SDK asks before every request."""

    def __init__(self, credentials: BotocoreCredentials) -> None:
        self._credentials = credentials

    def retrieve(self) -> MinioCredentials:
        frozen = self._credentials.get_frozen_credentials()  # refreshes temporary credentials when due
        return MinioCredentials(frozen.access_key, frozen.secret_key, frozen.token)


class MinioStore:
    """:class:`storage.port.ObjectStore` on one ``minio.Minio`` client, safe to share between threads."""

    def __init__(self, settings: StorageSettings, *, max_pool_connections: int = 32) -> None:
        """Build the client from ``settings.endpoint_url``; no request is sent until first use.

        Pagination of :meth:`list` is done by the SDK with the S3 default of 1000 keys per page
        (its public API has no page-size knob).
        """
        parts = urlsplit(settings.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise StorageConfigError(
                f"DARKROOM_STORAGE__ENDPOINT_URL {settings.endpoint_url!r} must look like "
                "http://host:port or https://host"
            )
        if parts.path.strip("/"):
            raise StorageConfigError(
                f"the minio client cannot use an endpoint with a path ({settings.endpoint_url!r}); "
                "use DARKROOM_STORAGE__CLIENT=boto3 or an endpoint without a path"
            )
        self.bucket = settings.bucket
        self.endpoint = settings.endpoint_url
        self._region = settings.region
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=settings.connect_timeout_s, read=settings.read_timeout_s),
            maxsize=max_pool_connections,
            cert_reqs="CERT_REQUIRED",
            # A private CA (DARKROOM_STORAGE__CA_BUNDLE) replaces certifi's public roots for https endpoints.
            ca_certs=_ca_bundle(settings),
            # One quick retry like the boto3 adapter; the stage runner owns real backoff.
            # raise_on_status=False hands the last 5xx back to the SDK, which parses the S3 error.
            retries=Retry(
                total=1,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=None,
                raise_on_status=False,
            ),
        )
        self._client = Minio(
            parts.netloc,
            # The configured keys or the standard AWS chain, refreshed when temporary (storage/credentials.py).
            credentials=BotocoreProvider(resolve_credentials(settings)),
            secure=parts.scheme == "https",
            # Known region: the SDK would otherwise send GetBucketLocation before the first call.
            region=settings.region,
            http_client=http,
        )

    def __repr__(self) -> str:
        return f"MinioStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    @contextmanager
    def _errors(self, op: str, key: str | None = None) -> Iterator[None]:
        """Translate minio/urllib3 exceptions into the port's errors, chaining the original."""
        try:
            yield
        except S3Error as exc:
            raise classify(
                status=exc.response.status if exc.response is not None else None,
                code=exc.code,
                detail=exc.message or str(exc),
                op=op,
                endpoint=self.endpoint,
                bucket=self.bucket,
                key=key,
            ) from exc
        except (ServerError, InvalidResponseError) as exc:
            # InvalidResponseError (a non-XML error body, e.g. from a proxy) keeps its status
            # only in a private attribute.
            status = exc.status_code if isinstance(exc, ServerError) else getattr(exc, "_code", None)
            raise classify(
                status=status, code=None, detail=str(exc), op=op,
                endpoint=self.endpoint, bucket=self.bucket, key=key,
            ) from exc
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise unreachable(
                op=op, endpoint=self.endpoint, bucket=self.bucket, key=key, detail=str(exc)
            ) from exc
        except (MinioException, ValueError) as exc:
            # ValueError: the SDK validates names and arguments before sending (as botocore's
            # ParamValidationError, which the boto3 adapter reports as StorageError too).
            raise StorageError(f"S3 {op} at {self.endpoint} failed before sending: {exc}") from exc

    def get(self, key: str) -> bytes:
        """Return the whole object; raises ObjectNotFound."""
        with self._errors("GET", key):
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def put(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Write the object in one PUT request and return what was written."""
        meta: dict[str, Any] = dict(check_metadata(metadata))
        part_size = min(max(len(data), _MIN_PART), _MAX_SINGLE_PUT)
        with self._errors("PUT", key):
            result = self._client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata=meta or None,
                part_size=part_size,
            )
        return ObjectInfo(
            key=key,
            size=len(data),
            etag=(result.etag or "").strip('"'),
            last_modified=datetime.now(timezone.utc),
        )

    def head(self, key: str) -> ObjectInfo:
        """Return the object's info; raises ObjectNotFound."""
        with self._errors("HEAD", key):
            obj = self._client.stat_object(self.bucket, key)
        return ObjectInfo(
            key=key,
            size=int(obj.size or 0),
            etag=(obj.etag or "").strip('"'),
            last_modified=obj.last_modified or datetime.now(timezone.utc),
        )

    def exists(self, key: str) -> bool:
        """Whether the key exists (one HEAD request)."""
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield the objects under ``prefix``; the SDK follows continuation tokens lazily."""
        with self._errors("LIST", prefix):
            for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if obj.is_dir or obj.object_name is None:
                    continue
                yield ObjectInfo(
                    key=obj.object_name,
                    size=int(obj.size or 0),
                    etag=(obj.etag or "").strip('"'),
                    last_modified=obj.last_modified or datetime.now(timezone.utc),
                )

    def delete(self, key: str) -> None:
        """Delete the object; a missing key is not an error."""
        with self._errors("DELETE", key):
            try:
                self._client.remove_object(self.bucket, key)
            except S3Error as exc:
                # S3 answers 204 for missing keys, but some gateways say NoSuchKey.
                if exc.code not in ("NoSuchKey", "NoSuchObject"):
                    raise

    def presign_get(self, key: str, expires_s: int = 3600, download_as: str | None = None) -> str:
        """Return a presigned GET URL (computed locally: the region is configured)."""
        headers = {"response-content-disposition": attachment(download_as)} if download_as else None
        with self._errors("PRESIGN", key):
            return self._client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=expires_s), response_headers=headers
            )

    def presign_put(self, key: str, expires_s: int = 3600) -> PresignedUpload:
        """Return a presigned PUT URL of exactly ``key`` (computed locally: the region is configured)."""
        with self._errors("PRESIGN-PUT", key):
            url = self._client.presigned_put_object(self.bucket, key, expires=timedelta(seconds=expires_s))
        return PresignedUpload(url, "PUT", {}, key, expires_s)

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing; "already owned by you" counts as done."""
        with self._errors("HEAD-BUCKET"):
            # Check first: production credentials often may not CreateBucket at all.
            if self._client.bucket_exists(self.bucket):
                return
        with self._errors("CREATE-BUCKET"):
            try:
                self._client.make_bucket(self.bucket, location=self._region)
            except S3Error as exc:
                # Another worker may have created it between our check and the create.
                if exc.code != "BucketAlreadyOwnedByYou":
                    raise

    def ping(self) -> None:
        """HEAD the bucket: proves the server answers, credentials work and the bucket exists."""
        with self._errors("HEAD-BUCKET"):
            found = self._client.bucket_exists(self.bucket)
        if not found:
            raise classify(
                status=404, code="NoSuchBucket", detail="bucket not found", op="HEAD-BUCKET",
                endpoint=self.endpoint, bucket=self.bucket, key=None,
            )
