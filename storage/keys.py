"""Object key layout, and validation of keys that arrive from outside.

Originals live at ``originals/shoots/{shoot}/{file}.{ext}`` and renditions at
``renditions/shoots/{shoot}/{file}/{rendition}.{ext}``. Keys in storage events come from whoever
uploaded, so :func:`parse_original_key` refuses anything that could escape the layout, confuse a
path-based tool or smuggle odd unicode into ids, and says what is wrong.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

ORIGINALS_PREFIX = "originals/shoots/"
RENDITIONS_PREFIX = "renditions/shoots/"
# S3's own limit on key length, in UTF-8 bytes.
MAX_KEY_BYTES = 1024

# Extension -> content type of the image formats we accept as originals and write as renditions.
IMAGE_CONTENT_TYPES: dict[str, str] = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "heic": "image/heic",
    "heif": "image/heif",
    "avif": "image/avif",
    "gif": "image/gif",
}
ALLOWED_EXTENSIONS = frozenset(IMAGE_CONTENT_TYPES)

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class InvalidKey(ValueError):
    """An object key or one of its parts does not follow the layout; the message says why."""


@dataclass(frozen=True)
class OriginalRef:
    """The parts of an original's key."""

    shoot_id: str
    file_id: str
    ext: str  # lower-case, without the dot, e.g. "jpg"

    @property
    def key(self) -> str:
        """The object key this reference was parsed from (normalised to a lower-case extension)."""
        return original_key(self.shoot_id, self.file_id, self.ext)


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidKey(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidKey(f"{what} is empty")
    bad = next((c for c in value if not c.isascii()), None)
    if bad is not None:
        raise InvalidKey(f"{what} {value!r} contains non-ASCII character {_describe_char(bad)}")
    if value.startswith("."):
        raise InvalidKey(f"{what} {value!r} starts with a dot")
    if ".." in value:
        raise InvalidKey(f"{what} {value!r} contains '..'")
    if len(value) > 128:
        raise InvalidKey(f"{what} is {len(value)} characters long; the limit is 128")
    if not _ID_RE.fullmatch(value):
        raise InvalidKey(
            f"{what} {value!r} must start with a letter or digit and contain only letters, digits, "
            "'.', '_' or '-'"
        )
    return value


def _check_ext(ext: str) -> str:
    if not isinstance(ext, str):
        raise InvalidKey(f"extension must be a string, got {type(ext).__name__}")
    if not ext:
        raise InvalidKey("extension is empty")
    if ext.startswith("."):
        raise InvalidKey(f"extension {ext!r} must be given without the leading dot")
    lowered = ext.lower()
    if lowered not in ALLOWED_EXTENSIONS:
        allowed = ", ".join(sorted(ALLOWED_EXTENSIONS))
        raise InvalidKey(f"extension {ext!r} is not an accepted image type ({allowed})")
    return lowered


def _describe_char(char: str) -> str:
    name = unicodedata.name(char, "unnamed")
    return f"U+{ord(char):04X} ({name})"


def original_key(shoot_id: str, file_id: str, ext: str) -> str:
    """Key of an original photo: ``originals/shoots/{shoot}/{file}.{ext}``.

    Raises InvalidKey if an id or the extension is not acceptable; the extension is lower-cased.
    """
    shoot = _check_id(shoot_id, "shoot id")
    file = _check_id(file_id, "file id")
    return f"{ORIGINALS_PREFIX}{shoot}/{file}.{_check_ext(ext)}"


def originals_prefix(shoot_id: str) -> str:
    """The prefix of every original of a shoot, ``originals/shoots/{shoot}/``; raises InvalidKey for a bad id."""
    return f"{ORIGINALS_PREFIX}{_check_id(shoot_id, 'shoot id')}/"


def rendition_key(shoot_id: str, file_id: str, rendition: str, ext: str) -> str:
    """Key of one rendition: ``renditions/shoots/{shoot}/{file}/{rendition}.{ext}``.

    Deterministic, so a redelivered event overwrites the same object instead of duplicating it.
    """
    shoot = _check_id(shoot_id, "shoot id")
    file = _check_id(file_id, "file id")
    name = _check_id(rendition, "rendition name")
    return f"{RENDITIONS_PREFIX}{shoot}/{file}/{name}.{_check_ext(ext)}"


def _check_raw_key(key: str) -> None:
    """Refuse keys that are hostile or malformed as strings, before looking at the layout."""
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidKey("key is empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates: what os.fsdecode/surrogateescape makes of bytes that are not UTF-8.
        raise InvalidKey(f"key {key!r} is not valid UTF-8") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(f"key is {len(encoded)} bytes long; S3 keys are limited to {MAX_KEY_BYTES}")
    for char in key:
        if unicodedata.category(char) == "Cc":
            raise InvalidKey(f"key {key!r} contains control character {_describe_char(char)}")
    for char in key:
        if not char.isascii():
            # Our ids are ASCII, so any other character is either a look-alike (Cyrillic 'а'),
            # an invisible (zero-width space, bidi override) or an unnormalised form.
            raise InvalidKey(f"key {key!r} contains non-ASCII character {_describe_char(char)}")
    if "\\" in key:
        raise InvalidKey(f"key {key!r} contains a backslash")
    if key.startswith("/"):
        raise InvalidKey(f"key {key!r} is absolute (starts with '/')")
    if "//" in key:
        raise InvalidKey(f"key {key!r} contains an empty segment ('//')")
    if ".." in key:
        raise InvalidKey(f"key {key!r} contains '..'")


def parse_original_key(key: str) -> OriginalRef:
    """Split an original's key into shoot id, file id and extension.

    Raises InvalidKey, naming the problem, for anything that is not exactly
    ``originals/shoots/{shoot}/{file}.{ext}`` with valid ids and an accepted image extension.
    """
    _check_raw_key(key)
    if not key.startswith(ORIGINALS_PREFIX):
        raise InvalidKey(f"key {key!r} is not an original: it does not start with {ORIGINALS_PREFIX!r}")
    rest = key[len(ORIGINALS_PREFIX) :]
    segments = rest.split("/")
    if len(segments) != 2:
        raise InvalidKey(
            f"key {key!r} has {len(segments)} segment(s) after {ORIGINALS_PREFIX!r}; expected 2 "
            "({shoot}/{file}.{ext})"
        )
    shoot_id, filename = segments
    if not filename:
        raise InvalidKey(f"key {key!r} has no file name")
    file_id, dot, ext = filename.rpartition(".")
    if not dot or not ext:
        raise InvalidKey(f"key {key!r} has no file extension")
    return OriginalRef(
        shoot_id=_check_id(shoot_id, "shoot id"),
        file_id=_check_id(file_id, "file id"),
        ext=_check_ext(ext),
    )


def content_type_for(ext: str) -> str:
    """Content type to store with an image of this extension (case-insensitive, no dot)."""
    return IMAGE_CONTENT_TYPES[_check_ext(ext)]
