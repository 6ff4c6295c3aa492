"""Where a watermark's logo comes from: a file beside the pipeline file, or a key in the bucket."""

from __future__ import annotations

from pathlib import Path

from stages.watermark.transform import WatermarkConfigError
from storage import ObjectStore, StorageError

S3_SCHEME = "s3://"


def read_logo(location: str, store: ObjectStore, base_dir: Path) -> bytes:
    """The logo's bytes: ``s3://KEY`` from the configured bucket, else a file (relative to ``base_dir``).

    Raises:
        WatermarkConfigError: the logo cannot be read; the message says where it was looked for.
    """
    if location.startswith(S3_SCHEME):
        key = location[len(S3_SCHEME):]
        try:
            return store.get(key)
        except StorageError as exc:
            raise WatermarkConfigError(f"watermark image {location}: cannot read key {key!r} "
                                       f"in bucket {store.bucket!r}: {exc}") from exc
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise WatermarkConfigError(f"watermark image {location}: cannot read {path}: {exc.strerror}") from exc
