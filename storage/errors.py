"""Errors of the object-store port, the same whichever S3 library sits underneath.

The stage runner decides between "retry with backoff" and "dead-letter now" by exception class,
so every adapter maps its library's exceptions onto these three and chains the original.
"""

from __future__ import annotations

from pipeline.errors import ConfigError, Unavailable


class StorageError(Exception):
    """A storage operation failed and retrying will not help (bad credentials, missing bucket...)."""


class StorageConfigError(StorageError, ConfigError):
    """A storage setting is wrong (endpoint, CA bundle, credentials); raised before any request."""


class ObjectNotFound(StorageError):
    """The key does not exist in the bucket (permanent)."""


class StorageUnavailable(StorageError):
    """The S3 server could not serve the request right now; retrying later may succeed.

    Raised for refused or reset connections, timeouts, HTTP 5xx and throttling (503 SlowDown).
    """


class StorageOutage(StorageUnavailable, Unavailable):
    """The S3 server is away: no answer at all, or a gateway's 502/503/504. Never the event's fault,
    so the stage runner retries it for as long as it lasts without dead-lettering (pipeline.errors.Unavailable).
    A server that answers 500 or throttles still counts toward the retry budget."""


# HTTP statuses of a proxy or load balancer whose S3 backend is down (or of a server shutting down).
OUTAGE_STATUSES = frozenset({502, 503, 504})

# S3 error codes that mean "try again later" even when the status code alone would not say so
# (e.g. RequestTimeout is a 400, throttling may come as 503 or 429).
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "OperationAborted",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "NoSuchObject", "404"})
ACCESS_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
)


def classify(
    *,
    status: int | None,
    code: str | None,
    detail: str,
    op: str,
    endpoint: str,
    bucket: str,
    key: str | None,
) -> StorageError:
    """Build the port exception for an error response (status/code) of the S3 server.

    Shared by every adapter so that both libraries classify the same response the same way.
    ``detail`` is the server's message; it must never contain credentials.
    """
    target = f"s3://{bucket}/{key}" if key is not None else f"bucket '{bucket}'"
    what = f"S3 {op} of {target} at {endpoint}"
    code_str = code or "no error code"
    status_str = f"HTTP {status}" if status is not None else "no HTTP status"
    if code in TRANSIENT_CODES or status == 429 or (status is not None and status >= 500):
        unavailable = StorageOutage if status in OUTAGE_STATUSES and code != "SlowDown" else StorageUnavailable
        return unavailable(
            f"{what} failed: the server is busy or failing ({code_str}, {status_str}: {detail}); "
            "retry later, and check the S3 server's health and logs if it persists"
        )
    if code == "NoSuchBucket" or (status == 404 and key is None):
        return StorageError(
            f"{what} failed: bucket '{bucket}' does not exist; create it (`darkroom dev up` for the "
            "local stack, or ObjectStore.ensure_bucket()) or set DARKROOM_STORAGE__BUCKET"
        )
    if key is not None and (code in NOT_FOUND_CODES or status == 404):
        return ObjectNotFound(f"object '{key}' does not exist in bucket '{bucket}' at {endpoint}")
    if code in ACCESS_CODES or status == 403:
        return StorageError(
            f"{what} was refused ({code_str}, {status_str}); check DARKROOM_STORAGE__ACCESS_KEY, "
            "DARKROOM_STORAGE__SECRET_KEY, DARKROOM_STORAGE__REGION and the bucket policy"
        )
    return StorageError(f"{what} failed ({code_str}, {status_str}): {detail}")


def unreachable(*, op: str, endpoint: str, bucket: str, key: str | None, detail: str) -> StorageOutage:
    """Build the exception for a request that never got an answer (refused, reset, timed out)."""
    target = f"s3://{bucket}/{key}" if key is not None else f"bucket '{bucket}'"
    return StorageOutage(
        f"S3 {op} of {target} got no answer from {endpoint} ({detail}); is the S3 server running "
        f"at {endpoint}? (`darkroom dev up` starts the local one; DARKROOM_STORAGE__ENDPOINT_URL "
        "points elsewhere)"
    )
