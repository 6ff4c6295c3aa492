"""Decode an untrusted upload into a shrunk, 8-bit, 3-band sRGB image, the libvips way."""

from __future__ import annotations

import pyvips

from stages.imaging.errors import vips_errors
from stages.imaging.limits import ImageLimits
from stages.imaging.probe import ImageHeader, probe
from stages.imaging.vips_setup import ensure_vips_safety

# Passed to the loader as an option string, not as thumbnail_buffer's own fail_on argument:
# thumbnail_buffer accepts fail_on but does not forward it to the loader (libvips#5195), so
# a truncated upload would quietly become a half-grey rendition.
_LOADER_OPTIONS = "[fail_on=error]"

_WHITE = [255, 255, 255]


def to_srgb8(image: pyvips.Image) -> pyvips.Image:
    """Return ``image`` as 8-bit, 3-band sRGB with any alpha flattened onto white."""
    # Convert first so the flatten background is on the 8-bit scale whatever the source
    # depth was (16-bit, grey16, float...).
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.hasalpha():
        image = image.flatten(background=_WHITE)
    if image.bands > 3:  # stray extra bands that are not alpha
        image = image.extract_band(0, n=3)
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def load_thumbnail(
    data: bytes,
    width: int,
    *,
    height: int | None = None,
    size: str = "down",
    limits: ImageLimits,
) -> tuple[ImageHeader, pyvips.Image]:
    """Probe ``data`` then decode it shrunk to fit ``width`` x ``height``, as 8-bit 3-band sRGB.

    Uses libvips thumbnail, so JPEG/WebP/HEIF shrink-on-load keeps memory proportional to
    the output, EXIF orientation is applied, colour-managed input (CMYK, embedded ICC) is
    converted to sRGB, and only the first frame of an animation is read. ``size`` is the
    libvips thumbnail size mode: "down" never enlarges, "both" may.

    The image is lazy: pixels are decoded when it is written, so the caller must write it
    inside ``vips_errors()`` (``encode_jpeg`` does) to get ``ImageRejected`` for bad data.

    Raises:
        ImageRejected: from ``probe`` or from libvips refusing the data.
    """
    header = probe(data, limits)
    ensure_vips_safety()
    with vips_errors(f"{header.format.upper()} image"):
        image = pyvips.Image.thumbnail_buffer(
            data,
            width,
            height=height if height is not None else width,
            size=size,
            option_string=_LOADER_OPTIONS,
            # export_profile makes thumbnail colour-manage every input to sRGB; untagged
            # CMYK gets libvips' built-in CMYK profile as the import fallback.
            export_profile="srgb",
        )
        image = to_srgb8(image)
    return header, image
