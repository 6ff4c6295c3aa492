"""Camera RAW (DNG, NEF, ARW, CR2): the embedded preview when it is big enough, else a LibRaw demosaic.

Cameras embed a JPEG rendered with the camera's own look: full size in CR2 and most NEF/ARW/DNG,
1616 px or so in older ones. Decoding it costs what a JPEG costs, so it is used whenever it covers the
rendition's box. Otherwise the sensor data is demosaiced by rawpy (LibRaw): camera white balance,
sRGB output with the sRGB tone curve and no auto-brightening (the exposure is the photographer's),
at half size when half the sensor still covers the box. A file with neither a preview nor sensor
data LibRaw can decode is refused: ``ImageRejected("no-raw-image")``, a permanent error, so it goes
to the dead-letter queue with that reason.

LibRaw parses untrusted bytes in C; the header limits (``probe``) run first, the sensor size they
check is the largest image of the IFD tree, and only TIFF-based files are ever handed to it.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import pyvips

from stages.imaging.errors import ImageRejected
from stages.imaging.probe import ImageHeader
from stages.imaging.tiff import raw_layout

log = logging.getLogger(__name__)

# SOF markers of baseline and progressive JPEG; a lossless (SOF3) stream in a RAW is sensor data.
_VIEWABLE_SOF = frozenset({0xC0, 0xC1, 0xC2})


@dataclass(frozen=True)
class Preview:
    """An embedded JPEG and the orientation of the RAW it came from (previews carry none of their own)."""

    jpeg: bytes
    width: int
    height: int
    orientation: int


def _sof(jpeg: bytes) -> tuple[int, int, int] | None:
    """(marker, width, height) of a JPEG's frame header, or None."""
    pos, n = 2, len(jpeg)
    while pos + 4 <= n and jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > n:
                return None
            height = int.from_bytes(jpeg[pos + 5 : pos + 7], "big")
            width = int.from_bytes(jpeg[pos + 7 : pos + 9], "big")
            return marker, width, height
        if marker == 0xDA or length < 2:
            return None
        pos += 2 + length
    return None


def previews(data: bytes) -> list[Preview]:
    """Every viewable embedded JPEG of a TIFF-based RAW, largest first."""
    layout = raw_layout(data)
    if layout is None:
        return []
    found = []
    for offset, length in layout.jpegs:
        jpeg = data[offset : offset + length]
        sof = _sof(jpeg)
        if sof is not None and sof[0] in _VIEWABLE_SOF and sof[1] and sof[2]:
            found.append(Preview(jpeg, sof[1], sof[2], layout.orientation))
    return sorted(found, key=lambda p: p.width * p.height, reverse=True)


def _covers(size: tuple[int, int], box: tuple[int, int], fill: bool, full: tuple[int, int]) -> bool:
    """Whether an image of ``size`` makes the rendition without enlarging: it covers the box (both
    sides when the box is filled, one when fitted inside), or it is as large as the sensor image."""
    (w, h), (bw, bh) = size, box
    if max(w, h) >= 0.95 * max(full):
        return True
    return (w >= bw and h >= bh) if fill else (w >= bw or h >= bh)


def pick_preview(data: bytes, header: ImageHeader, box: tuple[int, int], fill: bool) -> Preview | None:
    """The smallest embedded preview that serves a rendition of ``box`` (display orientation), if any."""
    usable = None
    for preview in previews(data):
        size = (preview.height, preview.width) if preview.orientation in (5, 6, 7, 8) else (preview.width, preview.height)
        if _covers(size, box, fill, header.display_size):
            usable = preview  # keep going: a smaller one that still covers is cheaper to decode
    return usable


def demosaic(data: bytes, header: ImageHeader, box: tuple[int, int]) -> pyvips.Image:
    """Demosaic the sensor data with LibRaw: 8-bit sRGB, right way up.

    Raises:
        ImageRejected: "no-raw-image" when LibRaw finds no sensor data it can decode.
    """
    import rawpy  # imported here: LibRaw is only loaded by workers that meet a RAW file

    full_w, full_h = header.display_size
    half = full_w // 2 >= box[0] and full_h // 2 >= box[1]
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(2.4, 12.92),
                                  output_bps=8, half_size=half, output_color=rawpy.ColorSpace.sRGB)
    except (rawpy.LibRawError, ValueError, MemoryError) as exc:
        raise ImageRejected(
            "no-raw-image",
            f"The {header.format.upper()} file has no embedded preview and no sensor data "
            f"LibRaw can decode ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). Export it "
            "from the camera software as DNG or JPEG and upload that.",
        ) from exc
    return pyvips.Image.new_from_array(np.ascontiguousarray(rgb)).copy(interpretation="srgb")
