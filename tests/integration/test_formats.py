"""Every format and every fact on the real stack (issue 12): iPhone HEIC, camera RAW, capture facts,
placeholders, no surprise enlargement.

Originals are put with boto3 under their camera names (IMG_0042.HEIC, DSC_0001.NEF, ...), as a
studio's sync tool would; ingest, resize (web), thumbnail (thumb, from web) and the gallery run as
real workers against the real broker and S3 server. The RAW and HEIC files are made by
tests/imagefiles.py (see there how realistic they are).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import blurhash
import boto3
import numpy as np
import pytest
import pyvips

from orchestration.db import Database
from orchestration.gallery import gallery_photos
from pipeline.contracts.events import FILE_PROCESSED
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES, GALLERIES
from pipeline.settings import Settings
from storage import ObjectStore
from storage.keys import file_id_of
from tests.imagefiles import (
    ASCII,
    RATIONAL,
    SHORT,
    exif_bytes,
    flat,
    jpeg_of,
    linear_to_srgb8,
    make_dng,
    make_heic,
    make_vendor_raw,
    p3_profile,
    srgb_to_p3,
)
from tests.integration.helpers import dead_letters, events_of
from tests.integration.test_business_flow import caught_up, darkroom, of_type

pytestmark = pytest.mark.integration

PIPELINE = """
renditions:
  web: {stage: resize, source: original, long_edge: 1024, format: jpeg, quality: 90}
  thumb: {stage: thumbnail, source: web, width: 400, height: 400, fit: cover, crop: centre, format: webp}
