"""Sample photos made from a seed, for the demo and the tests when the user brings none."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

# Sizes of the default set: landscape, portrait, square, and one smaller than the web rendition.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((3000, 2000), (2000, 3000), (2400, 2400), (1600, 1200))


def sample_jpeg(width: int, height: int, seed: int, quality: int = 90) -> bytes:
    """A JPEG with gradients, shapes and grain: enough entropy to cost what a photo costs to encode."""
    rng = random.Random(seed)
    # Drawn small and scaled up: fast to make, smooth like a photo's out-of-focus areas.
    small = Image.new("RGB", (max(8, width // 8), max(8, height // 8)))
    draw = ImageDraw.Draw(small)
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    for y in range(small.height):
        t = y / max(1, small.height - 1)
        draw.line([(0, y), (small.width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    for _ in range(12):
        x0, y0 = rng.randrange(small.width), rng.randrange(small.height)
        r = rng.randrange(4, max(5, min(small.size) // 3))
        draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    image = small.filter(ImageFilter.GaussianBlur(2)).resize((width, height), Image.Resampling.BILINEAR)
    grain = Image.effect_noise((width, height), 24).convert("RGB")
    image = Image.blend(image, grain, 0.12)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_samples(folder: Path, count: int, seed: int = 7,
                  sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES) -> list[Path]:
    """Write `count` sample JPEGs into `folder` (cycling through `sizes`) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        path = folder / f"sample-{seed}-{i:03d}.jpg"
        if not path.exists():
            path.write_bytes(sample_jpeg(width, height, seed * 1000 + i))
        paths.append(path)
    return paths
