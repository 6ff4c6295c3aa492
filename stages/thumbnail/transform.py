"""The thumbnail transform: source bytes (or a parent's pixels) in, a rendition in a fixed box out.

Pure; no Kafka, no storage.
"""

from __future__ import annotations

from pipeline.contracts.renditions import ThumbnailSpec
from stages.imaging import (
    ImageLimits,
    OutputOptions,
    Pixels,
    Rendition,
    Source,
    encode,
    fit_image,
    load_thumbnail,
)
from stages.imaging.safe_load import Crop, SizeMode


def _mode(spec: ThumbnailSpec) -> tuple[SizeMode, Crop]:
    """libvips thumbnail size mode and crop for a fit."""
    if spec.fit == "cover":
        # A thumbnail grid wants every cell the same size, so cover fills the box even from a
        # tiny source.
        return "both", spec.crop
    if spec.fit == "exact":
        return "force", "none"
    return ("both" if spec.enlarge else "down"), "none"


def thumbnail_pixels(source: Source, spec: ThumbnailSpec, limits: ImageLimits) -> Pixels:
    """The pixels of `thumbnail` before encoding, from bytes (safe decode) or from a parent rendition in memory."""
    size, crop = _mode(spec)
    keep_alpha = spec.format != "jpeg"
    if not isinstance(source, bytes):
        image = fit_image(source, spec.width, height=spec.height, size=size, crop=crop,
                          background=spec.background_rgb, keep_alpha=keep_alpha)
        return Pixels(image, "parent rendition")
    header, image = load_thumbnail(
        source, spec.width, height=spec.height, size=size, crop=crop, limits=limits,
        background=spec.background_rgb, keep_alpha=keep_alpha,
    )
    return Pixels(image, f"{header.format.upper()} image")


def thumbnail(data: Source, spec: ThumbnailSpec, limits: ImageLimits) -> Rendition:
    """Make a ``spec.width`` x ``spec.height`` thumbnail of ``data``.

    ``fit``: "inside" keeps the aspect and fits in the box (never enlarging unless
    ``spec.enlarge``); "cover" fills the box and crops what overflows, keeping the centre or the
    most interesting part ("attention": skin, saturation, edges; "entropy": detail); "exact"
    distorts to the box. Same safe decode as every stage (header limits, orientation, sRGB, first
    frame, no metadata); alpha is kept for WebP/AVIF/PNG and flattened onto ``spec.background``
    for JPEG. ``data`` may also be a parent rendition's pixels in memory.

    Raises:
        ImageRejected: for anything that is not a usable image.
    """
    pixels = thumbnail_pixels(data, spec, limits)
    return encode(pixels.image, OutputOptions.from_spec(spec), what=pixels.what)
