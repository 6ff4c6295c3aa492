"""Shared imaging helpers for the image stages: libvips setup, safe loading, limits, encoding, errors.

Every stage decodes untrusted uploads the same way: ``probe`` identifies the format from
magic bytes and checks byte/pixel/side limits from the header before any decoder runs;
``load_thumbnail`` / ``load_image`` decode with libvips thumbnail (shrink-on-load, auto-rotate,
sRGB, 8-bit, first frame only, fail on corrupt data); ``encode`` writes JPEG / WebP / AVIF / PNG
without metadata (``encode_jpeg`` is its JPEG shorthand). Anything that will never make a
rendition raises ``ImageRejected``, a permanent error with a stable ``reason`` slug.
``fit_image`` / ``as_parent`` derive from pixels already in memory (a fused worker's parent
rendition). ``configure_vips`` is called once per worker process.
"""

from stages.imaging.derive import Pixels, Source, as_parent, fit_image
from stages.imaging.encode import (
    FORMAT_CONTENT_TYPE,
    FORMAT_EXT,
    WHITE,
    OutputFormat,
    OutputOptions,
    Rendition,
    encode,
    encode_jpeg,
    read_copyright,
)
from stages.imaging.errors import ImageRejected, vips_errors
from stages.imaging.limits import ImageLimits
from stages.imaging.probe import ImageHeader, probe
from stages.imaging.safe_load import load_image, load_thumbnail, to_srgb8
from stages.imaging.vips_setup import configure_vips, ensure_vips_safety

__all__ = [
    "FORMAT_CONTENT_TYPE",
    "FORMAT_EXT",
    "WHITE",
    "ImageHeader",
    "ImageLimits",
    "ImageRejected",
    "OutputFormat",
    "OutputOptions",
    "Pixels",
    "Rendition",
    "Source",
    "as_parent",
    "configure_vips",
    "encode",
    "encode_jpeg",
    "ensure_vips_safety",
    "fit_image",
    "load_image",
    "load_thumbnail",
    "probe",
    "read_copyright",
    "to_srgb8",
    "vips_errors",
]
