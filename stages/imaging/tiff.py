"""Walk a TIFF's IFD tree in pure Python: what camera RAW files (DNG, NEF, ARW, CR2) are made of.

Only the tags a header decision needs are read (sizes, compression, photometric, offsets of
embedded JPEG previews, DNG version); values are read lazily from the buffer, so a hostile IFD
count or offset costs at most a bounded walk, never an allocation in proportion to what it declares.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

NEW_SUBFILE_TYPE, WIDTH, HEIGHT, COMPRESSION, PHOTOMETRIC = 254, 256, 257, 259, 262
MAKE, ORIENTATION, STRIP_OFFSETS, STRIP_BYTE_COUNTS = 271, 274, 273, 279
SUB_IFDS, JPEG_OFFSET, JPEG_LENGTH, DNG_VERSION = 330, 513, 514, 50706
CFA, LINEAR_RAW = 32803, 34892  # photometric interpretations of sensor data

_INT_TYPES = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4), 13: ("I", 4), 16: ("Q", 8)}
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}
# A camera file has a handful of IFDs; more is a loop or an attack.
_MAX_IFDS = 32
_MAX_ENTRIES = 1000


class TiffError(ValueError):
    """The IFD structure is truncated or inconsistent."""


@dataclass(frozen=True)
class Entry:
    ftype: int
    count: int
    value_at: int  # where the value bytes start in the file


class TiffReader:
    """The IFDs of a little- or big-endian classic TIFF (not BigTIFF: no camera writes it)."""

    def __init__(self, data: bytes) -> None:
        if data[:4] not in (b"II*\x00", b"MM\x00*"):
            raise TiffError("not a classic TIFF header")
        self.data = data
        self.endian = "<" if data[:2] == b"II" else ">"

    def _unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(self.endian + fmt, self.data, offset)
        except struct.error:
            raise TiffError(f"truncated at offset {offset}") from None

    def ifd(self, offset: int) -> tuple[dict[int, Entry], int]:
        """The entries of the IFD at ``offset`` and the offset of the next IFD (0 = none)."""
        (count,) = self._unpack("H", offset)
        if count > _MAX_ENTRIES or offset + 2 + count * 12 + 4 > len(self.data):
            raise TiffError(f"IFD at {offset} runs past the end of the data")
        entries: dict[int, Entry] = {}
        for i in range(count):
            pos = offset + 2 + i * 12
            tag, ftype, n = self._unpack("HHI", pos)
            size = _TYPE_SIZES.get(ftype, 1) * n
            if size <= 4:
                at = pos + 8
            else:
                (at,) = self._unpack("I", pos + 8)
            entries[tag] = Entry(ftype, n, at)
        (next_ifd,) = self._unpack("I", offset + 2 + count * 12)
        return entries, next_ifd

    def ints(self, entry: Entry | None, limit: int = 64) -> list[int]:
        """Integer values of an entry (at most ``limit``); [] when absent or not an integer type."""
        if entry is None or entry.ftype not in _INT_TYPES:
            return []
        code, size = _INT_TYPES[entry.ftype]
        return [self._unpack(code, entry.value_at + i * size)[0] for i in range(min(entry.count, limit))]

    def int(self, entries: dict[int, Entry], tag: int, default: int = 0) -> int:
        values = self.ints(entries.get(tag), 1)
        return values[0] if values else default

    def text(self, entry: Entry | None, limit: int = 256) -> str:
        """An ASCII entry as text, without the terminating NULs."""
        if entry is None or entry.ftype != 2:
            return ""
        raw = self.data[entry.value_at : entry.value_at + min(entry.count, limit)]
        return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()

    def walk(self) -> Iterator[dict[int, Entry]]:
        """Every IFD: the IFD0 chain and their SubIFDs, depth first, each at most once.

        Only IFD0 must be sound (TiffError otherwise). The walk stops quietly at a damaged later IFD
        or after ``_MAX_IFDS``: a 200-page scan or a stray next-IFD pointer is still an ordinary
        TIFF (libtiff reads its first page), and camera files keep what matters in a few IFDs.
        """
        (first,) = self._unpack("I", 4)
        todo, seen = [first], set()
        while todo and len(seen) < _MAX_IFDS:
            offset = todo.pop(0)
            if offset == 0 or offset in seen:
                continue
            try:
                entries, next_ifd = self.ifd(offset)
                children = self.ints(entries.get(SUB_IFDS), 16)
            except TiffError:
                if not seen:
                    raise
                return
            seen.add(offset)
            yield entries
            todo[:0] = [*children, next_ifd]


@dataclass(frozen=True)
class RawLayout:
    """What a TIFF-based RAW file holds: ``kind`` ("dng", "nef", "arw", "cr2", "raw"), the largest
    image (sensor) size, IFD0's orientation, and the (offset, length) of each embedded JPEG."""

    kind: str
    width: int
    height: int
    orientation: int
    jpegs: tuple[tuple[int, int], ...]


