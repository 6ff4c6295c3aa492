"""Unit tests for stages.imaging: header probing, limits, error translation, libvips setup."""

from __future__ import annotations

import pickle
import struct
import tracemalloc
import zlib

import pytest
import pyvips

from stages.imaging import (
    ImageHeader,
    ImageLimits,
    ImageRejected,
    configure_vips,
    probe,
    vips_errors,
)

LIMITS = ImageLimits()
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'


def rgb(width: int, height: int) -> pyvips.Image:
    return (pyvips.Image.black(width, height, bands=3) + [200, 120, 40]).cast("uchar")


def png_with_declared_size(width: int, height: int) -> bytes:
    """A PNG signature plus a hand-made IHDR (valid CRC) declaring any size, and no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


def encoded_samples() -> dict[str, tuple[bytes, str, int, int]]:
    """name -> (bytes, expected format, width, height), one per supported encoding."""
    image = rgb(123, 45)
    with_alpha = image.bandjoin(255)
    return {
        "jpeg": (image.jpegsave_buffer(), "jpeg", 123, 45),
        "png": (image.pngsave_buffer(), "png", 123, 45),
        "gif": (image.gifsave_buffer(), "gif", 123, 45),
        "webp-lossy": (image.webpsave_buffer(), "webp", 123, 45),
        "webp-lossless": (image.webpsave_buffer(lossless=True), "webp", 123, 45),
        "webp-extended": (with_alpha.webpsave_buffer(), "webp", 123, 45),
        "tiff-le": (image.tiffsave_buffer(), "tiff", 123, 45),
        "tiff-big": (image.tiffsave_buffer(bigtiff=True), "tiff", 123, 45),
        "avif": (image.heifsave_buffer(compression="av1", Q=40), "heif", 123, 45),
    }


SAMPLES = encoded_samples()


# --- probe: what it accepts ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_probe_reads_format_and_size_from_header(name: str) -> None:
    data, fmt, width, height = SAMPLES[name]
    assert probe(data, LIMITS) == ImageHeader(format=fmt, width=width, height=height)


def test_probe_tiff_big_endian() -> None:
    # Hand-made big-endian TIFF header: only IFD0 with width (SHORT) and length (LONG).
    entries = struct.pack(">HHII", 256, 3, 1, 77 << 16) + struct.pack(">HHII", 257, 4, 1, 88)
    data = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries + b"\x00\x00\x00\x00"
    assert probe(data, LIMITS) == ImageHeader("tiff", 77, 88)


def test_probe_jpeg_skips_exif_thumbnail_and_app_segments() -> None:
    image = rgb(300, 200).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    image.set_type(pyvips.GValue.blob_type, "xmp-data", b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    assert probe(image.jpegsave_buffer(profile="srgb"), LIMITS) == ImageHeader("jpeg", 300, 200)


# --- probe: what it refuses ---------------------------------------------------------------------


def test_probe_rejects_empty() -> None:
    with pytest.raises(ImageRejected) as info:
        probe(b"", LIMITS)
    assert info.value.reason == "empty"


@pytest.mark.parametrize(
    "data",
    [b"hello, this is not an image\n", SVG, b"%PDF-1.7\n", b"2 2\n1 2\n3 4\n", b"\x00" * 64, b"BM" + b"\x00" * 60],
    ids=["text", "svg", "pdf", "matrix", "zeros", "bmp"],
)
def test_probe_rejects_unsupported_formats(data: bytes) -> None:
    with pytest.raises(ImageRejected) as info:
        probe(data, LIMITS)
    assert info.value.reason == "unsupported-format"
    assert "not a JPEG" in str(info.value)


def test_probe_rejects_too_many_bytes_before_reading_them() -> None:
    data = SAMPLES["jpeg"][0]
    with pytest.raises(ImageRejected) as info:
        probe(data, ImageLimits(max_bytes=len(data) - 1))
    assert info.value.reason == "too-many-bytes"
    assert probe(data, ImageLimits(max_bytes=len(data))).format == "jpeg"


def test_probe_refuses_declared_huge_png_without_allocating() -> None:
    bomb = png_with_declared_size(60_000, 60_000)
    assert len(bomb) < 100
    tracemalloc.start()
    try:
        with pytest.raises(ImageRejected) as info:
            probe(bomb, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "too-many-pixels"
    assert "60000x60000" in str(info.value)
    assert peak < 256 * 1024  # 3.6 gigapixels declared; nothing sized by it


def test_probe_refuses_long_side_even_when_pixels_fit() -> None:
    with pytest.raises(ImageRejected) as info:
        probe(png_with_declared_size(40_000, 10), LIMITS)
    assert info.value.reason == "too-large-side"


def test_probe_limits_are_inclusive() -> None:
    limits = ImageLimits(max_pixels=123 * 45, max_side=123)
    assert probe(SAMPLES["png"][0], limits).width == 123


def test_probe_rejects_png_with_bad_crc() -> None:
    data = bytearray(png_with_declared_size(100, 100))
    data[16 + 3] ^= 0xFF  # width byte changed, CRC not
    with pytest.raises(ImageRejected) as info:
        probe(bytes(data), LIMITS)
    assert info.value.reason == "corrupt"


def test_probe_rejects_jpeg_without_frame_header() -> None:
    with pytest.raises(ImageRejected) as info:
        probe(b"\xff\xd8\xff\xd9", LIMITS)
    assert info.value.reason == "corrupt"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_probe_never_raises_anything_but_rejection_on_truncated_headers(name: str) -> None:
    data, fmt, width, height = SAMPLES[name]
    for cut in range(1, min(len(data), 400)):
        try:
            header = probe(data[:cut], LIMITS)
        except ImageRejected as exc:
            assert exc.reason in {"corrupt", "unsupported-format"}, (cut, exc)
        else:
            # A prefix that holds the whole header is fine; it must then read the right size.
            assert header == ImageHeader(fmt, width, height), cut


# --- errors -------------------------------------------------------------------------------------


def test_image_rejected_is_readable_and_picklable() -> None:
    exc = ImageRejected("corrupt", "The JPEG image is corrupt.")
    assert str(exc) == "The JPEG image is corrupt."
    copy = pickle.loads(pickle.dumps(exc))
    assert isinstance(copy, ImageRejected)
    assert (copy.reason, str(copy)) == ("corrupt", "The JPEG image is corrupt.")


def test_vips_errors_translates_pyvips_errors() -> None:
    with pytest.raises(ImageRejected) as info:
        with vips_errors("JPEG image"):
            pyvips.Image.new_from_buffer(b"\xff\xd8\xff\xe0 definitely not a jpeg", "").avg()
    assert info.value.reason in {"corrupt", "unsupported-format"}
    assert "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, pyvips.Error)


def test_vips_errors_calls_unknown_format_unsupported() -> None:
    with pytest.raises(ImageRejected) as info:
        with vips_errors():
            pyvips.Image.new_from_buffer(b"plain text", "")
    assert info.value.reason == "unsupported-format"


# --- configure_vips -----------------------------------------------------------------------------


def test_configure_vips_is_idempotent_and_sets_process_state() -> None:
    configure_vips(2)
    configure_vips(2)
    assert pyvips.concurrency_get() == 2
    configure_vips()
    assert pyvips.concurrency_get() == 1
    assert pyvips.cache_get_max() == 0
    assert pyvips.cache_get_max_mem() == 0
    assert pyvips.cache_get_max_files() == 0


def test_configure_vips_rejects_bad_concurrency() -> None:
    with pytest.raises(ValueError):
        configure_vips(0)


def test_configure_vips_blocks_unwanted_loaders() -> None:
    configure_vips()
    with pytest.raises(pyvips.Error):
        pyvips.Image.new_from_buffer(SVG, "")
    with pytest.raises(pyvips.Error):
        pyvips.Image.new_from_source(pyvips.Source.new_from_memory(b"2 2\n1 2\n3 4\n"), "")
    # The allow-listed loaders keep working.
    for data, _fmt, width, _height in SAMPLES.values():
        assert pyvips.Image.new_from_buffer(data, "").width == width
