"""Unit tests for the pure resize transform (stages.resize.transform)."""

from __future__ import annotations

import struct
import zlib

import pytest
import pyvips

from pipeline.contracts.renditions import ResizeSpec
from stages.imaging import ImageLimits, ImageRejected, probe
from stages.resize.transform import Rendition, resize

LIMITS = ImageLimits()
DEFAULT = ResizeSpec(stage="resize")
METADATA_PREFIXES = ("exif", "xmp", "icc", "iptc", "orientation", "png-comment", "gif-comment")


def solid(width: int, height: int, colour: list[int] | None = None) -> pyvips.Image:
    return (pyvips.Image.black(width, height, bands=3) + (colour or [200, 120, 40])).cast("uchar")


def noise_jpeg(width: int, height: int) -> bytes:
    """A JPEG whose entropy-coded data is spread over the whole file, so a cut loses pixels."""
    bands = [pyvips.Image.gaussnoise(width, height, mean=128, sigma=40) for _ in range(3)]
    data: bytes = bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb").jpegsave_buffer(Q=90)
    return data


def decode(rendition: Rendition) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(rendition.data, "")


def assert_web_jpeg(rendition: Rendition) -> pyvips.Image:
    assert rendition.format == "jpeg"
    assert rendition.content_type == "image/jpeg"
    assert rendition.data[:3] == b"\xff\xd8\xff"
    image = decode(rendition)
    assert (image.width, image.height) == (rendition.width, rendition.height)
    assert image.bands == 3
    assert image.format == "uchar"
    assert image.interpretation == "srgb"
    return image


# --- geometry -----------------------------------------------------------------------------------


def test_landscape_fits_long_edge() -> None:
    rendition = resize(solid(4000, 3000).jpegsave_buffer(), DEFAULT, LIMITS)
    assert (rendition.width, rendition.height) == (2048, 1536)
    assert_web_jpeg(rendition)


def test_portrait_fits_long_edge() -> None:
    rendition = resize(solid(3000, 4000).jpegsave_buffer(), DEFAULT, LIMITS)
    assert (rendition.width, rendition.height) == (1536, 2048)


def test_small_image_is_not_enlarged() -> None:
    rendition = resize(solid(800, 600).jpegsave_buffer(), DEFAULT, LIMITS)
    assert (rendition.width, rendition.height) == (800, 600)


def test_small_image_is_enlarged_when_asked() -> None:
    rendition = resize(solid(800, 600).jpegsave_buffer(), ResizeSpec(stage="resize", enlarge=True), LIMITS)
    assert (rendition.width, rendition.height) == (2048, 1536)


def test_custom_long_edge_and_quality() -> None:
    data = noise_jpeg(640, 480)
    low = resize(data, ResizeSpec(stage="resize", long_edge=320, quality=30), LIMITS)
    high = resize(data, ResizeSpec(stage="resize", long_edge=320, quality=95), LIMITS)
    assert (low.width, low.height) == (high.width, high.height) == (320, 240)
    assert len(low.data) < len(high.data)


@pytest.mark.parametrize(("long_edge", "quality"), [(0, 85), (2048, 0), (2048, 101)])
def test_resize_spec_is_validated(long_edge: int, quality: int) -> None:
    with pytest.raises(ValueError):
        ResizeSpec(stage="resize", long_edge=long_edge, quality=quality)


def test_exif_orientation_is_applied() -> None:
    # Stored 400x300, left half red, right half blue; orientation 6 means "rotate 90° clockwise
    # to display", so the displayed image is 300x400 with red on top.
    stored = solid(200, 300, [255, 0, 0]).join(solid(200, 300, [0, 0, 255]), "horizontal").copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    rendition = resize(stored.jpegsave_buffer(Q=95), DEFAULT, LIMITS)
    assert (rendition.width, rendition.height) == (300, 400)
    image = assert_web_jpeg(rendition)
    top, bottom = image.getpoint(150, 50), image.getpoint(150, 350)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_uses_first_frame() -> None:
    frames = solid(64, 48, [255, 0, 0]).join(solid(64, 48, [0, 0, 255]), "vertical").copy()
    frames.set_type(pyvips.GValue.gint_type, "page-height", 48)
    frames.set_type(pyvips.GValue.gint_type, "n-pages", 2)
    rendition = resize(frames.gifsave_buffer(), DEFAULT, LIMITS)
    assert (rendition.width, rendition.height) == (64, 48)
    red = decode(rendition).getpoint(32, 24)
    assert red[0] > 200 and red[2] < 60


# --- colour and metadata ------------------------------------------------------------------------


