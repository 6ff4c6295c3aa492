"""Write renditions: one encoder for every output format, and no metadata leaves the building."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyvips

from stages.imaging.errors import vips_errors

if TYPE_CHECKING:
    from pipeline.contracts.renditions import ResizeSpec, ThumbnailSpec, WatermarkSpec

OutputFormat = Literal["jpeg", "webp", "avif", "png"]

# Extension (as storage.keys accepts it) and content type of each output format.
FORMAT_EXT: dict[str, str] = {"jpeg": "jpg", "webp": "webp", "avif": "avif", "png": "png"}
FORMAT_CONTENT_TYPE: dict[str, str] = {
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "avif": "image/avif",
    "png": "image/png",
}

WHITE: tuple[int, int, int] = (255, 255, 255)

# AVIF (AV1) encoding at libvips' default effort 4 took 14 s of CPU for a noisy 2 MP image on the
# dev machine; effort 2 is ~10x cheaper for a few percent more bytes, which is the right trade for
# a worker that must keep up with uploads.
_AVIF_EFFORT = 2
# The libvips field holding the EXIF copyright notice (IFD0 tag 0x8298).
COPYRIGHT_FIELD = "exif-ifd0-Copyright"
# libvips renders an EXIF ASCII field as "VALUE (VALUE, ASCII, N components, N bytes)".
_EXIF_ASCII_SUFFIX = re.compile(r", ASCII, \d+ components?, \d+ bytes?\)$")
_MAX_COPYRIGHT_CHARS = 200


@dataclass(frozen=True)
class OutputOptions:
    """How to encode a rendition.

    ``quality`` is the lossy quality (1-100) for JPEG, WebP and AVIF; PNG is lossless and ignores
    it. ``progressive`` applies to JPEG only. ``background`` is what alpha is flattened onto when
    the format has no alpha (JPEG). ``keep_copyright`` keeps the EXIF copyright notice and nothing
    else; all other metadata (EXIF with GPS and serials, XMP, IPTC, ICC) is always dropped.
    """

    format: OutputFormat = "jpeg"
    quality: int = 85
    progressive: bool = False
    keep_copyright: bool = False
    background: tuple[int, int, int] = WHITE

    def __post_init__(self) -> None:
        if self.format not in FORMAT_EXT:
            raise ValueError(f"format must be one of {sorted(FORMAT_EXT)}, got {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if len(self.background) != 3 or not all(0 <= c <= 255 for c in self.background):
            raise ValueError(f"background must be three 0-255 values, got {self.background!r}")

    @classmethod
    def from_spec(cls, spec: ResizeSpec | ThumbnailSpec | WatermarkSpec) -> OutputOptions:
        """The encoder options a rendition of the pipeline file declares."""
        return cls(format=spec.format, quality=spec.quality, progressive=spec.progressive,
                   keep_copyright=spec.keep_copyright, background=spec.background_rgb)

    @property
    def ext(self) -> str:
        """File extension of the output, e.g. "jpg"."""
        return FORMAT_EXT[self.format]

    @property
    def content_type(self) -> str:
        """Content type to store the output with."""
        return FORMAT_CONTENT_TYPE[self.format]


@dataclass(frozen=True)
class Rendition:
    """An encoded rendition and what a consumer needs to store and describe it."""

    data: bytes
    width: int
    height: int
    format: str
    content_type: str
    placeholder: str | None = None  # a BlurHash of the rendition (thumbnails)

    @property
    def ext(self) -> str:
        """File extension for the rendition's object key."""
        return FORMAT_EXT[self.format]


def read_copyright(image: pyvips.Image) -> str | None:
    """The EXIF copyright notice of ``image`` as plain text, or None when it has none."""
    if image.get_typeof(COPYRIGHT_FIELD) == 0:
        return None
    value = _exif_ascii_value(str(image.get(COPYRIGHT_FIELD))).strip()
    # Only printable text survives: the notice is copied into every rendition.
    value = "".join(c for c in value if c.isprintable())[:_MAX_COPYRIGHT_CHARS]
    return value or None


def _exif_ascii_value(raw: str) -> str:
    """The value of a libvips EXIF ASCII field, rendered "V (V, ASCII, n components, n bytes)".

    V may itself contain parentheses ("(c) Jane"), so it is found by the repetition, not by a pattern.
    """
    suffix = _EXIF_ASCII_SUFFIX.search(raw)
    if suffix is None:
        return raw
    rest = raw[: suffix.start()]  # V + " (" + V
    half = (len(rest) - 2) // 2
    value, sep, human = rest[:half], rest[half : half + 2], rest[half + 2 :]
    return value if sep == " (" and human == value else raw


def _clean(image: pyvips.Image, copyright_notice: str | None) -> pyvips.Image:
    """A copy of ``image`` with every metadata field removed, except a fresh copyright notice."""
    clean = image.copy()
    for name in image.get_fields():
        # Basic header fields (width, bands, ...) are not removable; everything else is metadata,
        # including page-height/n-pages, which would make WebP/AVIF save an animation.
        if clean.get_typeof(name) != 0 and name not in _HEADER_FIELDS:
            clean.remove(name)
    if copyright_notice:
        clean.set_type(pyvips.GValue.gstr_type, COPYRIGHT_FIELD, copyright_notice)
    return clean


_HEADER_FIELDS = frozenset(
    {"width", "height", "bands", "format", "coding", "interpretation", "xoffset", "yoffset", "xres", "yres",
     "filename", "mode"}
)


def _flatten(image: pyvips.Image, background: tuple[int, int, int]) -> pyvips.Image:
    if image.hasalpha():
        image = image.flatten(background=list(background)).cast("uchar")
    return image


def encode(image: pyvips.Image, options: OutputOptions, *, what: str = "image") -> Rendition:
    """Encode an 8-bit sRGB ``image`` (3 bands, or 4 with alpha) as ``options`` say.

    All metadata is dropped: the pixels are already sRGB, which is what browsers assume for an
    untagged image, and EXIF/XMP/IPTC may carry GPS positions and camera serials. With
    ``keep_copyright`` the source's EXIF copyright notice (read before any field is dropped) is
    written back as the only EXIF tag. Because libvips is lazy, this is where the source is
    actually decoded, so libvips errors become ``ImageRejected`` here.
    """
    notice = read_copyright(image) if options.keep_copyright else None
    keep = "exif" if notice else "none"
    with vips_errors(what):
        if options.format == "jpeg":
            out = _clean(_flatten(image, options.background), notice)
            data: bytes = out.jpegsave_buffer(
                Q=options.quality, optimize_coding=True, interlace=options.progressive, keep=keep
            )
        elif options.format == "webp":
            out = _clean(image, notice)
            data = out.webpsave_buffer(Q=options.quality, keep=keep)
        elif options.format == "avif":
            out = _clean(image, notice)
            data = out.heifsave_buffer(Q=options.quality, compression="av1", effort=_AVIF_EFFORT, keep=keep)
        else:
            out = _clean(image, notice)
            data = out.pngsave_buffer(compression=6, keep=keep)
    return Rendition(
        data=data, width=out.width, height=out.height, format=options.format, content_type=options.content_type
    )


def encode_jpeg(image: pyvips.Image, quality: int, *, what: str = "image") -> bytes:
    """Encode ``image`` as a baseline, metadata-free JPEG at ``quality`` (see :func:`encode`)."""
    return encode(image, OutputOptions(format="jpeg", quality=quality), what=what).data
