"""Pixels already decoded: a parent rendition held in memory, and how smaller renditions derive from it.

A fused worker (stages/fused_stage.py) makes `web` from the upload and then `thumb` and `proof` from
web's pixels in memory instead of reading web's JPEG back and decoding it again. These helpers are
the in-memory twin of `safe_load.load_thumbnail`: same size modes, crops, alpha handling and 8-bit
sRGB output, without the probe and loader (the pixels are our own, already checked and upright).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyvips

from stages.imaging.encode import COPYRIGHT_FIELD, WHITE
from stages.imaging.safe_load import Crop, SizeMode, _fit_box, to_srgb8
from stages.imaging.vips_setup import ensure_vips_safety

# Already applied to in-memory pixels: the rotation was done when the original was decoded and the
# pixels are sRGB; applying either again would rotate twice or run a colour transform for nothing.
_APPLIED_FIELDS = ("orientation", "icc-profile-data")

Source = bytes | pyvips.Image


@dataclass(frozen=True)
class Pixels:
    """A rendition's pixels before encoding (lazy until written) and what to call them in an error."""

    image: pyvips.Image
    what: str


def as_parent(image: pyvips.Image, *, keep_copyright: bool) -> pyvips.Image:
    """`image` computed into memory once, to serve as the source of the renditions derived from it.

    What its encoded form would not carry is dropped, so a child made from these pixels equals one
    made from the parent's file: the applied orientation and profile, and the copyright notice unless
    the parent keeps it.
    """
    parent = image.copy_memory()
    for name in (*_APPLIED_FIELDS, *(() if keep_copyright else (COPYRIGHT_FIELD,))):
        if parent.get_typeof(name) != 0:
            parent.remove(name)
    return parent


def fit_image(
    image: pyvips.Image,
    width: int,
    *,
    height: int | None = None,
    size: SizeMode = "down",
    crop: Crop = "none",
    background: tuple[int, int, int] = WHITE,
    keep_alpha: bool = False,
    shrink_box: bool = False,
) -> pyvips.Image:
    """`image` (in memory, from `as_parent`) shrunk to fit `width` x `height` as `load_thumbnail` would, as 8-bit sRGB.

    `shrink_box` as in `load_thumbnail`: a box larger than the image is first scaled down to fit inside it.
    """
    ensure_vips_safety()
    box_h = height if height is not None else width
    if shrink_box:
        width, box_h = _fit_box((width, box_h), (image.width, image.height))
    if crop == "none" and size != "force" and image.width <= width and image.height <= box_h and size == "down":
        out = image  # already inside the box and never enlarged: resampling to the same size costs for nothing
    else:
        out = image.thumbnail_image(width, height=box_h, size=size, crop=crop)
    return to_srgb8(out, background=background, keep_alpha=keep_alpha)
