"""Object key layout and validation of keys that come from outside."""

from __future__ import annotations

import pytest

from storage.keys import (
    ORIGINALS_PREFIX,
    InvalidKey,
    OriginalRef,
    content_type_for,
    original_key,
    parse_original_key,
    rendition_key,
)


def test_layout() -> None:
    assert ORIGINALS_PREFIX == "originals/shoots/"
    assert original_key("s1", "f1", "jpg") == "originals/shoots/s1/f1.jpg"
    assert original_key("s1", "f1", "JPEG") == "originals/shoots/s1/f1.jpeg"
    assert rendition_key("s1", "f1", "web", "webp") == "renditions/shoots/s1/f1/web.webp"
    assert content_type_for("TIF") == "image/tiff"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("originals/shoots/s1/f1.jpg", OriginalRef("s1", "f1", "jpg")),
        ("originals/shoots/Shoot_2024-06/IMG.0001.JPG", OriginalRef("Shoot_2024-06", "IMG.0001", "jpg")),
        ("originals/shoots/0/a-b_c.heic", OriginalRef("0", "a-b_c", "heic")),
        ("originals/shoots/s/f.AVIF", OriginalRef("s", "f", "avif")),
        ("originals/shoots/s/" + "f" * 128 + ".tiff", OriginalRef("s", "f" * 128, "tiff")),
    ],
)
def test_parse_valid(key: str, expected: OriginalRef) -> None:
    assert parse_original_key(key) == expected


@pytest.mark.parametrize(
    ("shoot", "file", "ext"),
    [("s1", "f1", "jpg"), ("A.b", "x-y_z.1", "png"), ("9", "9", "gif"), ("s", "f", "HEIF")],
)
def test_round_trip(shoot: str, file: str, ext: str) -> None:
    ref = parse_original_key(original_key(shoot, file, ext))
    assert ref == OriginalRef(shoot, file, ext.lower())
    assert ref.key == original_key(shoot, file, ext)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("/originals/shoots/s1/f1.jpg", "absolute"),
        ("originals/shoots/../f1.jpg", r"'\.\.'"),
        ("originals/shoots/s1/..jpg", r"'\.\.'"),
        ("originals/shoots//f1.jpg", "//"),
        ("originals/shoots/s1\\f1.jpg", "backslash"),
        ("originals/shoots/s1/f1\n.jpg", "control character U\\+000A"),
        ("originals/shoots/s1/f1\x00.jpg", "control character U\\+0000"),
        ("originals/shoots/s1/f\u200b1.jpg", "non-ASCII character U\\+200B \\(ZERO WIDTH SPACE\\)"),
        ("originals/shoots/s1/f1\u202egpj.jpg", "non-ASCII character U\\+202E"),
        ("originals/shoots/s\u04301/f1.jpg", "non-ASCII"),  # Cyrillic look-alike 'а'
        ("originals/shoots/s1/f\udcff.jpg", "not valid UTF-8"),  # surrogate-escaped byte 0xff
        ("originals/shoots/s1/" + "f" * 1100 + ".jpg", "1024"),
        ("originals/shoots/s1/" + "f" * 129 + ".jpg", "limit is 128"),
        ("renditions/shoots/s1/f1/web.jpg", "does not start with"),
        ("originals/s1/f1.jpg", "does not start with"),
        ("originals/shoots/f1.jpg", "1 segment"),
        ("originals/shoots/s1/x/f1.jpg", "3 segment"),
        ("originals/shoots/s1/", "no file name"),
        ("originals/shoots/s1/f1", "no file extension"),
        ("originals/shoots/s1/f1.", "no file extension"),
        ("originals/shoots/s1/f1.exe", "not an accepted image type"),
        ("originals/shoots/s1/f1.jpg.exe", "not an accepted image type"),
        ("originals/shoots/s1/.jpg", "file id is empty"),
        ("originals/shoots/s1/.hidden.jpg", "starts with a dot"),
        ("originals/shoots/.s1/f1.jpg", "shoot id '.s1' starts with a dot"),
        ("originals/shoots/-s1/f1.jpg", "must start with a letter or digit"),
        ("originals/shoots/s 1/f1.jpg", "must start with a letter or digit and contain only"),
        ("originals/shoots/s1/f%2e1.jpg", "contain only"),
    ],
)
def test_parse_invalid(key: str, reason: str) -> None:
    with pytest.raises(InvalidKey, match=reason):
        parse_original_key(key)


def test_non_string_key() -> None:
    with pytest.raises(InvalidKey, match="must be a string"):
        parse_original_key(b"originals/shoots/s1/f1.jpg")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("", "f", "jpg"), "shoot id is empty"),
        (("s/1", "f", "jpg"), "shoot id"),
        (("s", "..", "jpg"), "file id '..' starts with a dot"),
        (("s", "a..b", "jpg"), r"file id 'a\.\.b' contains '\.\.'"),
        (("s", "f", ".jpg"), "without the leading dot"),
        (("s", "f", "bmp"), "not an accepted image type"),
        (("s", "f", ""), "extension is empty"),
        (("s", "f\u00e9", "jpg"), "non-ASCII character U\\+00E9"),
    ],
)
def test_builders_refuse_bad_parts(args: tuple[str, str, str], reason: str) -> None:
    with pytest.raises(InvalidKey, match=reason):
        original_key(*args)


def test_rendition_name_is_checked() -> None:
    with pytest.raises(InvalidKey, match="rendition name"):
        rendition_key("s", "f", "../web", "jpg")


def test_invalid_key_is_a_value_error() -> None:
    assert issubclass(InvalidKey, ValueError)
