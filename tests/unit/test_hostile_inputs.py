"""Hostile and odd inputs through every stage's transform: each has one defined outcome.

Either a correct rendition (8-bit sRGB, right side up, no metadata) or ``ImageRejected`` with a
stable reason (which the stage classifies as permanent: the dead-letter queue), never another
exception and never a decode sized by what a header claims.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from collections.abc import Callable

import pytest
import pyvips

from pipeline.contracts.renditions import ResizeSpec, ThumbnailSpec, WatermarkSpec
from stages.imaging import ImageLimits, ImageRejected, Rendition, configure_vips
from stages.resize import resize
from stages.thumbnail import thumbnail
from stages.watermark import prepare_watermark, watermark

LIMITS = ImageLimits()
THUMB = ThumbnailSpec(stage="thumbnail", width=400, height=400, fit="cover", crop="attention", format="webp")
PROOF = prepare_watermark(WatermarkSpec(stage="watermark", text="PROOF", long_edge=2048), None, LIMITS)
METADATA_PREFIXES = ("exif", "xmp", "icc", "iptc", "orientation", "gps")

TRANSFORMS: dict[str, Callable[[bytes], Rendition]] = {
    "resize": lambda data: resize(data, ResizeSpec(stage="resize"), LIMITS),
    "thumbnail": lambda data: thumbnail(data, THUMB, LIMITS),
    "watermark": lambda data: watermark(data, PROOF, LIMITS),
}


def solid(width: int, height: int, colour: list[int]) -> pyvips.Image:
    return (pyvips.Image.black(width, height, bands=len(colour)) + colour).cast("uchar")


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR (correct CRC) declaring any size, without pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def noisy_jpeg(width: int, height: int, **save: object) -> bytes:
    band = pyvips.Image.gaussnoise(width, height, mean=128, sigma=40)
    return band.bandjoin([band, band]).cast("uchar").copy(interpretation="srgb").jpegsave_buffer(**save)


def cmyk_red() -> bytes:
    return solid(600, 400, [0, 255, 255, 0]).copy(interpretation="cmyk").jpegsave_buffer()


def png16_alpha() -> bytes:
    colour = (pyvips.Image.black(600, 400, bands=3) + [0, 0, 65535]).cast("ushort")
    alpha = (pyvips.Image.black(600, 400) + 65535).cast("ushort")
    return colour.bandjoin(alpha).copy(interpretation="rgb16").pngsave_buffer(bitdepth=16)


def animated_gif() -> bytes:
    frames = solid(64, 48, [255, 0, 0]).join(solid(64, 48, [0, 0, 255]), "vertical").copy()
    frames.set_type(pyvips.GValue.gint_type, "page-height", 48)
    frames.set_type(pyvips.GValue.gint_type, "n-pages", 2)
    return frames.gifsave_buffer()


SVG_FILE = b"""<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
 width="100" height="100"><image xlink:href="file:///etc/passwd" width="100" height="100"/></svg>"""
SVG_URL = b"""<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">
<image href="http://169.254.169.254/latest/meta-data/" width="100" height="100"/>
<style>@import url(https://attacker.example/x.css);</style></svg>"""

# name -> (input bytes, expected rejection reason)
REJECTED: dict[str, tuple[bytes, str]] = {
    "zero-bytes": (b"", "empty"),
    "non-image": (b"Dear client, the photos are attached.\n" * 10, "unsupported-format"),
    "svg-external-file": (SVG_FILE, "unsupported-format"),
    "svg-external-url": (SVG_URL, "unsupported-format"),
    "png-declaring-60000x60000": (png_declaring(60_000, 60_000), "too-many-pixels"),
    "panorama-over-side-limit": (png_declaring(31_000, 300), "too-large-side"),
    "truncated-jpeg": (noisy_jpeg(600, 400)[:6000], "corrupt"),
    "jpeg-header-only": (noisy_jpeg(64, 64)[:300], "corrupt"),
}


@pytest.mark.parametrize("stage", sorted(TRANSFORMS))
@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_inputs_have_a_reason_and_nothing_else_escapes(stage: str, name: str) -> None:
    data, reason = REJECTED[name]
    with pytest.raises(ImageRejected) as info:
        TRANSFORMS[stage](data)
    assert info.value.reason == reason
    assert str(info.value) and "\n" not in str(info.value)


def test_svg_loaders_are_blocked_even_if_something_bypassed_the_sniffing() -> None:
    configure_vips()
    for svg in (SVG_FILE, SVG_URL):
        with pytest.raises(pyvips.Error):
            pyvips.Image.new_from_buffer(svg, "").avg()


def test_declared_huge_png_never_reaches_libvips(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("libvips must not see an over-limit image")

    monkeypatch.setattr(pyvips.Image, "thumbnail_buffer", forbidden)
    for transform in TRANSFORMS.values():
        with pytest.raises(ImageRejected):
            transform(png_declaring(60_000, 60_000))


def test_declared_huge_png_keeps_the_process_small() -> None:
    # In a fresh process, so the high-water mark is this input's alone (3.6 gigapixels declared,
    # ~10 GB if anything allocated by it).
    # The high-water mark after imports is the baseline: what the module and libvips cost to load
    # varies by machine, what the hostile input adds must not.
    script = (
        "import resource\n"
        "from tests.unit.test_hostile_inputs import TRANSFORMS, png_declaring\n"
        "from stages.imaging import ImageRejected\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for t in TRANSFORMS.values():\n"
        "    for _ in range(20):\n"
        "        try: t(png_declaring(60_000, 60_000))\n"
        "        except ImageRejected: pass\n"
        "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    before, after = (int(v) for v in out.stdout.split()[-2:])
    assert after - before < 16 * 1024  # KiB: 3.6 gigapixels declared, next to nothing allocated


# --- odd but valid inputs: each makes a correct rendition ---------------------------------------

# name -> (input bytes, displayed width, height, expected colour at the centre or None)
ACCEPTED: dict[str, tuple[bytes, int, int, list[int] | None]] = {
    "one-pixel": (solid(1, 1, [10, 200, 30]).pngsave_buffer(), 1, 1, [10, 200, 30]),
    "panorama": (noisy_jpeg(20_000, 400, Q=50), 20_000, 400, None),
    "cmyk-jpeg": (cmyk_red(), 600, 400, [237, 28, 36]),
    "png-16bit-alpha": (png16_alpha(), 600, 400, [0, 0, 255]),
    "greyscale-jpeg": (solid(500, 300, [90]).copy(interpretation="b-w").jpegsave_buffer(), 500, 300, [90, 90, 90]),
    "greyscale-png": (solid(500, 300, [90]).copy(interpretation="b-w").pngsave_buffer(), 500, 300, [90, 90, 90]),
    "progressive-jpeg": (solid(800, 600, [40, 90, 200]).jpegsave_buffer(interlace=True), 800, 600, [40, 90, 200]),
    "animated-gif": (animated_gif(), 64, 48, [255, 0, 0]),
    "avif": (solid(640, 480, [200, 60, 60]).heifsave_buffer(compression="av1", Q=80, effort=0), 640, 480, [200, 60, 60]),
    "webp": (solid(640, 480, [60, 200, 60]).webpsave_buffer(Q=90), 640, 480, [60, 200, 60]),
}


def expected_size(stage: str, width: int, height: int) -> tuple[int, int]:
    if stage == "thumbnail":  # a 400x400 cover box, shrunk to fit a smaller photo (issue 12: no enlarging)
        side = max(1, round(400 * min(1.0, width / 400, height / 400)))
        return side, side
    scale = min(1.0, 2048 / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


@pytest.mark.parametrize("stage", sorted(TRANSFORMS))
@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_odd_inputs_make_correct_renditions(stage: str, name: str) -> None:
    data, width, height, colour = ACCEPTED[name]
    out = TRANSFORMS[stage](data)
    image = pyvips.Image.new_from_buffer(out.data, "")
    assert (out.width, out.height) == (image.width, image.height) == expected_size(stage, width, height)
    assert image.format == "uchar" and image.interpretation == "srgb" and image.bands in (3, 4)
    assert image.get_typeof("n-pages") == 0 or image.get("n-pages") == 1  # one frame out
    assert not [f for f in image.get_fields() if f.lower().startswith(METADATA_PREFIXES)]
    if colour is not None and stage != "watermark":  # the watermark covers a corner, not the centre
        centre = image.getpoint(image.width // 2, image.height // 2)[:3]
        assert all(abs(c - e) <= 12 for c, e in zip(centre, colour, strict=True)), centre
