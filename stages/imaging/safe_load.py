"""Decode an untrusted upload into a shrunk, 8-bit sRGB image, the libvips way."""

from __future__ import annotations

import logging
from typing import Literal

import pyvips

from stages.imaging import raw
from stages.imaging.encode import WHITE
from stages.imaging.errors import ImageRejected, vips_errors
from stages.imaging.heic import decode_heic
from stages.imaging.limits import ImageLimits
from stages.imaging.probe import RAW_FORMATS, ImageHeader, probe
from stages.imaging.vips_setup import ensure_vips_safety

log = logging.getLogger(__name__)

# Passed to the loader as an option string, not as thumbnail_buffer's own fail_on argument:
# thumbnail_buffer accepts fail_on but does not forward it to the loader (libvips#5195), so
# a truncated upload would quietly become a half-grey rendition.
_LOADER_OPTIONS = "[fail_on=error]"

Crop = Literal["none", "centre", "attention", "entropy"]
SizeMode = Literal["down", "both", "force"]


def to_srgb8(
    image: pyvips.Image, *, background: tuple[int, int, int] = WHITE, keep_alpha: bool = False
) -> pyvips.Image:
    """Return ``image`` as 8-bit sRGB: 3 bands, or 4 when ``keep_alpha`` and it has alpha.

    Without ``keep_alpha`` any alpha is flattened onto ``background``.
    """
    # Convert first so the flatten background is on the 8-bit scale whatever the source
    # depth was (16-bit, grey16, float...).
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    alpha = image.hasalpha()
    if alpha and not keep_alpha:
        image = image.flatten(background=list(background))
        alpha = False
    wanted = 4 if alpha else 3
    if image.bands > wanted:  # stray extra bands that are not alpha
        image = image.extract_band(0, n=wanted)
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def load_thumbnail(
    data: bytes,
    width: int,
    *,
    height: int | None = None,
    size: SizeMode = "down",
    crop: Crop = "none",
    limits: ImageLimits,
    background: tuple[int, int, int] = WHITE,
    keep_alpha: bool = False,
    shrink_box: bool = False,
) -> tuple[ImageHeader, pyvips.Image]:
    """Probe ``data`` then decode it shrunk to fit ``width`` x ``height``, as 8-bit sRGB.

    Uses libvips thumbnail, so JPEG/WebP/HEIF shrink-on-load keeps memory proportional to
    the output, EXIF orientation is applied, colour-managed input (CMYK, embedded ICC such as
    Display P3 or Adobe RGB) is converted to sRGB, and only the first frame of an animation is
    read. ``size`` is the libvips thumbnail size mode: "down" never enlarges, "both" may,
    "force" distorts to exactly the box. ``crop`` other than "none" fills the box and crops
    (centre, or the most interesting region by "attention" or "entropy"). Alpha is flattened
    onto ``background`` unless ``keep_alpha``. With ``shrink_box`` a box larger than the photo
    (right way up) is first scaled down to fit inside it, keeping the box's aspect: a filled or
    forced box then never enlarges a small photo.

    HEIC is decoded by pillow-heif (``heic.py``) and camera RAW from its embedded preview or by
    LibRaw (``raw.py``); the shrinking, colour and encoding stay libvips'.

    The image is lazy: pixels are decoded when it is written, so the caller must write it
    inside ``vips_errors()`` (``encode`` does) to get ``ImageRejected`` for bad data.

    Raises:
        ImageRejected: from ``probe`` or from libvips refusing the data.
    """
    header = probe(data, limits)
    ensure_vips_safety()
    box = (width, height if height is not None else width)
    if header.format in RAW_FORMATS:
        return header, _load_raw(data, header, box, size, crop, limits, background, keep_alpha, shrink_box)
    with vips_errors(f"{header.format.upper()} image"):
        if header.format == "heic":
            source = decode_heic(data)
            icc = source.get_typeof("icc-profile-data") != 0
            if shrink_box:
                box = _fit_box(box, (source.width, source.height))
            image = source.thumbnail_image(box[0], height=box[1], size=size, crop=crop,
                                           **({"export_profile": "srgb"} if icc else {}))
        else:
            head = pyvips.Image.new_from_buffer(data, "", access="sequential")
            colour = {"export_profile": "srgb"} if _needs_colour_management(head) else {}
            if shrink_box:
                box = _fit_box(box, _upright_size(head))
            image = pyvips.Image.thumbnail_buffer(
                data, box[0], height=box[1], size=size, crop=crop, option_string=_LOADER_OPTIONS, **colour
            )
        image = to_srgb8(image, background=background, keep_alpha=keep_alpha)
    return header, image


