"""Capture facts of an original, read once from its header: camera, lens, exposure, when, how big.

Renditions drop every metadata field (GPS and serials must not leak), so what a gallery wants to
show is read here, from the original, without decoding a pixel: libvips' header read gives the EXIF
block of JPEG/PNG/WebP/AVIF, pillow-heif's container read gives HEIC's, and a TIFF or camera RAW is
an EXIF structure itself. Pillow parses the block. The GPS position is only read when the pipeline
file opts in (``facts: {gps: true}``); otherwise it never leaves the original.

Facts never fail a photo: unreadable or absent EXIF gives facts with only the pixel size and name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pyvips
from PIL import Image

from stages.imaging.heic import heic_header
from stages.imaging.limits import ImageLimits
from stages.imaging.probe import RAW_FORMATS, probe

log = logging.getLogger(__name__)

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXPOSURE, _FNUMBER, _ISO, _ORIGINAL, _DIGITIZED = 0x829A, 0x829D, 0x8827, 0x9003, 0x9004
_OFFSET, _OFFSET_ORIGINAL, _FOCAL, _LENS_MAKE, _LENS_MODEL = 0x9010, 0x9011, 0x920A, 0xA433, 0xA434
_MAX_TEXT = 100


@dataclass(frozen=True)
class CaptureFacts:
    """What the original's header says about the capture; None where it says nothing.

    ``captured_at`` is ISO 8601 with the UTC offset when the camera recorded one
    (OffsetTimeOriginal), else local time without offset. ``width``/``height`` are right way up.
    """

    width: int
    height: int
    original_name: str | None = None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    focal_length_mm: float | None = None
    aperture: float | None = None
    exposure_time_s: float | None = None
    shutter: str | None = None
    iso: int | None = None
    captured_at: str | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None


def read_capture_facts(data: bytes, *, limits: ImageLimits, original_name: str | None = None,
                       gps: bool = False) -> CaptureFacts:
    """The capture facts of an original (header only). Raises ImageRejected only when ``probe`` does."""
    header = probe(data, limits)
    width, height = header.display_size
    exif_block: bytes | None = None
    try:
        if header.format == "heic":
            exif_block, (width, height) = heic_header(data)
        elif header.format in RAW_FORMATS or header.format == "tiff":
            exif_block = data  # a TIFF is an EXIF structure
        else:
            head = pyvips.Image.new_from_buffer(data, "", access="sequential")
            orientation = head.get("orientation") if head.get_typeof("orientation") != 0 else 1
            width, height = (head.height, head.width) if orientation in (5, 6, 7, 8) else (head.width, head.height)
            if head.get_typeof("exif-data") != 0:
                exif_block = bytes(head.get("exif-data"))
    except Exception as exc:  # noqa: BLE001 - facts are a bonus; the rendition path reports bad data
        log.debug("capture facts: header unreadable: %s", exc)
    base = CaptureFacts(width=width, height=height, original_name=original_name)
    if not exif_block:
        return base
    try:
        return _from_exif(exif_block, base, gps)
    except Exception as exc:  # noqa: BLE001 - malformed EXIF is common and harmless
        log.debug("capture facts: EXIF unreadable: %s", exc)
        return base


def _from_exif(block: bytes, base: CaptureFacts, gps: bool) -> CaptureFacts:
    exif = Image.Exif()
    exif.load(block)
    sub = exif.get_ifd(_EXIF_IFD)
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    lens = _text(sub.get(_LENS_MODEL))
    lens_make = _text(sub.get(_LENS_MAKE))
    if lens and lens_make and not lens.lower().startswith(lens_make.lower()):
        lens = f"{lens_make} {lens}"
    exposure = _number(sub.get(_EXPOSURE))
    iso = sub.get(_ISO)
    if isinstance(iso, tuple):
        iso = iso[0] if iso else None
    latitude = longitude = None
    if gps:
        latitude, longitude = _gps(exif.get_ifd(_GPS_IFD))
    return CaptureFacts(
        width=base.width, height=base.height, original_name=base.original_name, make=make, model=model, lens=lens,
        focal_length_mm=_rounded(_number(sub.get(_FOCAL)), 2), aperture=_rounded(_number(sub.get(_FNUMBER)), 1),
        exposure_time_s=exposure, shutter=_shutter(exposure), iso=int(iso) if isinstance(iso, int) and iso > 0 else None,
        captured_at=_when(sub.get(_ORIGINAL) or sub.get(_DIGITIZED) or exif.get(_DATETIME),
                          sub.get(_OFFSET_ORIGINAL) or sub.get(_OFFSET)),
        gps_latitude=latitude, gps_longitude=longitude,
    )


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    clean = "".join(c for c in value.replace("\0", " ") if c.isprintable()).strip()
    return clean[:_MAX_TEXT] or None


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number > 0 and number == number and number != float("inf") else None


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _shutter(seconds: float | None) -> str | None:
    """"1/250" below a second (as cameras show it), "2.5s" above."""
    if seconds is None:
        return None
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"1/{round(1 / seconds)}" if Fraction(seconds).limit_denominator(100000).numerator else None


def _when(stamp: object, offset: object) -> str | None:
    text = _text(stamp)
    if not text:
        return None
    try:
        moment = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    zone = _offset(_text(offset))
    return (moment.replace(tzinfo=zone) if zone else moment).isoformat()


def _offset(text: str | None) -> timezone | None:
    if not text or len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return None
    try:
        minutes = int(text[1:3]) * 60 + int(text[4:6])
    except ValueError:
        return None
    if minutes > 14 * 60:
        return None
    return timezone(timedelta(minutes=minutes if text[0] == "+" else -minutes))


def _gps(ifd: dict[int, object]) -> tuple[float | None, float | None]:
    def degrees(value: object, ref: object, negative: str) -> float | None:
        if not isinstance(value, tuple) or len(value) != 3:
            return None
        try:
            d, m, s = (float(v) for v in value)  # type: ignore[arg-type]
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        result = d + m / 60 + s / 3600
        return round(-result if _text(ref) == negative else result, 6)

    return degrees(ifd.get(2), ifd.get(1), "S"), degrees(ifd.get(4), ifd.get(3), "W")
