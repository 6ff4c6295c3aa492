"""Write renditions: no metadata leaves the building."""

from __future__ import annotations

import pyvips

from stages.imaging.errors import vips_errors


def encode_jpeg(image: pyvips.Image, quality: int, *, what: str = "image") -> bytes:
    """Encode ``image`` as a baseline JPEG at ``quality`` with optimised Huffman tables.

    All metadata is dropped (EXIF with GPS and serial numbers, XMP, IPTC, ICC): the pixels
    are already sRGB, which is what browsers assume for an untagged JPEG. Because libvips
    is lazy, this is where the source is actually decoded, so libvips errors become
    ``ImageRejected`` here.
    """
    with vips_errors(what):
        data: bytes = image.jpegsave_buffer(Q=quality, optimize_coding=True, keep="none")
    return data
