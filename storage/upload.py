"""Upload original photos of a shoot to the object store.

A photo's object name is derived from its name and content, so uploading the same photo twice
writes the same key (no duplicate in the gallery) while two different photos that happen to share
a file name get different keys. Its file id is then that of any original: `storage.keys.file_id_of`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StorageError, StorageUnavailable
from storage.keys import ALLOWED_EXTENSIONS, InvalidKey, content_type_for, file_id_of, original_key, slugify
from storage.port import ObjectStore

__all__ = ["UploadResult", "expand_paths", "object_name_for", "slugify", "upload_files"]

_HASH_HEX = 10


@dataclass(frozen=True)
class UploadResult:
    """Outcome of uploading one file; ``error`` is set (and ``etag`` empty) if it failed."""

    path: Path
    key: str
    file_id: str
    size: int
    etag: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the file was stored."""
        return self.error is None


def object_name_for(path: Path, content: bytes, shoot_id: str) -> str:
    """Object name (key stem) of a photo in a shoot: slug of its stem, '-', 10 hex of SHA-256(shoot id, bytes).

    The same photo uploaded twice to one shoot gets the same key (the upload is idempotent); two
    photos that share a file name get two keys.
    """
    digest = hashlib.sha256(shoot_id.encode() + b"\0" + content).hexdigest()
    return f"{slugify(path.stem)}-{digest[:_HASH_HEX]}"


def _extension(path: Path) -> str:
    return path.suffix[1:].lower()


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files to upload: files as given, directories replaced by their image files (not recursive).

    Raises InvalidKey if a file given explicitly is not an accepted image type, so nothing is
    uploaded when the command line has a mistake in it.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and _extension(p) in ALLOWED_EXTENSIONS
            )
        else:
            if _extension(path) not in ALLOWED_EXTENSIONS:
                allowed = ", ".join(sorted(ALLOWED_EXTENSIONS))
                raise InvalidKey(f"{path} is not an accepted image file (extensions: {allowed})")
            found = [path]
        for file in found:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(file)
    return files


def _upload_one(store: ObjectStore, path: Path, shoot_id: str) -> UploadResult:
    content = path.read_bytes()
    ext = _extension(path)
    key = original_key(shoot_id, object_name_for(path, content, shoot_id), ext)
    file_id = file_id_of(key)
    try:
        info = store.put(
            key, content, content_type=content_type_for(ext), metadata={"original-name": _ascii_name(path)}
        )
    except StorageUnavailable:
        raise
    except StorageError as exc:
        return UploadResult(path=path, key=key, file_id=file_id, size=len(content), error=str(exc))
    return UploadResult(path=path, key=key, file_id=file_id, size=info.size, etag=info.etag)


def _ascii_name(path: Path) -> str:
    # Metadata travels as an HTTP header: keep it printable ASCII.
    name = unicodedata.normalize("NFKD", path.name).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in name if c.isprintable())[:200] or "photo"


def upload_files(
    store: ObjectStore,
    paths: Sequence[Path],
    shoot_id: str,
    parallel: int = 4,
    on_done: Callable[[UploadResult], None] | None = None,
) -> list[UploadResult]:
    """Upload photos as originals of ``shoot_id``, ``parallel`` at a time; results in input order.

    Directories expand to their image files. A file the store refuses (permanent StorageError)
    or cannot be read is reported in its result and the others go on; StorageUnavailable stops the
    whole upload (the server is gone, every other file would fail too) and is raised.
    ``on_done`` is called in the caller's thread as each file finishes.
    """
    original_key(shoot_id, "x", "jpg")  # fail on a bad shoot id before reading any file
    files = expand_paths(paths)
    results: dict[int, UploadResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="upload") as pool:
        pending: dict[Future[UploadResult], int] = {
            pool.submit(_upload_one, store, path, shoot_id): index for index, path in enumerate(files)
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    try:
                        result = future.result()
                    except OSError as exc:
                        result = UploadResult(
                            path=files[index], key="", file_id="", size=0, error=f"cannot read: {exc}"
                        )
                    results[index] = result
                    if on_done is not None:
                        on_done(result)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return [results[i] for i in sorted(results)]
