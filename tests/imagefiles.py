"""Photo files the format tests make themselves: iPhone-like HEICs and TIFF-based camera RAW files.

HEICs are encoded by pillow-heif (the library the service decodes them with): the pixels are stored
in sensor orientation with the rotation in the HEIF container and EXIF, as an iPhone writes them.

RAW files are written by hand as TIFF/EP structures, which is what DNG, NEF, ARW and CR2 are: an IFD
tree holding camera EXIF, embedded JPEG previews and one CFA (Bayer) image of 16-bit samples. They
are small and synthetic: the mosaic is a flat colour pattern, uncompressed, with a made-up colour
matrix. LibRaw demosaics the DNG for real; for the vendor formats the service reads the preview, and
LibRaw would refuse an uncompressed NEF/ARW mosaic of a camera it does not know, which is exactly the
"neither preview nor raw data" case.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pillow_heif
import pyvips
from PIL import Image

# TIFF field types.
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10
_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SRATIONAL: 8}
_CODES = {BYTE: "B", SHORT: "H", LONG: "I", UNDEFINED: "B"}


def p3_profile() -> bytes:
    """libvips' built-in Display P3 ICC profile."""
    probe = pyvips.Image.black(1, 1, bands=3).cast("uchar").copy(interpretation="srgb")
    return bytes(probe.icc_transform("p3", input_profile="srgb").get("icc-profile-data"))


