"""Issue 12 without Kafka: HEIC and camera RAW decoding, capture facts, BlurHash placeholders, the
gallery's capture-time order. Files are made by tests/imagefiles.py."""

from __future__ import annotations

from pathlib import Path

import blurhash
import numpy as np
import pytest
import pyvips
from PIL.TiffImagePlugin import IFDRational

from orchestration.db import Database
from orchestration.gallery import GalleryStage, capture_sort_key, gallery_photos
from pipeline.contracts.events import (
    CaptureFacts,
    FileProcessed,
    FileUploaded,
    default_registry,
    event_message,
)
from pipeline.contracts.renditions import PipelineConfigError, ResizeSpec, parse_rendition_graph
from pipeline.settings import Settings
from stages.image_stages import image_stage
from stages.imaging import ImageLimits, ImageRejected, probe
from stages.imaging.facts import read_capture_facts
from stages.imaging.placeholder import blurhash as our_blurhash
from stages.imaging.raw import pick_preview, previews
from stages.imaging.safe_load import load_thumbnail
from stages.resize.transform import resize
from storage.keys import parse_original_key
from tests.imagefiles import (
    ASCII,
    SHORT,
    Ifd,
    bayer_mosaic,
    exif_bytes,
    flat,
    jpeg_of,
    linear_to_srgb8,
    make_dng,
    make_heic,
    make_vendor_raw,
    p3_profile,
    srgb_to_p3,
    tiff_file,
)
from tests.unit.test_rendition_stage import MemoryStore, as_received, body, run

LIMITS = ImageLimits()
RED, BLUE = (200, 50, 50), (40, 90, 200)