_VENDORS = (("NIKON", "nef"), ("SONY", "arw"), ("CANON", "cr2"))
# Compression codes only camera sensor data uses (Nikon, Sony, Kodak/Sony packed, lossless JPEG in DNG/CR2).
_RAW_COMPRESSION = frozenset({34713, 32767, 32769, 32770, 65000})


def raw_layout(data: bytes) -> RawLayout | None:
    """The RAW layout of a TIFF, or None when it is an ordinary TIFF image.

    A TIFF is RAW when it says so (DNGVersion, Canon's CR2 signature) or when any IFD holds sensor
    data (CFA or LinearRaw photometric, or a vendor's raw compression). An exported TIFF that merely
    carries a camera's Make is an ordinary image.
    """
    reader = TiffReader(data)
    cr2 = data[8:10] == b"CR"
    is_raw = dng = cr2
    make = ""
    orientation = 1
    width = height = 0
    jpegs: list[tuple[int, int]] = []
    for index, entries in enumerate(reader.walk()):
        if index == 0:
            make = reader.text(entries.get(MAKE)).upper()
            orientation = reader.int(entries, ORIENTATION, 1)
            dng = DNG_VERSION in entries
            is_raw = is_raw or dng
        sensor = reader.int(entries, PHOTOMETRIC) in (CFA, LINEAR_RAW)
        if sensor or reader.int(entries, COMPRESSION) in _RAW_COMPRESSION:
            is_raw = True
        w, h = reader.int(entries, WIDTH), reader.int(entries, HEIGHT)
        if w * h > width * height:
            width, height = w, h
        jpeg = None if sensor else _jpeg_of(reader, entries)  # DNG's lossless-JPEG tiles are sensor data
        if jpeg is not None:
            jpegs.append(jpeg)
    if not is_raw:
        return None
    if cr2:
        kind = "cr2"
    elif dng:
        kind = "dng"
    else:
        kind = next((k for vendor, k in _VENDORS if make.startswith(vendor)), "raw")
    return RawLayout(kind, width, height, orientation if 1 <= orientation <= 8 else 1, tuple(jpegs))


def _jpeg_of(reader: TiffReader, entries: dict[int, Entry]) -> tuple[int, int] | None:
    """(offset, length) of a JPEG stream this IFD points at, if it starts like one."""
    if JPEG_OFFSET in entries:
        offset, length = reader.int(entries, JPEG_OFFSET), reader.int(entries, JPEG_LENGTH)
    elif reader.int(entries, COMPRESSION) in (6, 7) and len(reader.ints(entries.get(STRIP_OFFSETS), 2)) == 1:
        offset, length = reader.int(entries, STRIP_OFFSETS), reader.int(entries, STRIP_BYTE_COUNTS)
    else:
        return None
    if length < 4 or offset + length > len(reader.data) or reader.data[offset : offset + 3] != b"\xff\xd8\xff":
        return None
    return offset, length
