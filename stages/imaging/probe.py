"""Identify an image and read its size from the header alone, in pure Python.

Hostile bytes never reach a C decoder before the limits are checked: the format comes from
magic bytes against an allow-list, and width/height from the few header bytes each format
keeps them in. Nothing here allocates in proportion to the declared image size.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stages.imaging.errors import ImageRejected
from stages.imaging.limits import ImageLimits
from stages.imaging.tiff import TiffError, raw_layout

# Camera RAW kinds (TIFF-based); "raw" is a TIFF holding sensor data from another vendor.
RAW_FORMATS = frozenset({"dng", "nef", "arw", "cr2", "raw"})


@dataclass(frozen=True)
class ImageHeader:
    """What the header says.

    ``format`` is one of "jpeg", "png", "webp", "tiff", "heif" (AVIF, decoded by libvips), "heic"
    (HEVC-coded HEIF, decoded by pillow-heif), "gif", or a RAW kind of ``RAW_FORMATS``. ``width``
    and ``height`` are as stored (for RAW: the sensor image); ``orientation`` is the EXIF-style
    orientation when the container itself carries it (HEIF ``irot``, a RAW's IFD0), else 1.
    """

    format: str
    width: int
    height: int
    orientation: int = 1

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) once the orientation is applied."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def _corrupt(fmt: str, what: str) -> ImageRejected:
    return ImageRejected("corrupt", f"The {fmt.upper()} header is invalid: {what}.")


# --- JPEG -----------------------------------------------------------------------------------

# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the
# range but are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers with no length field.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2  # after SOI
    n = len(data)
    while True:
        if pos >= n or data[pos] != 0xFF:
            raise _corrupt("jpeg", "no frame header before the end of the data")
        while pos < n and data[pos] == 0xFF:  # fill bytes may pad any marker
            pos += 1
        if pos >= n:
            raise _corrupt("jpeg", "truncated in a marker")
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI or scan data before any frame header
            raise _corrupt("jpeg", "no frame header before the image data")
        if pos + 2 > n:
            raise _corrupt("jpeg", "truncated in a segment length")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise _corrupt("jpeg", "segment length below 2")
        if marker in _JPEG_SOF:
            if pos + 7 > n or length < 8:
                raise _corrupt("jpeg", "truncated frame header")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if height == 0:
                # Height 0 defers it to a DNL marker, which libjpeg does not support.
                raise _corrupt("jpeg", "frame height 0 (DNL) is not supported")
            return width, height
        pos += length


# --- PNG ------------------------------------------------------------------------------------

_PNG_MAX_DIMENSION = 2**31 - 1  # PNG spec limit for IHDR width/height


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 8 + 8 + 13 + 4:
        raise _corrupt("png", "too short for an IHDR chunk")
    length, ctype = struct.unpack_from(">I4s", data, 8)
    if ctype != b"IHDR" or length != 13:
        raise _corrupt("png", "first chunk is not a 13-byte IHDR")
    (crc,) = struct.unpack_from(">I", data, 8 + 8 + 13)
    # The CRC costs nothing for 17 bytes and tells a damaged upload from a real huge image.
    if zlib.crc32(data[12 : 12 + 4 + 13]) != crc:
        raise _corrupt("png", "IHDR CRC mismatch")
    width, height = struct.unpack_from(">II", data, 16)
    if not (0 < width <= _PNG_MAX_DIMENSION and 0 < height <= _PNG_MAX_DIMENSION):
        raise _corrupt("png", f"dimensions {width}x{height} out of range")
    return width, height


# --- GIF ------------------------------------------------------------------------------------


def _gif_size(data: bytes) -> tuple[int, int]:
    if len(data) < 10:
        raise _corrupt("gif", "too short for a logical screen descriptor")
    # libvips sizes every frame to the logical screen, so that is what costs memory.
    width, height = struct.unpack_from("<HH", data, 6)
    if width == 0 or height == 0:
        raise _corrupt("gif", f"logical screen {width}x{height}")
    return width, height


# --- WebP -----------------------------------------------------------------------------------


def _webp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise _corrupt("webp", "too short for a first chunk")
    fourcc = data[12:16]
    payload = 20
    if fourcc == b"VP8X":  # extended (alpha, animation, metadata): canvas size, 24-bit minus one
        width = 1 + int.from_bytes(data[payload + 4 : payload + 7], "little")
        height = 1 + int.from_bytes(data[payload + 7 : payload + 10], "little")
        return width, height
    if fourcc == b"VP8 ":  # lossy: keyframe start code, then 14-bit sizes
        if data[payload + 3 : payload + 6] != b"\x9d\x01\x2a":
            raise _corrupt("webp", "VP8 keyframe start code missing")
        width, height = struct.unpack_from("<HH", data, payload + 6)
        width, height = width & 0x3FFF, height & 0x3FFF
        if width == 0 or height == 0:
            raise _corrupt("webp", f"VP8 frame {width}x{height}")
        return width, height
    if fourcc == b"VP8L":  # lossless: signature byte, then 14-bit sizes minus one
        if data[payload] != 0x2F:
            raise _corrupt("webp", "VP8L signature missing")
        (bits,) = struct.unpack_from("<I", data, payload + 1)
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    raise _corrupt("webp", f"unknown first chunk {fourcc!r}")


# --- TIFF -----------------------------------------------------------------------------------

_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257
# TIFF field type -> struct code for the types a size may use: SHORT, LONG, LONG8.
_TIFF_INT_TYPES = {3: "H", 4: "I", 16: "Q"}


def _tiff_size(data: bytes) -> tuple[int, int]:
    endian = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack_from(endian + "H", data, 2)
    big = version == 43
    try:
        if big:  # BigTIFF: 8-byte offsets, 20-byte entries
            (ifd,) = struct.unpack_from(endian + "Q", data, 8)
            (count,) = struct.unpack_from(endian + "Q", data, ifd)
            entries, entry_size, value_offset = ifd + 8, 20, 12
        else:
            (ifd,) = struct.unpack_from(endian + "I", data, 4)
            (count,) = struct.unpack_from(endian + "H", data, ifd)
            entries, entry_size, value_offset = ifd + 2, 12, 8
        if entries + count * entry_size > len(data):
            raise _corrupt("tiff", "first IFD runs past the end of the data")
        size: dict[int, int] = {}
        for i in range(count):
            entry = entries + i * entry_size
            tag, ftype = struct.unpack_from(endian + "HH", data, entry)
            if tag in (_TIFF_WIDTH, _TIFF_HEIGHT) and ftype in _TIFF_INT_TYPES:
                (size[tag],) = struct.unpack_from(endian + _TIFF_INT_TYPES[ftype], data, entry + value_offset)
    except struct.error:
        raise _corrupt("tiff", "truncated in the first IFD") from None
    width, height = size.get(_TIFF_WIDTH, 0), size.get(_TIFF_HEIGHT, 0)
    if width == 0 or height == 0:
        raise _corrupt("tiff", "first IFD has no image width/length")
    return width, height


# --- HEIF / AVIF (ISO base media file format) -------------------------------------------------

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"avif", b"avis"}
)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload start, box end) for each box in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, btype = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise _corrupt("heif", "truncated box header")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # box extends to the end of its container
            size = end - pos
        if size < header or pos + size > end:
            raise _corrupt("heif", f"box {btype!r} runs past its container")
        yield btype, pos + header, pos + size
        pos += size


def _find_box(data: bytes, start: int, end: int, btype: bytes) -> tuple[int, int] | None:
    for found, payload, box_end in _boxes(data, start, end):
        if found == btype:
            return payload, box_end
    return None


def _heif_brands(data: bytes) -> set[bytes]:
    (size,) = struct.unpack_from(">I", data, 0)
    size = min(size, len(data))
    brands = {data[8:12]}
    brands.update(data[i : i + 4] for i in range(16, size - 3, 4))
    return brands


def _heif_size(data: bytes) -> tuple[int, int]:
    for btype, payload in _heif_primary_properties(data):
        if btype == b"ispe":
            # ispe is a full box: version/flags, then width and height.
            width, height = struct.unpack_from(">II", data, payload + 4)
            if width == 0 or height == 0:
                raise _corrupt("heif", f"primary image {width}x{height}")
            return width, height
    raise _corrupt("heif", "primary image has no size property")


# irot angle (anticlockwise quarter turns) -> the EXIF orientation that displays the same way.
_IROT_TO_EXIF = {0: 1, 1: 8, 2: 3, 3: 6}


def heif_orientation(data: bytes) -> int:
    """The EXIF-style orientation of a HEIF's primary image from its ``irot`` property (mirroring
    by ``imir`` is rare in camera files and reported as no rotation)."""
    try:
        for btype, payload in _heif_primary_properties(data):
            if btype == b"irot":
                return _IROT_TO_EXIF[data[payload] & 0x03]
    except (struct.error, IndexError):
        raise _corrupt("heif", "truncated in the meta box") from None
    return 1


def _heif_primary_properties(data: bytes) -> list[tuple[bytes, int]]:
    """(type, payload offset) of every property associated with the primary item."""
    found: list[tuple[bytes, int]] = []
    try:
        meta = _find_box(data, 0, len(data), b"meta")
        if meta is None:
            raise _corrupt("heif", "no meta box")
        meta_children = meta[0] + 4  # meta is a full box: skip version and flags
        pitm = _find_box(data, meta_children, meta[1], b"pitm")
        iprp = _find_box(data, meta_children, meta[1], b"iprp")
        if pitm is None or iprp is None:
            raise _corrupt("heif", "no primary item or item properties")
        pitm_version = data[pitm[0]]
        (primary,) = struct.unpack_from(">H" if pitm_version == 0 else ">I", data, pitm[0] + 4)

        ipco = _find_box(data, iprp[0], iprp[1], b"ipco")
        if ipco is None:
            raise _corrupt("heif", "no property container")
        properties = list(_boxes(data, ipco[0], ipco[1]))  # referenced by 1-based index

        for btype, payload, box_end in _boxes(data, iprp[0], iprp[1]):
            if btype != b"ipma":
                continue
            version = data[payload]
            flags = int.from_bytes(data[payload + 1 : payload + 4], "big")
            (entry_count,) = struct.unpack_from(">I", data, payload + 4)
            pos = payload + 8
            for _ in range(entry_count):
                if version < 1:
                    (item,) = struct.unpack_from(">H", data, pos)
                    pos += 2
                else:
                    (item,) = struct.unpack_from(">I", data, pos)
                    pos += 4
                count = data[pos]
                pos += 1
                indices = []
                for _ in range(count):
                    if flags & 1:
                        (value,) = struct.unpack_from(">H", data, pos)
                        indices.append(value & 0x7FFF)
                        pos += 2
                    else:
                        indices.append(data[pos] & 0x7F)
                        pos += 1
                if pos > box_end:
                    raise _corrupt("heif", "property association runs past its box")
                if item != primary:
                    continue
                found.extend(properties[i - 1][:2] for i in indices if 1 <= i <= len(properties))
    except (struct.error, IndexError):
        raise _corrupt("heif", "truncated in the meta box") from None
    return found


# --- dispatch -------------------------------------------------------------------------------


def _sniff(data: bytes) -> tuple[str, Callable[[bytes], tuple[int, int]]] | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg", _jpeg_size
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png", _png_size
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", _gif_size
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", _webp_size
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff", _tiff_size
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brands = _heif_brands(data)
        if brands & _AVIF_BRANDS:
            return "heif", _heif_size
        if brands & _HEIF_BRANDS:
            return "heic", _heif_size
    return None


_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def _raw_or_tiff(data: bytes) -> tuple[str, int, int, int] | None:
    """(kind, width, height, orientation) of a TIFF-based camera RAW, or None for an ordinary TIFF."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    try:
        layout = raw_layout(data)
    except TiffError as exc:
        raise _corrupt("tiff", str(exc)) from None
    if layout is None:
        return None
    if layout.width == 0 or layout.height == 0:
        raise _corrupt(layout.kind, "no image in any IFD")
    return layout.kind, layout.width, layout.height, layout.orientation