def halves(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int],
           dtype: type = np.uint8) -> np.ndarray:
    pixels = np.zeros((height, width, 3), dtype)
    pixels[:, : width // 2], pixels[:, width // 2 :] = left, right
    return pixels


def mean(image: pyvips.Image, left: int, top: int, width: int, height: int) -> list[float]:
    image = image.copy_memory()  # decoded once: the loaders read sequentially
    return [image.crop(left, top, width, height).extract_band(b).avg() for b in range(3)]


def close(actual: list[float], expected: tuple[int, ...], tolerance: float) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# --- HEIC -------------------------------------------------------------------------------------


def test_heic_probe_reads_size_and_rotation_from_the_container() -> None:
    header = probe(make_heic(halves(320, 240, RED, BLUE), orientation=6), LIMITS)
    assert header.format == "heic" and header.orientation == 6
    assert header.width >= 320 and header.height >= 240  # the coded size (HEVC pads to its blocks)
    assert header.display_size == (header.height, header.width)


def test_an_iphone_heic_comes_out_right_way_up_and_in_srgb() -> None:
    data = make_heic(halves(320, 240, srgb_to_p3(RED), srgb_to_p3(BLUE)), orientation=6, icc=p3_profile())
    _, image = load_thumbnail(data, 2048, limits=LIMITS)
    assert (image.width, image.height) == (240, 320)  # upright: portrait
    assert image.format == "uchar" and image.interpretation == "srgb"
    assert close(mean(image, 70, 40, 100, 60), RED, 5) and close(mean(image, 70, 220, 100, 60), BLUE, 5)


def test_a_10_bit_heic_is_converted_from_p3_at_16_bits() -> None:
    p3 = srgb_to_p3(RED)
    ten_bit = np.zeros((128, 128, 3), np.uint16)
    ten_bit[:] = [v * 257 for v in p3]
    data = make_heic(ten_bit, icc=p3_profile())
    _, image = load_thumbnail(data, 64, limits=LIMITS)
    assert image.format == "uchar" and close(mean(image, 16, 16, 32, 32), RED, 5)


def test_a_truncated_heic_is_rejected_not_crashed_on() -> None:
    data = make_heic(halves(320, 240, RED, BLUE))
    with pytest.raises(ImageRejected) as info:
        load_thumbnail(data[: len(data) - 400], 100, limits=LIMITS)
    assert info.value.reason == "corrupt"


def test_heic_limits_are_checked_before_decoding() -> None:
    data = make_heic(halves(320, 240, RED, BLUE))
    with pytest.raises(ImageRejected) as info:
        load_thumbnail(data, 100, limits=ImageLimits(max_pixels=10_000))
    assert info.value.reason == "too-many-pixels"


# --- camera RAW -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nef", "arw", "cr2"])
def test_vendor_raw_is_recognised_and_made_from_its_preview(kind: str) -> None:
    preview = jpeg_of(halves(1200, 800, RED, BLUE))
    data = make_vendor_raw(kind, 6000, 4000, preview=preview)
    header = probe(data, LIMITS)
    assert (header.format, header.width, header.height) == (kind, 6000, 4000)
    out = resize(data, ResizeSpec(stage="resize", long_edge=1024), LIMITS)
    image = pyvips.Image.new_from_buffer(out.data, "")
    assert (image.width, image.height) == (1024, 683)
    assert close(mean(image, 100, 200, 200, 200), RED, 6) and close(mean(image, 700, 200, 200, 200), BLUE, 6)


def test_the_raw_orientation_is_applied_to_its_preview() -> None:
    data = make_vendor_raw("nef", 6000, 4000, preview=jpeg_of(halves(1200, 800, RED, BLUE)), orientation=8)
    _, image = load_thumbnail(data, 400, height=400, limits=LIMITS)
    assert (image.width, image.height) == (267, 400)  # upright portrait; 8 turns the right half to the top
    assert close(mean(image, 80, 40, 100, 100), BLUE, 6) and close(mean(image, 80, 260, 100, 100), RED, 6)
    out = resize(data, ResizeSpec(stage="resize", long_edge=400), LIMITS)  # the whole path, encoder included
    assert (out.width, out.height) == (267, 400)


def test_a_preview_with_its_own_exif_orientation_is_not_turned_twice() -> None:
    preview = pyvips.Image.new_from_buffer(jpeg_of(halves(1200, 800, RED, BLUE)), "").copy()
    preview.set_type(pyvips.GValue.gint_type, "orientation", 8)
    data = make_vendor_raw("arw", 6000, 4000, preview=preview.jpegsave_buffer(keep="exif"), orientation=8)
    _, image = load_thumbnail(data, 400, height=400, limits=LIMITS)
    assert (image.width, image.height) == (267, 400)
    assert close(mean(image, 80, 40, 100, 100), BLUE, 6) and close(mean(image, 80, 260, 100, 100), RED, 6)


def test_a_preview_too_small_for_the_box_gives_way_to_a_demosaic() -> None:
    data = make_dng(600, 400, (0.6, 0.3, 0.15), preview=jpeg_of(flat(160, 120, BLUE)))
    header = probe(data, LIMITS)
    assert header.format == "dng"
    assert pick_preview(data, header, (100, 100), fill=False) is not None  # a small thumbnail: the preview serves
    assert pick_preview(data, header, (600, 600), fill=False) is None
    _, image = load_thumbnail(data, 600, height=600, limits=LIMITS)
    assert (image.width, image.height) == (600, 400)
    expected = tuple(linear_to_srgb8(v) for v in (0.6, 0.3, 0.15))
    assert close(mean(image, 200, 100, 200, 200), expected, 6)  # the mosaic's colour, not the blue preview


def test_a_raw_without_preview_or_sensor_data_is_rejected_with_a_reason() -> None:
    with pytest.raises(ImageRejected) as info:
        load_thumbnail(make_vendor_raw("arw", 6000, 4000, preview=None), 1024, limits=LIMITS)
    assert info.value.reason == "no-raw-image"
    assert "ARW file has no embedded preview and no sensor data" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_raw_whose_sensor_data_fails_falls_back_to_a_smaller_preview() -> None:
    data = make_vendor_raw("nef", 6000, 4000, preview=jpeg_of(flat(640, 480, RED)))
    _, image = load_thumbnail(data, 2048, limits=LIMITS)
    assert (image.width, image.height) == (640, 480) and close(mean(image, 100, 100, 100, 100), RED, 6)


def test_a_raw_declaring_a_huge_sensor_is_refused_from_the_header() -> None:
    data = make_vendor_raw("cr2", 60_000, 40_000, preview=jpeg_of(flat(64, 48, RED)))
    with pytest.raises(ImageRejected) as info:
        load_thumbnail(data, 1024, limits=LIMITS)
    assert info.value.reason == "too-many-pixels"


def test_an_exported_tiff_with_camera_exif_stays_an_ordinary_tiff() -> None:
    image = pyvips.Image.new_from_buffer(jpeg_of(flat(64, 48, RED)), "")
    tagged = image.copy()
    tagged.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Make", "NIKON CORPORATION")
    assert probe(tagged.tiffsave_buffer(), LIMITS).format == "tiff"


def test_a_many_page_tiff_or_a_stray_next_ifd_pointer_is_still_an_ordinary_tiff() -> None:
    page = pyvips.Image.new_from_buffer(jpeg_of(flat(32, 24, RED)), "")
    pages = pyvips.Image.arrayjoin([page] * 40, across=1).copy()
    pages.set_type(pyvips.GValue.gint_type, "page-height", 24)
    header = probe(pages.tiffsave_buffer(), LIMITS)
    assert (header.format, header.width, header.height) == ("tiff", 32, 24)
    stray = bytearray(tiff_file(Ifd(entries=[(256, 4, 32), (257, 4, 24), (258, 3, 8), (262, 3, 2)])))
    stray[-4:] = (10**6).to_bytes(4, "little")  # IFD0's next-IFD pointer, past the end
    assert probe(bytes(stray), LIMITS).format == "tiff"


def test_lossless_sensor_tiles_are_never_taken_for_a_preview() -> None:
    lossless = b"\xff\xd8\xff\xc3\x00\x0b\x0c\x00\x30\x00\x40\x01\x01\x11\x00" + b"\0" * 64
    cfa = Ifd(entries=[(256, 4, 64), (257, 4, 48), (259, 3, 7), (262, 3, 32803)], blobs={273: lossless})
    data = tiff_file(Ifd(entries=[(271, ASCII, "Canon"), (50706, 1, [1, 4, 0, 0])], sub_ifds=[cfa]))
    assert probe(data, LIMITS).format == "dng" and previews(data) == []


def test_raw_extensions_are_accepted_keys() -> None:
    for ext in ("dng", "NEF", "arw", "CR2", "HEIC"):
        assert parse_original_key(f"originals/shoots/s/IMG_0001.{ext}").ext == ext.lower()


# --- capture facts --------------------------------------------------------------------------


def _exif_with_gps() -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif.load(exif_bytes({0x010F: "Canon", 0x0110: "Canon EOS R5"},
                         {0x9003: "2026:03:14 15:09:26", 0x9011: "-05:00", 0x8827: 400,
                          0x829A: IFDRational(1, 1000), 0x829D: IFDRational(28, 10), 0x920A: IFDRational(85, 1),
                          0xA434: "RF85mm F1.2 L USM"}))
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (IFDRational(48), IFDRational(51), IFDRational(24)), 3: "W",
                4: (IFDRational(2), IFDRational(21), IFDRational(0))})
    return exif.tobytes()


