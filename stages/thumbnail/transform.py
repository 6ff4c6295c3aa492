"""The thumbnail transform: source bytes (or a parent's pixels) in, a rendition in a fixed box out.

Pure; no Kafka, no storage.
"""

from __future__ import annotations

from dataclasses import replace

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
    vips_errors,
)
from stages.imaging.placeholder import blurhash
from stages.imaging.safe_load import Crop, SizeMode


def _mode(spec: ThumbnailSpec) -> tuple[SizeMode, Crop]:
    """libvips thumbnail size mode and crop for a fit."""
    if spec.fit == "cover":
        # Fills the box; a photo smaller than the box is not enlarged (load_thumbnail shrinks the
        # box to fit it, keeping the box's aspect) unless `enlarge`.
        return "both", spec.crop
    if spec.fit == "exact":
        return "force", "none"
    return ("both" if spec.enlarge else "down"), "none"


def thumbnail_pixels(source: Source, spec: ThumbnailSpec, limits: ImageLimits) -> Pixels:
    """The pixels of `thumbnail` before encoding, from bytes (safe decode) or from a parent rendition in memory."""
    size, crop = _mode(spec)
    keep_alpha = spec.format != "jpeg"
    shrink_box = spec.fit != "inside" and not spec.enlarge  # a filled or forced box never enlarges
    if not isinstance(source, bytes):
        image = fit_image(source, spec.width, height=spec.height, size=size, crop=crop,
                          background=spec.background_rgb, keep_alpha=keep_alpha, shrink_box=shrink_box)
        return Pixels(image, "parent rendition")
    header, image = load_thumbnail(
        source, spec.width, height=spec.height, size=size, crop=crop, limits=limits,
        background=spec.background_rgb, keep_alpha=keep_alpha, shrink_box=shrink_box,
    )
    return Pixels(image, f"{header.format.upper()} image")


def thumbnail(data: Source, spec: ThumbnailSpec, limits: ImageLimits) -> Rendition:
    """Make a ``spec.width`` x ``spec.height`` thumbnail of ``data``.

    ``fit``: "inside" keeps the aspect and fits in the box; "cover" fills the box and crops what
    overflows, keeping the centre or the most interesting part ("attention": skin, saturation,
    edges; "entropy": detail); "exact" distorts to the box. No fit enlarges a photo smaller than
    the box unless ``spec.enlarge``: cover and exact then make the largest box of the same aspect
    that fits inside the photo (a 1x1 photo stays 1x1). Same safe decode as every stage (header limits, orientation, sRGB, first
    frame, no metadata); alpha is kept for WebP/AVIF/PNG and flattened onto ``spec.background``
    for JPEG. ``data`` may also be a parent rendition's pixels in memory.

    The rendition carries a BlurHash ``placeholder`` of itself (4x3 components, 3:4 for portrait).

    Raises:
        ImageRejected: for anything that is not a usable image.
    """
    pixels = thumbnail_pixels(data, spec, limits)
    with vips_errors(pixels.what):
        # Decoded once into memory (a thumbnail is small): the encoder and the placeholder both read it.
        image = pixels.image.copy_memory()
        placeholder = blurhash(image, *((4, 3) if image.width >= image.height else (3, 4)))
    return replace(encode(image, OutputOptions.from_spec(spec), what=pixels.what), placeholder=placeholder)