def srgb_to_p3(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The Display P3 values of an sRGB colour (libvips' conversion)."""
    pixel = (pyvips.Image.black(1, 1, bands=3) + list(rgb)).cast("uchar").copy(interpretation="srgb")
    p3 = pixel.icc_transform("p3", input_profile="srgb").getpoint(0, 0)
    return (int(p3[0]), int(p3[1]), int(p3[2]))


def exif_bytes(tags: dict[int, object], exif_ifd: dict[int, object] | None = None) -> bytes:
    """An EXIF block (TIFF structure) with IFD0 ``tags`` and Exif-IFD ``exif_ifd`` tags."""
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    if exif_ifd:
        sub = exif.get_ifd(0x8769)
        for tag, value in exif_ifd.items():
            sub[tag] = value
    return exif.tobytes()


def make_heic(pixels: np.ndarray, *, orientation: int = 1, icc: bytes | None = None, exif: bytes | None = None,
              quality: int = 95) -> bytes:
    """A HEIC of ``pixels`` (HxWx3 uint8, or uint16 for a 10-bit file) stored as given (sensor
    orientation); ``orientation`` goes into EXIF and, as pillow-heif does it, the HEIF rotation."""
    if pixels.dtype == np.uint16:
        heif = pillow_heif.from_bytes("RGB;16", (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    else:
        heif = pillow_heif.from_pillow(Image.fromarray(pixels))
    if exif is None:
        exif = exif_bytes({0x0112: orientation})
    else:
        probe = Image.Exif()
        probe.load(exif)
        probe[0x0112] = orientation
        exif = probe.tobytes()
    heif.info["exif"] = exif
    if icc is not None:
        heif.info["icc_profile"] = icc
    buf = io.BytesIO()
    heif.save(buf, quality=quality)
    return buf.getvalue()


def jpeg_of(pixels: np.ndarray, quality: int = 92) -> bytes:
    """A plain JPEG of an HxWx3 uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def flat(width: int, height: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """An HxWx3 uint8 array of one colour."""
    return np.full((height, width, 3), rgb, dtype=np.uint8)


# -- a minimal TIFF writer ------------------------------------------------------------------------


@dataclass
class Ifd:
    """One IFD: ``entries`` are (tag, type, values); ``sub_ifds`` are written and pointed to by tag 330."""

    entries: list[tuple[int, int, object]] = field(default_factory=list)
    sub_ifds: list[Ifd] = field(default_factory=list)
    exif: list[tuple[int, int, object]] = field(default_factory=list)
    # Data blobs this IFD points at: tag -> bytes, the offset is written as the value of `tag`
    # (StripOffsets 273 or JPEGInterchangeFormat 513).
    blobs: dict[int, bytes] = field(default_factory=dict)


class _Writer:
    def __init__(self, header: bytes) -> None:
        self.buf = bytearray(header)

    def _align(self) -> None:
        if len(self.buf) % 2:
            self.buf += b"\0"

    def blob(self, data: bytes) -> int:
        self._align()
        offset = len(self.buf)
        self.buf += data
        return offset

    def _pack(self, ftype: int, values: object) -> tuple[int, bytes]:
        if ftype == ASCII:
            raw = str(values).encode() + b"\0"
            return len(raw), raw
        if isinstance(values, (bytes, bytearray)):
            return len(values), bytes(values)
        vals = list(values) if isinstance(values, Sequence) and not isinstance(values, tuple) else [values]
        if ftype in (RATIONAL, SRATIONAL):
            code = "<ii" if ftype == SRATIONAL else "<II"
            return len(vals), b"".join(struct.pack(code, *v) for v in vals)
        return len(vals), b"".join(struct.pack("<" + _CODES[ftype], v) for v in vals)

    def ifd(self, entries: list[tuple[int, int, object]], next_ifd: int = 0) -> int:
        entries = sorted(entries, key=lambda e: e[0])
        packed = [(tag, ftype, *self._pack(ftype, values)) for tag, ftype, values in entries]
        # Values longer than 4 bytes go first, then the IFD pointing at them.
        placed = []
        for tag, ftype, count, raw in packed:
            if len(raw) > 4:
                placed.append((tag, ftype, count, struct.pack("<I", self.blob(raw))))
            else:
                placed.append((tag, ftype, count, raw.ljust(4, b"\0")))
        self._align()
        offset = len(self.buf)
        self.buf += struct.pack("<H", len(placed))
        for tag, ftype, count, value in placed:
            self.buf += struct.pack("<HHI", tag, ftype, count) + value
        self.buf += struct.pack("<I", next_ifd)
        return offset

    def write(self, ifd: Ifd, next_ifd: int = 0) -> int:
        entries = list(ifd.entries)
        for tag, data in ifd.blobs.items():
            entries.append((tag, LONG, self.blob(data)))
            entries.append((279 if tag == 273 else 514, LONG, len(data)))
        if ifd.sub_ifds:
            entries.append((330, LONG, [self.write(sub) for sub in ifd.sub_ifds]))
        if ifd.exif:
            entries.append((0x8769, LONG, self.ifd(ifd.exif)))
        return self.ifd(entries, next_ifd)


def tiff_file(ifd0: Ifd, *, cr2: bool = False) -> bytes:
    """A little-endian TIFF whose first IFD is ``ifd0``; ``cr2`` writes Canon's CR2 header."""
    header = b"II*\0" + b"\0\0\0\0" + (b"CR\x02\x00\0\0\0\0" if cr2 else b"")
    writer = _Writer(header)
    offset = writer.write(ifd0)
    writer.buf[4:8] = struct.pack("<I", offset)
    return bytes(writer.buf)


def bayer_mosaic(width: int, height: int, rgb: tuple[float, float, float], white: int = 4095) -> bytes:
    """RGGB mosaic of a flat colour, 16-bit little-endian samples (12-bit range)."""
    plane = np.zeros((height, width), dtype=np.uint16)
    r, g, b = (int(round(c * white)) for c in rgb)
    plane[0::2, 0::2] = r
    plane[0::2, 1::2] = g
    plane[1::2, 0::2] = g
    plane[1::2, 1::2] = b
    return plane.astype("<u2").tobytes()


def cfa_ifd(width: int, height: int, mosaic: bytes, *, dng: bool) -> Ifd:
    """The raw image IFD: 16-bit uncompressed CFA (Bayer RGGB)."""
    entries: list[tuple[int, int, object]] = [
        (254, LONG, 0), (256, LONG, width), (257, LONG, height), (258, SHORT, 16), (259, SHORT, 1),
        (262, SHORT, 32803), (277, SHORT, 1), (278, LONG, height), (284, SHORT, 1),
        (33421, SHORT, [2, 2]), (33422, BYTE, [0, 1, 1, 2]),
    ]
    if dng:
        entries += [(50714, LONG, 0), (50717, LONG, 4095)]  # BlackLevel, WhiteLevel
    return Ifd(entries=entries, blobs={273: mosaic})


def preview_ifd(jpeg: bytes) -> Ifd:
    """An embedded JPEG preview (NewSubFileType 1, old-style JPEG interchange format)."""
    return Ifd(entries=[(254, LONG, 1), (259, SHORT, 6)], blobs={513: jpeg})


def camera_exif(*, make: str, model: str, orientation: int = 1,
                exif: Sequence[tuple[int, int, object]] = ()) -> tuple[list[tuple[int, int, object]], list]:
    """IFD0 camera tags and Exif-IFD tags for a RAW file."""
    return [(271, ASCII, make), (272, ASCII, model), (274, SHORT, orientation)], list(exif)


_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)


def linear_to_srgb8(value: float) -> int:
    """The 8-bit sRGB encoding of a linear value in 0..1."""
    encoded = 12.92 * value if value <= 0.0031308 else 1.055 * value ** (1 / 2.4) - 0.055
    return round(255 * encoded)


def make_dng(width: int, height: int, rgb: tuple[float, float, float], *, preview: bytes | None = None,
             orientation: int = 1, exif: Sequence[tuple[int, int, object]] = ()) -> bytes:
    """A DNG 1.4: IFD0 holds the camera tags (and a preview JPEG, if given, as a SubIFD), SubIFD the mosaic."""
    tags, exif_tags = camera_exif(make="Darkroom", model="Testcam DNG", orientation=orientation, exif=exif)
    # XYZ -> linear sRGB (D65): the "camera" sees linear sRGB, so the mosaic's values are its colour.
    matrix = [(round(v * 10000), 10000) for v in _XYZ_TO_SRGB]
    ifd0 = Ifd(
        entries=[*tags, (254, LONG, 1), (50706, BYTE, [1, 4, 0, 0]), (50707, BYTE, [1, 1, 0, 0]),
                 (50708, ASCII, "Darkroom Testcam DNG"), (50721, SRATIONAL, matrix), (50778, SHORT, 21),
                 (50728, RATIONAL, [(1, 1), (1, 1), (1, 1)])],
        sub_ifds=[cfa_ifd(width, height, bayer_mosaic(width, height, rgb), dng=True)]
        + ([preview_ifd(preview)] if preview else []),
        exif=list(exif_tags),
    )
    return tiff_file(ifd0)


def make_vendor_raw(kind: str, width: int, height: int, *, preview: bytes | None,
                    mosaic: bytes | None = None, orientation: int = 1,
                    exif: Sequence[tuple[int, int, object]] = ()) -> bytes:
    """A TIFF-based vendor RAW laid out like the camera writes it: "nef" (Nikon: preview and raw
    in SubIFDs), "arw" (Sony: preview in IFD0, raw in the next IFD) or "cr2" (Canon: CR2 header,
    preview JPEG as IFD0's strip, raw in the next IFD). ``mosaic`` None writes a raw IFD whose strip
    is 16 bytes instead of the sensor's, which no decoder can make an image of."""
    make, model = {"nef": ("NIKON CORPORATION", "NIKON Z 6_2"), "arw": ("SONY", "ILCE-7M4"),
                   "cr2": ("Canon", "Canon EOS 5D Mark IV")}[kind]
    tags, exif_tags = camera_exif(make=make, model=model, orientation=orientation, exif=exif)
    # Without a mosaic the raw IFD declares the sensor but holds 16 bytes: no decoder can make an image of it.
    raw = cfa_ifd(width, height, mosaic if mosaic is not None else b"\x5a" * 16, dng=False)
    if kind == "nef":
        subs = ([preview_ifd(preview)] if preview else []) + ([raw] if raw else [])
        return tiff_file(Ifd(entries=[*tags, (254, LONG, 1)], sub_ifds=subs, exif=exif_tags))
    if kind == "arw":
        ifd0 = Ifd(entries=[*tags, (254, LONG, 1)], exif=exif_tags,
                   blobs={513: preview} if preview else {})
        return _chain(ifd0, raw)
    ifd0 = Ifd(entries=[*tags, (259, SHORT, 6)], exif=exif_tags, blobs={273: preview} if preview else {})
    return _chain(ifd0, raw, cr2=True)


def _chain(ifd0: Ifd, second: Ifd | None, *, cr2: bool = False) -> bytes:
    header = b"II*\0" + b"\0\0\0\0" + (b"CR\x02\x00\0\0\0\0" if cr2 else b"")
    writer = _Writer(header)
    nxt = writer.write(second) if second is not None else 0
    offset = writer.write(ifd0, next_ifd=nxt)
    writer.buf[4:8] = struct.pack("<I", offset)
    return bytes(writer.buf)