def _jpeg_with_exif(exif: bytes) -> bytes:
    image = pyvips.Image.new_from_buffer(jpeg_of(flat(60, 40, RED)), "").copy()
    image.set_type(pyvips.GValue.blob_type, "exif-data", exif)
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    return image.jpegsave_buffer(keep="exif")


def test_capture_facts_come_from_the_header_and_gps_only_when_asked() -> None:
    data = _jpeg_with_exif(_exif_with_gps())
    facts = read_capture_facts(data, limits=LIMITS, original_name="IMG_1.JPG")
    assert (facts.make, facts.model, facts.lens) == ("Canon", "Canon EOS R5", "RF85mm F1.2 L USM")
    assert (facts.focal_length_mm, facts.aperture, facts.shutter, facts.iso) == (85.0, 2.8, "1/1000", 400)
    assert facts.captured_at == "2026-03-14T15:09:26-05:00"
    assert (facts.width, facts.height, facts.original_name) == (40, 60, "IMG_1.JPG")  # upright
    assert facts.gps_latitude is None and facts.gps_longitude is None
    located = read_capture_facts(data, limits=LIMITS, gps=True)
    assert located.gps_latitude == pytest.approx(48.856667) and located.gps_longitude == pytest.approx(-2.35)


def test_facts_of_heic_and_raw_headers() -> None:
    heic = make_heic(halves(320, 240, RED, BLUE), orientation=6,
                     exif=exif_bytes({0x010F: "Apple", 0x0110: "iPhone 15 Pro"}, {0x9003: "2026:05:01 14:03:22"}))
    facts = read_capture_facts(heic, limits=LIMITS)
    assert (facts.make, facts.width, facts.height, facts.captured_at) == ("Apple", 240, 320, "2026-05-01T14:03:22")
    dng = make_dng(64, 48, (0.5, 0.5, 0.5), orientation=6,
                   exif=[(0x9003, ASCII, "2025:12:24 18:00:00"), (0x9011, ASCII, "+01:00"), (0x8827, SHORT, 100)])
    facts = read_capture_facts(dng, limits=LIMITS)
    assert (facts.model, facts.iso, facts.captured_at, facts.width, facts.height) == (
        "Testcam DNG", 100, "2025-12-24T18:00:00+01:00", 48, 64)


