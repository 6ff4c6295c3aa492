"""The resize transform: source bytes (or a parent's pixels) in, a rendition fitted inside a long edge out.

Pure; no Kafka, no storage.
"""

from __future__ import annotations

from pipeline.contracts.renditions import ResizeSpec
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

__all__ = ["Rendition", "resize", "resize_pixels"]


def resize_pixels(source: Source, spec: ResizeSpec, limits: ImageLimits) -> Pixels:
    """The pixels of `resize` before encoding, from bytes (safe decode) or from a parent rendition in memory."""
    output = OutputOptions.from_spec(spec)
    size = "both" if spec.enlarge else "down"
    keep_alpha = output.format != "jpeg"
    if not isinstance(source, bytes):
        image = fit_image(source, spec.long_edge, height=spec.long_edge, size=size, background=output.background,
                          keep_alpha=keep_alpha)
        return Pixels(image, "parent rendition")
    header, image = load_thumbnail(
        source, spec.long_edge, height=spec.long_edge, size=size, limits=limits, background=output.background,
        keep_alpha=keep_alpha,
    )
    return Pixels(image, f"{header.format.upper()} image")


def resize(data: Source, spec: ResizeSpec, limits: ImageLimits) -> Rendition:
    """Resize an image so its longest side is ``spec.long_edge``, encoded as ``spec`` says.

    The header is probed first (format allow-list, byte/pixel/side limits) so hostile input
    costs nothing; the decode uses shrink-on-load, applies EXIF orientation, converts to
    8-bit sRGB (CMYK, grey, 16-bit and ICC profiles included) and reads only the first frame
    of an animation. Alpha is kept for formats that have it and flattened onto
    ``spec.background`` for JPEG. Images already smaller than ``long_edge`` keep their size
    unless ``spec.enlarge``. The output carries no metadata (but an optional copyright).
    ``data`` may also be a parent rendition's pixels in memory (`stages.imaging.as_parent`).

    Raises:
        ImageRejected: for anything that is not a usable image; never a raw ``pyvips.Error``.
    """
    pixels = resize_pixels(data, spec, limits)
    return encode(pixels.image, OutputOptions.from_spec(spec), what=pixels.what)
