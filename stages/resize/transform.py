"""The resize transform: source bytes in, a rendition fitted inside a long edge out. Pure; no Kafka, no storage."""

from __future__ import annotations

from pipeline.contracts.renditions import ResizeSpec
from stages.imaging import ImageLimits, OutputOptions, Rendition, encode, load_thumbnail

__all__ = ["Rendition", "resize"]


def resize(data: bytes, spec: ResizeSpec, limits: ImageLimits) -> Rendition:
    """Resize an image so its longest side is ``spec.long_edge``, encoded as ``spec`` says.

    The header is probed first (format allow-list, byte/pixel/side limits) so hostile input
    costs nothing; the decode uses shrink-on-load, applies EXIF orientation, converts to
    8-bit sRGB (CMYK, grey, 16-bit and ICC profiles included) and reads only the first frame
    of an animation. Alpha is kept for formats that have it and flattened onto
    ``spec.background`` for JPEG. Images already smaller than ``long_edge`` keep their size
    unless ``spec.enlarge``. The output carries no metadata (but an optional copyright).

    Raises:
        ImageRejected: for anything that is not a usable image; never a raw ``pyvips.Error``.
    """
    output = OutputOptions.from_spec(spec)
    header, image = load_thumbnail(
        data,
        spec.long_edge,
        height=spec.long_edge,
        size="both" if spec.enlarge else "down",
        limits=limits,
        background=output.background,
        keep_alpha=output.format != "jpeg",
    )
    return encode(image, output, what=f"{header.format.upper()} image")
