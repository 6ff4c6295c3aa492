"""Shared imaging helpers for the image stages: libvips setup, safe loading, limits, errors.

Every stage decodes untrusted uploads the same way: ``probe`` identifies the format from
magic bytes and checks byte/pixel/side limits from the header before any decoder runs;
``load_thumbnail`` decodes with libvips thumbnail (shrink-on-load, auto-rotate, sRGB, 8-bit,
fail on corrupt data); ``encode_jpeg`` writes a metadata-free JPEG. Anything that will never
make a rendition raises ``ImageRejected``, a permanent error with a stable ``reason`` slug.
``configure_vips`` is called once per worker process.
"""

from stages.imaging.encode import encode_jpeg
from stages.imaging.errors import ImageRejected, vips_errors
from stages.imaging.limits import ImageLimits
from stages.imaging.probe import ImageHeader, probe
from stages.imaging.safe_load import load_thumbnail, to_srgb8
from stages.imaging.vips_setup import configure_vips, ensure_vips_safety

__all__ = [
    "ImageHeader",
    "ImageLimits",
    "ImageRejected",
    "configure_vips",
    "encode_jpeg",
    "ensure_vips_safety",
    "load_thumbnail",
    "probe",
    "to_srgb8",
    "vips_errors",
]