"""
RED, BLUE = (200, 50, 50), (40, 90, 200)


def _exif_tags(when: str, offset: str | None, iso: int) -> list[tuple[int, int, object]]:
    tags: list[tuple[int, int, object]] = [(0x9003, ASCII, when), (0x8827, SHORT, iso), (0x829D, RATIONAL, (28, 10)),
                                           (0x829A, RATIONAL, (1, 500)), (0x920A, RATIONAL, (50, 1))]
    return tags + ([(0x9011, ASCII, offset)] if offset else [])


def iphone_heic() -> bytes:
    """1200x900 in sensor orientation (left half red, right half blue in Display P3), EXIF
    orientation 6: upright it is 900x1200 with red on top."""
    sensor = np.zeros((900, 1200, 3), np.uint8)
    sensor[:, :600], sensor[:, 600:] = srgb_to_p3(RED), srgb_to_p3(BLUE)
    from PIL.TiffImagePlugin import IFDRational

    exif = exif_bytes({0x010F: "Apple", 0x0110: "iPhone 15 Pro"},
                      {0x9003: "2026:05:01 14:03:22", 0x9011: "+02:00", 0x8827: 64, 0x829D: IFDRational(178, 100),
                       0x829A: IFDRational(1, 250), 0x920A: IFDRational(686, 100),
                       0xA434: "iPhone 15 Pro back triple camera 6.86mm f/1.78"})
    return make_heic(sensor, orientation=6, icc=p3_profile(), exif=exif)


def originals() -> dict[str, bytes]:
    """Camera name -> bytes. Capture times (UTC): ARW 11:00, CR2 11:30, HEIC 12:03, NEF 13:00, DNG 15:00."""
    preview = jpeg_of(np.concatenate([flat(1000, 1500, RED), flat(1000, 1500, BLUE)], axis=1))  # 2000x1500
    return {
        "IMG_0042.HEIC": iphone_heic(),
        # Local 09:00 is the earliest wall-clock time, but 13:00 UTC: only the offset orders it right.
        "DSC_0001.NEF": make_vendor_raw("nef", 6048, 4024, preview=preview,
                                        exif=_exif_tags("2026:05:01 09:00:00", "-04:00", 800)),
        "DSC_0002.ARW": make_vendor_raw("arw", 6000, 4000, preview=preview,
                                        exif=_exif_tags("2026:05:01 11:00:00", "+00:00", 100)),
        "IMG_0003.CR2": make_vendor_raw("cr2", 6720, 4480, preview=preview,
                                        exif=_exif_tags("2026:05:01 12:30:00", "+01:00", 3200)),
        # No preview: demosaiced by LibRaw. A flat linear (0.6, 0.3, 0.15) mosaic, on its side.
        "L1000004.DNG": make_dng(600, 400, (0.6, 0.3, 0.15), orientation=6,
                                 exif=_exif_tags("2026:05:01 08:00:00", "-07:00", 200)),
        "tiny.png": pyvips.Image.black(1, 1, bands=3).cast("uchar").pngsave_buffer(),
        # Neither a preview nor sensor data: the dead-letter queue, with the reason.
        "IMG_0099.CR2": make_vendor_raw("cr2", 6720, 4480, preview=None),
    }


def _mean(image: pyvips.Image, left: int, top: int, width: int, height: int) -> list[float]:
    return [image.crop(left, top, width, height).extract_band(b).avg() for b in range(3)]


def _close(actual: list[float], expected: tuple[int, ...], tolerance: float) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def test_heic_raw_facts_placeholders_and_small_photos_on_the_real_stack(
    settings: Settings, store: ObjectStore, start_worker, watch, tmp_path: Path, shoot_id: str
) -> None:
    pipeline_file = tmp_path / "pipeline.yaml"
    pipeline_file.write_text(PIPELINE)
    env = {"DARKROOM_PIPELINE_FILE": str(pipeline_file),
           "DARKROOM_ORCHESTRATION__DB_PATH": str(tmp_path / "orchestration.sqlite"),
           "DARKROOM_ORCHESTRATION__RELAY_TICK_S": "0.2"}
    files, galleries, dlq = watch(FILES), watch(GALLERIES), watch(DEAD_LETTER_QUEUE)
    for stage in ("ingest", "resize", "thumbnail", "gallery"):
        start_worker(stage, **env)

    s3 = boto3.client("s3", endpoint_url=settings.storage.endpoint_url, region_name=settings.storage.region,
                      aws_access_key_id=settings.storage.access_key,
                      aws_secret_access_key=settings.storage.secret_key.get_secret_value())
    photos = originals()
    for name, data in photos.items():
        s3.put_object(Bucket=settings.storage.bucket, Key=f"originals/shoots/{shoot_id}/{name}", Body=data)
    # File ids are what ingest makes of each key (a slug and a hash of the key); F names them by stem.
    names = {name.rsplit(".", 1)[0]: name for name in photos}
    F = {stem: file_id_of(f"originals/shoots/{shoot_id}/{name}") for stem, name in names.items()}
    good = {F[stem] for stem in names if stem != "IMG_0099"}

    def added(seen: list) -> set[str]:
        return {e.data["fileId"] for e in of_type(seen, "gallery.updated", shootId=shoot_id, change="added")}

    galleries.until(lambda seen: added(seen) >= good, 240)
    dlq.until(lambda _: any(d.key == F["IMG_0099"].encode() for d in dead_letters(dlq)), 120)
    files.until(lambda seen: {(s.key, s.envelope().data["rendition"]) for s in events_of(seen, FILE_PROCESSED, good)}
                >= {(f.encode(), r) for f in good for r in ("web", "thumb")}, 120)
    processed = {(s.key.decode(), s.envelope().data["rendition"]): s.envelope().data
                 for s in events_of(files.seen, FILE_PROCESSED, good)}

    # The RAW without preview or sensor data: dead-lettered at once, with a reason a person can act on.
    [letter] = [d for d in dead_letters(dlq) if d.key == F["IMG_0099"].encode()]
    assert letter.stage == "resize" and letter.error_kind == "permanent" and letter.attempts == 1
    assert letter.error_class.endswith("ImageRejected")
    assert "CR2 file has no embedded preview and no sensor data" in letter.error_message

    # HEIC: right way up (portrait, red on top), Display P3 converted to sRGB, no profile left.
    web = processed[(F["IMG_0042"], "web")]
    image = pyvips.Image.new_from_buffer(store.get(web["key"]), "")
    assert (web["width"], web["height"]) == (image.width, image.height) == (768, 1024)
    assert image.interpretation == "srgb" and image.get_typeof("icc-profile-data") == 0
    top, bottom = _mean(image, 284, 156, 200, 200), _mean(image, 284, 668, 200, 200)
    assert _close(top, RED, 6) and _close(bottom, BLUE, 6), (top, bottom)

    # Vendor RAW from the embedded preview (2000x1500 covers the 1024 box): its pixels, not a mosaic.
    for raw_id in ("DSC_0001", "DSC_0002", "IMG_0003"):
        web = processed[(F[raw_id], "web")]
        image = pyvips.Image.new_from_buffer(store.get(web["key"]), "")
        assert (image.width, image.height) == (1024, 768), raw_id
        assert _close(_mean(image, 156, 284, 200, 200), RED, 6), raw_id
        assert _close(_mean(image, 668, 284, 200, 200), BLUE, 6), raw_id
    # DNG demosaiced by LibRaw: upright (400x600) and the colour of the linear mosaic in sRGB.
    web = processed[(F["L1000004"], "web")]
    image = pyvips.Image.new_from_buffer(store.get(web["key"]), "")
    assert (image.width, image.height) == (400, 600)
    expected = tuple(linear_to_srgb8(v) for v in (0.6, 0.3, 0.15))
    assert _close(_mean(image, 100, 200, 200, 200), expected, 6), (_mean(image, 100, 200, 200, 200), expected)

    # A 1x1 photo is not blown up to the 400x400 box.
    assert (processed[(F["tiny"], "thumb")]["width"], processed[(F["tiny"], "thumb")]["height"]) == (1, 1)
    assert (processed[(F["IMG_0042"], "thumb")]["width"], processed[(F["IMG_0042"], "thumb")]["height"]) == (400, 400)

    # Capture facts on the web rendition's event, read from the original's header; no GPS.
    facts = processed[(F["IMG_0042"], "web")]["facts"]
    assert facts["make"] == "Apple" and facts["model"] == "iPhone 15 Pro"
    assert facts["lens"] == "iPhone 15 Pro back triple camera 6.86mm f/1.78"
    assert (facts["focalLengthMm"], facts["aperture"], facts["shutter"], facts["iso"]) == (6.86, 1.8, "1/250", 64)
    assert facts["capturedAt"] == "2026-05-01T14:03:22+02:00"
    assert (facts["width"], facts["height"], facts["originalName"]) == (900, 1200, "IMG_0042.HEIC")
    assert facts.get("gpsLatitude") is None
    nef = processed[(F["DSC_0001"], "web")]["facts"]
    assert (nef["make"], nef["model"], nef["iso"], nef["capturedAt"]) == (
        "NIKON CORPORATION", "NIKON Z 6_2", 800, "2026-05-01T09:00:00-04:00")

    # Placeholders: on each thumbnail's event and in gallery.updated; the BlurHash decodes to the
    # thumbnail's average colour.
    updates = {e.data["fileId"]: e.data for e in of_type(galleries.seen, "gallery.updated", shootId=shoot_id)}
    for file_id in good:
        thumb = processed[(file_id, "thumb")]
        assert thumb["placeholder"] and updates[file_id]["placeholder"] == thumb["placeholder"]
        if file_id == F["tiny"]:
            continue
        stored = pyvips.Image.new_from_buffer(store.get(thumb["key"]), "")
        average = [stored.extract_band(b).avg() for b in range(3)]
        painted = np.asarray(blurhash.decode(thumb["placeholder"], 32, 32), dtype=float).mean(axis=(0, 1))
        assert all(abs(p - a) <= 12 for p, a in zip(painted, average, strict=True)), (file_id, painted, average)
    assert updates[F["IMG_0042"]]["facts"]["capturedAt"] == "2026-05-01T14:03:22+02:00"

    # The gallery read model orders photos by when they were shot (UTC), the undated last.
    caught_up(settings, "gallery", FILES)
    order = ["DSC_0002", "IMG_0003", "IMG_0042", "DSC_0001", "L1000004", "tiny"]
    photos_in_gallery = gallery_photos(Database(Path(env["DARKROOM_ORCHESTRATION__DB_PATH"])).conn(), shoot_id)
    assert [p.file_id for p in photos_in_gallery] == [F[stem] for stem in order]
    instants = [datetime.fromisoformat(p.facts.captured_at).astimezone(timezone.utc)
                for p in photos_in_gallery if p.facts and p.facts.captured_at]
    assert instants == sorted(instants) and len(instants) == 5
    printed = darkroom(env, "gallery", shoot_id)
    positions = [printed.index(F[stem]) for stem in order]
    assert positions == sorted(positions), printed
    assert "iPhone 15 Pro" in printed and "2026-05-01 14:03:22 +02:00" in printed and "1/250" in printed
