"""The benchmark corpus: photos of camera-like size and entropy, made reproducibly from a seed.

Mix (by index, cycling): mostly 24 MP and 12 MP JPEGs at quality 95 (about 6 MB and 3 MB, like a
camera's or a phone's), landscape and portrait, plus an occasional PNG and WebP.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from operations.samples import sample_jpeg


@dataclass(frozen=True)
class CorpusItem:
    """One photo of the corpus."""

    name: str
    width: int
    height: int
    format: str  # "jpeg" | "png" | "webp"


# Ten-photo cycle: 4 × 24 MP, 4 × 12 MP, one PNG, one WebP.
_CYCLE: tuple[tuple[int, int, str], ...] = (
    (6000, 4000, "jpeg"), (4000, 3000, "jpeg"), (4000, 6000, "jpeg"), (3000, 4000, "jpeg"),
    (6000, 4000, "jpeg"), (4000, 3000, "jpeg"), (2400, 1600, "png"), (6000, 4000, "jpeg"),
    (3000, 4000, "jpeg"), (4000, 3000, "webp"),
)
_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp"}


def plan(count: int, jpeg_only: bool = False) -> list[CorpusItem]:
    """What the corpus of `count` photos holds, without making it."""
    cycle = [c for c in _CYCLE if c[2] == "jpeg"] if jpeg_only else list(_CYCLE)
    items = []
    for i in range(count):
        w, h, fmt = cycle[i % len(cycle)]
        items.append(CorpusItem(f"photo-{i:04d}.{_EXT[fmt]}", w, h, fmt))
    return items


def make_photo(item: CorpusItem, seed: int) -> bytes:
    """The bytes of one corpus photo; the same (item, seed) always gives the same bytes."""
    jpeg = sample_jpeg(item.width, item.height, seed, quality=95)
    if item.format == "jpeg":
        return jpeg
    out = io.BytesIO()
    image = Image.open(io.BytesIO(jpeg))
    image.save(out, "PNG" if item.format == "png" else "WEBP", **({"quality": 90} if item.format == "webp" else {}))
    return out.getvalue()


def build(folder: Path, count: int, seed: int = 42, jpeg_only: bool = False) -> list[Path]:
    """Write the corpus into `folder` (reusing photos already there) and return the paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, item in enumerate(plan(count, jpeg_only)):
        path = folder / item.name
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(make_photo(item, seed * 100_000 + i))
            tmp.replace(path)
        paths.append(path)
    return paths


# "How cost grows": JPEGs of one size each, 4:3 like most camera sensors.
SIZED: dict[int, tuple[int, int]] = {12: (4000, 3000), 24: (5657, 4243), 48: (8000, 6000)}


def build_sized(folder: Path, count: int, megapixels: int, seed: int = 42) -> list[Path]:
    """`count` JPEGs (q95) of `megapixels` (12, 24 or 48) in `folder`, reused when already there."""
    width, height = SIZED[megapixels]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"mp{megapixels}-{i:04d}.jpg"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(sample_jpeg(width, height, seed * 100_000 + megapixels * 1000 + i, quality=95))
            tmp.replace(path)
        paths.append(path)
    return paths
