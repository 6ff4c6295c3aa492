"""Decode HEIC (HEVC-coded HEIF, what iPhones save) with pillow-heif, and hand the pixels to libvips.

The libvips of pyvips-binary has no HEVC decoder (its libheif carries AV1 only), so HEIC is decoded
by pillow-heif, whose wheels bundle libheif with libde265. Everything after the decode is libvips:
the caller shrinks, converts Display P3 to sRGB with the embedded profile and encodes.

- Orientation: libheif applies the container's ``irot``/``imir`` while decoding, so the pixels
  come out right way up. The EXIF orientation an iPhone also writes says the same thing and must
  not be applied a second time; the libvips image is made without it.
- Colour: the ICC profile (iPhones embed "Display P3") is attached as ``icc-profile-data``. A file
  with only an nclx colour box naming P3 primaries gets libvips' built-in P3 profile; other nclx
  primaries (BT.2020 HDR) are treated as sRGB, which is what browsers would do with them anyway.
- Depth: 10- and 12-bit files are decoded to 16 bits, so the P3 → sRGB transform works on the full
  precision and only the final rendition is quantised to 8 bits (no banding in skies).
"""

from __future__ import annotations

import functools

import numpy as np
import pillow_heif
import pyvips

from stages.imaging.errors import ImageRejected

# nclx colour_primaries value of Display P3 (SMPTE EG 432-1).
_NCLX_P3 = 12


@functools.cache
def _p3_profile() -> bytes:
    probe = pyvips.Image.black(1, 1, bands=3).cast("uchar").copy(interpretation="srgb")
    return bytes(probe.icc_transform("p3", input_profile="srgb").get("icc-profile-data"))


def _open(data: bytes, *, hdr: bool) -> pillow_heif.HeifFile:
    try:
        return pillow_heif.open_heif(data, convert_hdr_to_8bit=not hdr)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ImageRejected("corrupt", f"The HEIC image could not be read ({_one_line(exc)}).") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def heic_header(data: bytes) -> tuple[bytes | None, tuple[int, int]]:
    """The primary image's EXIF block and its right-way-up (width, height), read from the
    container without decoding any pixel."""
    heif = _open(data, hdr=False)
    exif = heif.info.get("exif")
    return (bytes(exif) if exif else None), heif.size


def decode_heic(data: bytes) -> pyvips.Image:
    """Decode the primary image of a HEIC: right way up, full size, 8- or 16-bit, ICC attached.

    Raises:
        ImageRejected: "corrupt" when libheif cannot decode it.
    """
    heif = _open(data, hdr=True)
    try:
        pixels = np.asarray(heif)  # decodes; handles the row stride libheif pads to
    except (ValueError, RuntimeError, OSError) as exc:
        raise ImageRejected("corrupt", f"The HEIC image could not be decoded ({_one_line(exc)}).") from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    image = pyvips.Image.new_from_array(np.ascontiguousarray(pixels))
    # pillow-heif scales 10/12-bit samples to the full 16-bit range, which is libvips' rgb16 scale.
    sixteen = pixels.dtype == np.uint16
    bands = image.bands
    if sixteen:
        interpretation = "rgb16" if bands >= 3 else "grey16"
    else:
        interpretation = "srgb" if bands >= 3 else "b-w"
    image = image.copy(interpretation=interpretation)
    icc = heif.info.get("icc_profile")
    if not icc and (heif.info.get("nclx_profile") or {}).get("color_primaries") == _NCLX_P3:
        icc = _p3_profile()
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", bytes(icc))
    return image