def test_missing_or_broken_exif_gives_size_only_facts() -> None:
    plain = read_capture_facts(jpeg_of(flat(30, 20, RED)), limits=LIMITS, original_name="a.jpg")
    assert plain == type(plain)(width=30, height=20, original_name="a.jpg")
    broken = read_capture_facts(_jpeg_with_exif(b"Exif\0\0II*\0\xff\xff\xff\x7f"), limits=LIMITS)
    assert (broken.width, broken.make) == (40, None)


def test_capture_sort_key_orders_by_the_utc_instant() -> None:
    assert capture_sort_key("2026-05-01T09:00:00-04:00") == "2026-05-01T13:00:00"
    assert capture_sort_key("2026-05-01T14:03:22+02:00") == "2026-05-01T12:03:22"
    assert capture_sort_key("2026-05-01T10:00:00") == "2026-05-01T10:00:00"
    assert capture_sort_key(None) is None and capture_sort_key("yesterday") is None


# --- placeholders ---------------------------------------------------------------------------


def test_our_blurhash_decodes_with_an_independent_decoder_to_the_average_colour() -> None:
    image = pyvips.Image.new_from_array(np.ascontiguousarray(halves(300, 200, RED, BLUE))).copy(interpretation="srgb")
    code = our_blurhash(image)
    assert blurhash.components(code) == (4, 3)
    painted = np.asarray(blurhash.decode(code, 30, 20), dtype=float)
    average = [image.extract_band(b).avg() for b in range(3)]
    assert all(abs(p - a) <= 10 for p, a in zip(painted.mean(axis=(0, 1)), average, strict=True))
    # The structure survives: the left of the placeholder is red, the right blue.
    assert painted[10, 2, 0] > painted[10, 2, 2] and painted[10, 27, 2] > painted[10, 27, 0]


def test_our_blurhash_is_the_reference_implementation_s() -> None:
    pixels = halves(32, 24, RED, BLUE)  # no larger than the 32-px sample, so both see the same pixels
    image = pyvips.Image.new_from_array(np.ascontiguousarray(pixels)).copy(interpretation="srgb")
    assert our_blurhash(image) == blurhash.encode(pixels, 4, 3)


# --- the rendition stage and the gallery ----------------------------------------------------

STUDIO = """
renditions:
  web: {stage: resize, source: original, long_edge: 1000}
  thumb: {stage: thumbnail, source: web, width: 200, height: 200, format: webp}
"""


def _upload(store: MemoryStore, name: str, data: bytes):
    from pipeline.contracts.events import FILE_UPLOADED
    from pipeline.contracts.topics import FILES
    from pipeline.envelope import build_envelope
    from pipeline.publisher import Outgoing

    file_id, ext = name.rsplit(".", 1)
    key = f"originals/shoots/s1/{name}"
    assert parse_original_key(key).name == name  # any name a camera writes is an original
    store.objects[key] = data
    payload = FileUploaded(file_id=file_id, shoot_id="s1", bucket=store.bucket, key=key, size=len(data), etag="e")
    return as_received(Outgoing.event(FILES, file_id, build_envelope(
        FILE_UPLOADED, "1.0.0", payload, subject=file_id, producer="test", event_id=f"up-{file_id}")))