def probe(data: bytes, limits: ImageLimits) -> ImageHeader:
    """Identify the format from magic bytes and read the size from the header only.

    Only JPEG, PNG, WebP, TIFF, HEIF/HEIC/AVIF, GIF and TIFF-based camera RAW (DNG, NEF, ARW,
    CR2) are accepted. Checks the byte count before
    looking at the data, then the declared pixel count and longest side against ``limits``.
    No pixel is decoded and nothing is allocated in proportion to the declared size.

    Raises:
        ImageRejected: reason "empty", "too-many-bytes", "unsupported-format", "corrupt",
            "too-many-pixels" or "too-large-side".
    """
    if not data:
        raise ImageRejected("empty", "The image is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            "too-many-bytes",
            f"The image is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes.",
        )
    sniffed = _sniff(data)
    if sniffed is None:
        raise ImageRejected(
            "unsupported-format",
            "The data is not a JPEG, PNG, WebP, TIFF, HEIF/HEIC/AVIF, GIF or camera RAW (DNG, NEF, ARW, CR2) image.",
        )
    fmt, read_size = sniffed
    orientation = 1
    try:
        raw = _raw_or_tiff(data) if fmt == "tiff" else None
        if raw is not None:
            fmt, width, height, orientation = raw
        else:
            width, height = read_size(data)
        if fmt == "heic":
            orientation = heif_orientation(data)
    except (struct.error, IndexError):
        raise _corrupt(fmt, "truncated header") from None
    pixels = width * height
    if pixels > limits.max_pixels:
        raise ImageRejected(
            "too-many-pixels",
            f"The {fmt.upper()} image is {width}x{height} ({pixels:,} pixels); "
            f"the limit is {limits.max_pixels:,} pixels.",
        )
    if max(width, height) > limits.max_side:
        raise ImageRejected(
            "too-large-side",
            f"The {fmt.upper()} image is {width}x{height}; no side may exceed {limits.max_side:,} pixels.",
        )
    return ImageHeader(format=fmt, width=width, height=height, orientation=orientation)