def _fit_box(box: tuple[int, int], source: tuple[int, int]) -> tuple[int, int]:
    """``box`` scaled down (aspect kept, at least 1x1) until it fits inside ``source``; never up."""
    scale = min(1.0, source[0] / box[0], source[1] / box[1])
    return max(1, round(box[0] * scale)), max(1, round(box[1] * scale))


def _upright_size(head: pyvips.Image) -> tuple[int, int]:
    orientation = head.get("orientation") if head.get_typeof("orientation") != 0 else 1
    return (head.height, head.width) if orientation in (5, 6, 7, 8) else (head.width, head.height)


def _load_raw(
    data: bytes, header: ImageHeader, box: tuple[int, int], size: SizeMode, crop: Crop, limits: ImageLimits,
    background: tuple[int, int, int], keep_alpha: bool, shrink_box: bool,
) -> pyvips.Image:
    """A RAW's rendition source: the smallest embedded preview covering the box, else a demosaic."""
    if shrink_box:
        box = _fit_box(box, header.display_size)
    preview = raw.pick_preview(data, header, box, fill=crop != "none" or size == "force")
    if preview is None:
        try:
            with vips_errors(f"{header.format.upper()} image"):
                source = raw.demosaic(data, header, box)
                image = source.thumbnail_image(box[0], height=box[1], size=size, crop=crop)
                return to_srgb8(image, background=background, keep_alpha=keep_alpha)
        except ImageRejected:
            fallback = raw.previews(data)
            if not fallback:
                raise
            # A smaller photo in the gallery beats a dead letter; the log says why it is small.
            log.warning("%s: no decodable sensor data; using its %dx%d preview", header.format.upper(),
                        fallback[0].width, fallback[0].height)
            preview = fallback[0]
    # A preview usually carries no orientation of its own: the RAW's is applied after shrinking, so
    # the box is turned for the shrink when the photo is on its side. A preview with its own EXIF
    # orientation is turned by libvips like any JPEG, and the RAW's is not applied a second time.
    orientation = 1 if _has_own_orientation(preview.jpeg) else preview.orientation
    w, h = (box[1], box[0]) if orientation in (5, 6, 7, 8) else box
    _, image = load_thumbnail(preview.jpeg, w, height=h, size=size, crop=crop, limits=limits,
                              background=background, keep_alpha=keep_alpha)
    if orientation != 1:
        # Rotating reads the shrunk preview out of order, which a sequential JPEG decode refuses:
        # it is rendition-sized, so it goes to memory first.
        with vips_errors(f"{header.format.upper()} preview"):
            image = image.copy_memory()
        image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
        image = image.autorot()
    return image


def _has_own_orientation(jpeg: bytes) -> bool:
    with vips_errors("RAW preview"):
        head = pyvips.Image.new_from_buffer(jpeg, "", access="sequential")
    return head.get_typeof("orientation") != 0 and head.get("orientation") not in (0, 1)


def _needs_colour_management(head: pyvips.Image) -> bool:
    """Whether pixels must go through an ICC transform to become sRGB: an embedded profile, or CMYK.

    Untagged RGB is sRGB by definition (what browsers assume), so it is left alone: asking
    thumbnail for export_profile="srgb" on an untagged image costs a full float colour transform
    (about 300 ms of CPU for a 2048-pixel rendition, measured) that changes nothing. Tagged input
    (Display P3, Adobe RGB, even sRGB) is converted with its profile; CMYK without a profile gets
    libvips' built-in CMYK profile. The header read is lazy: no pixel is decoded here.
    """
    return head.get_typeof("icc-profile-data") != 0 or head.interpretation == "cmyk"


def load_image(
    data: bytes,
    *,
    limits: ImageLimits,
    long_edge: int | None = None,
    background: tuple[int, int, int] = WHITE,
    keep_alpha: bool = False,
) -> tuple[ImageHeader, pyvips.Image]:
    """Probe and decode ``data`` at full size (or fitted inside ``long_edge``, never enlarged).

    The same safe path as :func:`load_thumbnail` (limits from the header, orientation, sRGB,
    first frame, fail on corrupt data): the box is the longest side of the header, so an image
    that EXIF says to rotate by 90° still fits without being shrunk.
    """
    header = probe(data, limits)
    box = max(header.width, header.height)
    if long_edge is not None:
        box = min(box, long_edge)
    return load_thumbnail(
        data, box, height=box, size="down", limits=limits, background=background, keep_alpha=keep_alpha
    )