@pytest.mark.parametrize("gps", [False, True])
def test_web_carries_the_facts_thumb_the_placeholder_and_gps_needs_the_pipeline_opt_in(gps: bool) -> None:
    store = MemoryStore()
    text = STUDIO + ("facts: {gps: true}\n" if gps else "")
    graph = parse_rendition_graph(text)
    resize_stage = image_stage("resize", default_registry(), store, graph, LIMITS, "test")  # type: ignore[arg-type]
    thumb_stage = image_stage("thumbnail", default_registry(), store, graph, LIMITS, "test")  # type: ignore[arg-type]
    [web] = run(resize_stage, _upload(store, "IMG_7.JPG", _jpeg_with_exif(_exif_with_gps())))
    facts = body(web).data["facts"]
    assert facts["model"] == "Canon EOS R5" and facts["originalName"] == "IMG_7.JPG"
    assert (facts.get("gpsLatitude") is not None) is gps
    assert body(web).data.get("placeholder") is None
    [thumb] = run(thumb_stage, as_received(web, 1))
    assert body(thumb).data.get("facts") is None and blurhash.components(body(thumb).data["placeholder"]) == (4, 3)


def test_the_pipeline_file_refuses_unknown_facts_options() -> None:
    with pytest.raises(PipelineConfigError, match="facts.location"):
        parse_rendition_graph(STUDIO + "facts: {location: true}\n")


def _processed(file_id: str, rendition: str, **extra: object) -> FileProcessed:
    return FileProcessed(file_id=file_id, shoot_id="s1", rendition=rendition, bucket="b", key=f"k/{file_id}/{rendition}",
                         width=10, height=10, bytes=1, format="jpeg", source_event_id="x", **extra)


def test_the_gallery_keeps_facts_and_placeholder_and_orders_by_capture_time(tmp_path: Path) -> None:
    db = Database(tmp_path / "o.sqlite")
    gallery = GalleryStage(default_registry(), db, Settings(), None, {"web", "thumb"})
    shot = {"late": "2026-05-01T09:00:00-04:00", "early": "2026-05-01T12:00:00+02:00", "undated": None}
    for file_id, when in shot.items():
        facts = CaptureFacts(width=10, height=10, make="Acme", captured_at=when)
        for rendition, extra in (("web", {"facts": facts}), ("thumb", {"placeholder": "L00000fQfQfQfQfQfQfQfQfQfQfQ"})):
            _, message = event_message(_processed(file_id, rendition, **extra), event_id=f"{file_id}-{rendition}",
                                       producer="test", correlation_id="c")
            gallery.apply_once(default_registry().decode(message.value))
    photos = gallery_photos(db.conn(), "s1")
    assert [p.file_id for p in photos] == ["early", "late", "undated"]  # 10:00Z, 13:00Z, then no date
    assert photos[0].facts is not None and photos[0].facts.captured_at == shot["early"]
    assert all(p.placeholder == "L00000fQfQfQfQfQfQfQfQfQfQfQ" for p in photos)
    rows = db.conn().execute("SELECT value FROM outbox ORDER BY seq").fetchall()
    updates = [default_registry().decode(r["value"]).payload for r in rows]
    assert [u.facts.captured_at for u in updates] == list(shot.values())  # type: ignore[union-attr]
    assert {u.placeholder for u in updates} == {"L00000fQfQfQfQfQfQfQfQfQfQfQ"}  # type: ignore[union-attr]


def test_bayer_mosaic_helper_is_rggb() -> None:
    plane = np.frombuffer(bayer_mosaic(4, 2, (1.0, 0.5, 0.0)), dtype="<u2").reshape(2, 4)
    assert plane[0, 0] == 4095 and plane[0, 1] == plane[1, 0] == 2048 and plane[1, 1] == 0
