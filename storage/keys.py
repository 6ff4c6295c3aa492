"""Object key layout, and validation of keys that arrive from outside.

Originals live at ``originals/shoots/{shoot}/{any file name}`` (put by any S3 client, under any
name S3 accepts) and renditions at ``renditions/shoots/{shoot}/{file id}/{version}/{rendition}.{ext}``.
A file id is a slug of the name plus a hash of the whole key (:func:`file_id_of`), so it is an
ASCII id that is the same for the same key and different for any other key. Keys in storage events
come from whoever uploaded, so :func:`parse_original_key` refuses what could escape the layout or
mislead (``..`` segments, absolute keys, control characters) and says what is wrong.
"""

from __future__ import annotations

import hashlib
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
    # Camera RAW (issue 12): Adobe DNG and the TIFF-based Nikon, Sony and Canon files.
    "dng": "image/x-adobe-dng",
    "nef": "image/x-nikon-nef",
    "arw": "image/x-sony-arw",
    "cr2": "image/x-canon-cr2",
}
ALLOWED_EXTENSIONS = frozenset(IMAGE_CONTENT_TYPES)

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SLUG_MAX = 40
# 64 bits of the key: two keys of one bucket collide with odds of about n²/2⁶⁵ (10⁻⁷ for 2 million files).
_KEY_HASH_HEX = 16
_VERSION_HEX = 12


class InvalidKey(ValueError):
    """An object key or one of its parts does not follow the layout; the message says why."""


@dataclass(frozen=True)
class OriginalRef:
    """What an original's key says: its shoot, file id, name and image type."""

    key: str  # exactly as stored
    shoot_id: str
    file_id: str  # file_id_of(key)
    name: str  # the file name under the shoot, as the photographer sees it (NFC), e.g. "IMG_0001 (1).JPG"
    ext: str  # lower-case, without the dot, e.g. "jpg"


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


def rendition_key(shoot_id: str, file_id: str, rendition: str, ext: str, version: str | None = None) -> str:
    """Key of one rendition: ``renditions/shoots/{shoot}/{file}/{version}/{rendition}.{ext}``.

    Deterministic, so a redelivered event overwrites the same object instead of duplicating it; a
    new version of the original (see :func:`version_of`) gets new keys. Without a version (events
    published before versions existed) the key is the older ``.../{file}/{rendition}.{ext}``.
    """
    shoot = _check_id(shoot_id, "shoot id")
    file = _check_id(file_id, "file id")
    name = _check_id(rendition, "rendition name")
    folder = f"{file}/{_check_id(version, 'version')}" if version is not None else file
    return f"{RENDITIONS_PREFIX}{shoot}/{folder}/{name}.{_check_ext(ext)}"


_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _check_raw_key(key: str) -> None:
    """Refuse keys that are hostile or malformed as strings, before looking at the layout.

    Any name S3 accepts is a photographer's name (spaces, ``+``, ``&``, ``#``, accents, CJK...).
    What is refused is what could escape the layout or mislead a person or a path-based tool:
    control characters, bidirectional overrides (``f1\\u202egpj.jpg`` shows as ``f1jpg.jpg``),
    absolute keys, and ``.``, ``..`` or empty segments (with ``/`` or ``\\`` as separator).
    """
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
        if char in _BIDI_CONTROLS:
            raise InvalidKey(f"key {key!r} contains bidirectional control {_describe_char(char)}, "
                             "which makes a name look like another")
    if key.startswith(("/", "\\")):
        raise InvalidKey(f"key {key!r} is absolute (starts with a path separator)")
    for segment in re.split(r"[/\\]", key):
        if segment in (".", ".."):
            raise InvalidKey(f"key {key!r} contains a {segment!r} segment")
        if not segment:
            raise InvalidKey(f"key {key!r} contains an empty segment ('//')")


def parse_original_key(key: str) -> OriginalRef:
    """The shoot, file id, name and extension of an original's key.

    Accepts any key under ``originals/shoots/{shoot}/`` whose last segment has an accepted image
    extension (in any case), including sub-folders. Raises InvalidKey, naming the problem, for an
    unsafe key (see :func:`_check_raw_key`), a key outside a shoot, a shoot id that is not an id,
    or a file that is not an accepted image type.
    """
    _check_raw_key(key)
    if not key.startswith(ORIGINALS_PREFIX):
        raise InvalidKey(f"key {key!r} is not an original: it does not start with {ORIGINALS_PREFIX!r}")
    rest = key[len(ORIGINALS_PREFIX) :]
    shoot_id, slash, name = rest.partition("/")
    if not slash or not name:
        raise InvalidKey(f"key {key!r} is not inside a shoot: expected {ORIGINALS_PREFIX}{{shoot}}/{{file name}}")
    filename = name.rsplit("/", 1)[-1]
    stem, dot, ext = filename.rpartition(".")
    if not dot or not ext:
        raise InvalidKey(f"key {key!r} has no file extension")
    return OriginalRef(
        key=key,
        shoot_id=_check_id(shoot_id, "shoot id"),
        file_id=file_id_of(key),
        name=unicodedata.normalize("NFC", name),
        ext=_check_ext(ext),
    )


def slugify(stem: str) -> str:
    """Lower-case ``stem`` reduced to ``[a-z0-9-]``, at most 40 characters ("photo" if nothing is left)."""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_stem.lower()).strip("-")
    slug = slug[:_SLUG_MAX].rstrip("-")
    return slug or "photo"


def file_id_of(key: str) -> str:
    """The file id of an original: a readable slug of its name, '-', 16 hex digits of SHA-256(key).

    The hash covers the whole key, exactly as stored (no case folding, no Unicode normalisation),
    so the same key always gives the same id, while ``a.jpg`` and ``a.webp``, ``IMG_1.jpg`` in two
    shoots, ``Ä.jpg`` and ``A\u0308.jpg`` (NFC and NFD) are different files. The slug is only for people.
    """
    filename = key.rsplit("/", 1)[-1]
    stem = filename.rpartition(".")[0] or filename
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:_KEY_HASH_HEX]
    return f"{slugify(stem)}-{digest}"


def version_of(upload: str) -> str:
    """A short, id-safe name of one upload (PUT) of an original: 12 hex of SHA-256 of what identifies it.

    Ingest passes the id of the upload's `file.uploaded` event, which is the same for a redelivery
    and new for every PUT, even of bytes put before. It goes into rendition keys, so every upload is
    written at keys of its own: no cache serves an old image under a new URL, and no object the
    gallery is removing (of a replaced or deleted upload) is ever the same object as one being made.
    """
    return hashlib.sha256(upload.encode()).hexdigest()[:_VERSION_HEX]


def content_type_for(ext: str) -> str:
    """Content type to store with an image of this extension (case-insensitive, no dot)."""
    return IMAGE_CONTENT_TYPES[_check_ext(ext)]
