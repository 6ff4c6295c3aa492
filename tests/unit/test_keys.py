"""Object key layout, file ids, and validation of keys that come from outside."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest

from storage.keys import (
    ORIGINALS_PREFIX,
    InvalidKey,
    content_type_for,
    file_id_of,
    original_key,
    parse_original_key,
    rendition_key,
    slugify,
    version_of,
)

NFC = unicodedata.normalize("NFC", "Café Crème.jpg")
NFD = unicodedata.normalize("NFD", "Café Crème.jpg")


def test_layout() -> None:
    assert ORIGINALS_PREFIX == "originals/shoots/"
    assert original_key("s1", "f1", "jpg") == "originals/shoots/s1/f1.jpg"
    assert original_key("s1", "f1", "JPEG") == "originals/shoots/s1/f1.jpeg"
    assert rendition_key("s1", "f1", "web", "webp") == "renditions/shoots/s1/f1/web.webp"
    assert rendition_key("s1", "f1", "web", "webp", "0a1b2c") == "renditions/shoots/s1/f1/0a1b2c/web.webp"
    assert content_type_for("TIF") == "image/tiff"


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        ("f1.jpg", "jpg"),
        ("IMG_0001 (1).JPG", "jpg"),
        ("a+b.jpg", "jpg"),
        ("Tom & Jerry #2.jpeg", "jpeg"),
        ("100% sure; really?.png", "png"),
        (NFC, "jpg"),
        ("写真 2024.JPEG", "jpeg"),
        ("x" * 200 + ".webp", "webp"),
        ("day 1/IMG_0001.heic", "heic"),  # sub-folders, as a sync tool puts them
        (".jpg", "jpg"),
        ("it's ~ok~ [1] {2} @3 =4 $5.avif", "avif"),
    ],
)
def test_any_name_s3_accepts_is_a_photo(name: str, ext: str) -> None:
    key = f"originals/shoots/Shoot_2024-06/{name}"
    ref = parse_original_key(key)
    assert (ref.key, ref.shoot_id, ref.name, ref.ext) == (key, "Shoot_2024-06", name, ext)
    assert ref.file_id == file_id_of(key)


def test_the_file_id_is_a_slug_and_a_hash_of_the_whole_key() -> None:
    key = "originals/shoots/s1/IMG_0001 (1).JPG"
    assert file_id_of(key) == "img-0001-1-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    assert file_id_of(key) == file_id_of(key)  # stable
    assert file_id_of("originals/shoots/s1/写真.jpg").startswith("photo-")
    ids = {file_id_of(f"originals/shoots/{k}") for k in [
        "s1/DSC_0001.jpg", "s1/DSC_0001.webp", "s1/DSC_0001.JPG", "s1/dsc_0001.jpg", "s2/DSC_0001.jpg",
        f"s1/{NFC}", f"s1/{NFD}", "s1/a/DSC_0001.jpg",
    ]}
    assert len(ids) == 8, "other extension, case, shoot, normalisation or folder: another photo"
    long = file_id_of("originals/shoots/s1/" + "x" * 200 + ".jpg")
    assert len(long) <= 57 and parse_original_key(original_key("s1", long, "jpg"))  # an id any layout accepts


def test_the_name_is_nfc_while_the_key_and_id_keep_the_bytes() -> None:
    nfc, nfd = parse_original_key(f"originals/shoots/s1/{NFC}"), parse_original_key(f"originals/shoots/s1/{NFD}")
    assert nfc.name == nfd.name == NFC
    assert nfd.key.endswith(NFD) and nfc.file_id != nfd.file_id


def test_slug_and_version() -> None:
    assert slugify("IMG_0001 (Copy)") == "img-0001-copy"
    assert slugify("Été à Paris") == "ete-a-paris"
    assert slugify("___") == "photo"
    assert len(slugify("x" * 100)) == 40
    assert version_of("abc") == hashlib.sha256(b"abc").hexdigest()[:12]
    assert version_of("abc") != version_of("abd")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("/originals/shoots/s1/f1.jpg", "absolute"),
        ("\\originals/shoots/s1/f1.jpg", "absolute"),
        ("originals/shoots/../f1.jpg", r"'\.\.' segment"),
        ("originals/shoots/s1/../s2/f1.jpg", r"'\.\.' segment"),
        ("originals/shoots/s1/..\\..\\f1.jpg", r"'\.\.' segment"),
        ("originals/shoots/s1/./f1.jpg", r"'\.' segment"),
        ("originals/shoots//f1.jpg", "empty segment"),
        ("originals/shoots/s1/f1\n.jpg", "control character U\\+000A"),
        ("originals/shoots/s1/f1\x00.jpg", "control character U\\+0000"),
        ("originals/shoots/s1/f1\x7f.jpg", "control character U\\+007F"),
        ("originals/shoots/s1/f1\x85.jpg", "control character U\\+0085"),
        ("originals/shoots/s1/f1\u202egpj.jpg", "bidirectional control U\\+202E"),
        ("originals/shoots/s\u04301/f1.jpg", "non-ASCII"),  # Cyrillic look-alike 'а' in the shoot id
        ("originals/shoots/s1/f\udcff.jpg", "not valid UTF-8"),  # surrogate-escaped byte 0xff
        ("originals/shoots/s1/" + "f" * 1100 + ".jpg", "1024"),
        ("renditions/shoots/s1/f1/web.jpg", "does not start with"),
        ("originals/s1/f1.jpg", "does not start with"),
        ("originals/shoots/f1.jpg", "not inside a shoot"),
        ("originals/shoots/s1/", "empty segment"),
        ("originals/shoots/s1/f1", "no file extension"),
        ("originals/shoots/s1/f1.", "no file extension"),
        ("originals/shoots/s1/f1.exe", "not an accepted image type"),
        ("originals/shoots/s1/f1.jpg.exe", "not an accepted image type"),
        ("originals/shoots/.s1/f1.jpg", "shoot id '.s1' starts with a dot"),
        ("originals/shoots/-s1/f1.jpg", "must start with a letter or digit"),
        ("originals/shoots/s 1/f1.jpg", "must start with a letter or digit and contain only"),
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


def test_rendition_name_and_version_are_checked() -> None:
    with pytest.raises(InvalidKey, match="rendition name"):
        rendition_key("s", "f", "../web", "jpg")
    with pytest.raises(InvalidKey, match="version"):
        rendition_key("s", "f", "web", "jpg", "../v1")


def test_invalid_key_is_a_value_error() -> None:
    assert issubclass(InvalidKey, ValueError)