def test_output_has_no_metadata() -> None:
    source = solid(1200, 900).copy()
    source.set_type(pyvips.GValue.gint_type, "orientation", 1)
    source.set_type(pyvips.GValue.blob_type, "xmp-data", b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    data = source.jpegsave_buffer(profile="srgb")
    fields = pyvips.Image.new_from_buffer(data, "").get_fields()
    assert {"exif-data", "xmp-data", "icc-profile-data"} <= set(fields)  # the input really had them

    rendition = resize(data, ResizeSpec(stage="resize", long_edge=600), LIMITS)
    leaked = [f for f in decode(rendition).get_fields() if f.startswith(METADATA_PREFIXES)]
    assert leaked == []


def test_cmyk_jpeg_becomes_srgb() -> None:
    cmyk = (pyvips.Image.black(500, 400, bands=4) + [0, 255, 255, 0]).cast("uchar").copy(interpretation="cmyk")
    data = cmyk.jpegsave_buffer()
    assert pyvips.Image.new_from_buffer(data, "").interpretation == "cmyk"
    rendition = resize(data, DEFAULT, LIMITS)
    image = assert_web_jpeg(rendition)
    r, g, b = image.getpoint(250, 200)
    assert r > 150 and g < 100 and b < 100  # C=0 M=100 Y=100 K=0 is a red


def test_16bit_png_with_alpha_becomes_8bit_rgb_on_white() -> None:
    colour = (pyvips.Image.black(600, 400, bands=3) + [0, 0, 65535]).cast("ushort")
    # Left half fully transparent, right half opaque blue.
    alpha = (pyvips.Image.black(300, 400) + 0).join(pyvips.Image.black(300, 400) + 65535, "horizontal").cast("ushort")
    data = colour.bandjoin(alpha).copy(interpretation="rgb16").pngsave_buffer(bitdepth=16)
    assert pyvips.Image.new_from_buffer(data, "").format == "ushort"
    image = assert_web_jpeg(resize(data, DEFAULT, LIMITS))
    assert min(image.getpoint(100, 200)) > 240  # transparent -> white
    blue = image.getpoint(500, 200)
    assert blue[2] > 200 and blue[0] < 60


def test_greyscale_becomes_three_bands() -> None:
    grey = (pyvips.Image.black(640, 480) + 90).cast("uchar").copy(interpretation="b-w")
    for data in (grey.jpegsave_buffer(), grey.pngsave_buffer()):
        assert pyvips.Image.new_from_buffer(data, "").bands == 1
        assert_web_jpeg(resize(data, DEFAULT, LIMITS))


@pytest.mark.parametrize(
    "encode",
    [
        lambda im: im.pngsave_buffer(),
        lambda im: im.webpsave_buffer(),
        lambda im: im.tiffsave_buffer(compression="deflate"),
        lambda im: im.gifsave_buffer(),
        lambda im: im.heifsave_buffer(compression="av1", Q=40),
    ],
    ids=["png", "webp", "tiff", "gif", "avif"],
)
def test_every_allowed_format_makes_a_rendition(encode) -> None:  # type: ignore[no-untyped-def]
    rendition = resize(encode(solid(900, 300)), ResizeSpec(stage="resize", long_edge=450), LIMITS)
    assert (rendition.width, rendition.height) == (450, 150)
    assert_web_jpeg(rendition)


# --- rejection ----------------------------------------------------------------------------------


def test_truncated_jpeg_is_corrupt_not_grey() -> None:
    data = noise_jpeg(800, 600)
    half = data[: len(data) // 2]
    assert probe(half, LIMITS).format == "jpeg"  # the header survives: only decoding can tell
    with pytest.raises(ImageRejected) as info:
        resize(half, ResizeSpec(stage="resize", long_edge=400), LIMITS)
    assert info.value.reason == "corrupt"
    assert "JPEG" in str(info.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"just some text, not a picture", "unsupported-format"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "unsupported-format"),
    ],
    ids=["empty", "text", "svg"],
)
def test_non_images_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as info:
        resize(data, DEFAULT, LIMITS)
    assert info.value.reason == reason


def test_garbage_after_valid_header_never_leaks_pyvips_error() -> None:
    header = solid(64, 64).jpegsave_buffer()[:400]
    for tail in (b"", b"\x00" * 500, bytes(range(256)) * 4):
        with pytest.raises(ImageRejected) as info:
            resize(header + tail, DEFAULT, LIMITS)
        assert info.value.reason == "corrupt"


def test_byte_limit_applies() -> None:
    data = solid(100, 100).jpegsave_buffer()
    with pytest.raises(ImageRejected) as info:
        resize(data, DEFAULT, ImageLimits(max_bytes=len(data) // 2))
    assert info.value.reason == "too-many-bytes"


def test_declared_huge_png_never_reaches_libvips(monkeypatch: pytest.MonkeyPatch) -> None:
    ihdr = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("libvips must not see an over-limit image")

    monkeypatch.setattr(pyvips.Image, "thumbnail_buffer", forbidden)
    with pytest.raises(ImageRejected) as info:
        resize(bomb, DEFAULT, LIMITS)
    assert info.value.reason == "too-many-pixels"
