"""Uploads as they really happen, on the real stack: photos put with boto3 under any name, re-edits, deletes, multipart.

Nothing here goes through `darkroom upload`: keys are whatever a studio's web app, rclone or a
sync tool would write, and versitygw's own notifications (measured: it writes keys raw, sends
`s3:ObjectRemoved:Delete` with a null etag and `CompleteMultipartUpload` with size 0) drive ingest.
One set of workers (ingest, resize, thumbnail, gallery) serves the module; every test has its own shoots.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import pyvips
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from orchestration.db import Database
from orchestration.gallery import gallery_photos, gallery_snapshot
from pipeline.contracts.events import FILE_PROCESSED, FILE_UPLOADED
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES, GALLERIES
from pipeline.envelope import Envelope
from pipeline.settings import Settings
from pipeline.watch import Seen, TopicWatcher
from storage import ObjectStore, file_id_of
from tests.integration.conftest import WorkerProcess
from tests.integration.helpers import dead_letters, events_of
from tests.integration.test_business_flow import caught_up, darkroom

pytestmark = pytest.mark.integration

PIPELINE = """
renditions:
  web: {stage: resize, source: original, long_edge: 640, format: jpeg, quality: 90}
  thumb: {stage: thumbnail, source: web, width: 160, height: 160, fit: cover, format: webp}
"""
RENDITIONS = {"web", "thumb"}
NFC = unicodedata.normalize("NFC", "Café crème.jpg")
NFD = unicodedata.normalize("NFD", "Café crème.jpg")
LONG = "Hochzeit Anna und Ben - " + "x" * 172 + ".jpg"  # 200 characters
NAMES = ["IMG_0001 (1).JPG", "a+b.jpg", "Tom & Jerry.jpg", "#12 pick.jpg", NFC, NFD, "写真 東京.jpg", "DSC_0002.JPEG",
         LONG, "photo.jpg", "photo.png"]


@pytest.fixture(scope="module")
def env(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("uploads")
    (folder / "pipeline.yaml").write_text(PIPELINE)
    return {"DARKROOM_ORCHESTRATION__DB_PATH": str(folder / "orchestration.sqlite"),
            "DARKROOM_ORCHESTRATION__RELAY_TICK_S": "0.2", "DARKROOM_PIPELINE_FILE": str(folder / "pipeline.yaml")}


@pytest.fixture(scope="module")
def fleet(stack_env: dict[str, str], stack: object, env: dict[str, str]) -> Iterator[list[WorkerProcess]]:
    """ingest, resize, thumbnail and gallery, for the whole module."""
    workers = [WorkerProcess(stage, {**stack_env, **env}) for stage in ("ingest", "resize", "thumbnail", "gallery")]
    yield workers
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def s3(settings: Settings):  # noqa: ANN201 - boto3 clients are untyped
    """A plain boto3 client, as any studio tool would use."""
    return boto3.client("s3", endpoint_url=settings.storage.endpoint_url, region_name=settings.storage.region,
                        aws_access_key_id=settings.storage.access_key,
                        aws_secret_access_key=settings.storage.secret_key.get_secret_value(),
                        config=Config(retries={"max_attempts": 5}))


def new_shoot() -> str:
    return f"shoot-{uuid.uuid4().hex[:10]}"


def solid(rgb: tuple[int, int, int], width: int = 800, height: int = 600, fmt: str = "jpg") -> bytes:
    """An image of one colour, so a rendition can be traced to its source by its pixels."""
    image = (pyvips.Image.black(width, height, bands=3) + list(rgb)).cast("uchar").copy(interpretation="srgb")
    return image.pngsave_buffer() if fmt == "png" else image.jpegsave_buffer(Q=95)


def colour_of(data: bytes) -> tuple[int, int, int]:
    image = pyvips.Image.new_from_buffer(data, "")
    return tuple(round(image.extract_band(b).avg()) for b in range(3))  # type: ignore[return-value]


def close_to(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) <= 8 for x, y in zip(a, b, strict=True))


def gallery_events(seen: list[Seen], **data: str) -> list[Envelope]:
    found = [s.envelope() for s in seen if s.event_type == "gallery.updated"]
    return [e for e in found if all(e.data.get(k) == v for k, v in data.items())]


def await_change(galleries: TopicWatcher, file_ids: set[str], change: str, timeout_s: float = 180) -> dict[str, Envelope]:
    """Wait until every file id has a gallery.updated of this change; returns the last one per file id."""
    def found(seen: list[Seen]) -> dict[str, Envelope]:
        return {e.data["fileId"]: e for e in gallery_events(seen, change=change) if e.data["fileId"] in file_ids}

    galleries.until(lambda seen: set(found(seen)) >= file_ids, timeout_s)
    return found(galleries.seen)


def db(env: dict[str, str]) -> Database:
    return Database(Path(env["DARKROOM_ORCHESTRATION__DB_PATH"]))


def quiet(settings: Settings, *watchers: TopicWatcher) -> None:
    """Every worker has committed past everything on `files`: a duplicate would have shown by now."""
    for stage in ("resize", "thumbnail", "gallery"):
        caught_up(settings, stage, FILES, timeout_s=120)
    for watcher in watchers:
        watcher.poll(2.0)


def test_photos_put_with_boto3_under_any_name_reach_their_own_gallery_under_their_own_name(
    settings: Settings, store: ObjectStore, s3, fleet: list[WorkerProcess], env: dict[str, str], watch  # noqa: ANN001
) -> None:
    galleries, files = watch(GALLERIES), watch(FILES)
    first, second = new_shoot(), new_shoot()
    colours = {name: (20 + 20 * i, 200 - 15 * i, (90 * i) % 256) for i, name in enumerate(NAMES)}
    keys = {name: f"originals/shoots/{first}/{name}" for name in NAMES}
    for name, key in keys.items():
        s3.put_object(Bucket=settings.storage.bucket, Key=key, Body=solid(colours[name], fmt=name.rsplit(".")[-1].lower()))
    ids = {name: file_id_of(key) for name, key in keys.items()}
    assert len(set(ids.values())) == len(NAMES), "photo.jpg and photo.png, NFC and NFD: all different files"

    added = await_change(galleries, set(ids.values()), "added")
    for name, file_id in ids.items():
        event = added[file_id]
        assert event.data["shootId"] == first and event.data["name"] == unicodedata.normalize("NFC", name)
        web = next(r for r in event.data["renditions"] if r["name"] == "web")
        assert close_to(colour_of(store.get(web["key"])), colours[name]), f"{name}: the web rendition shows another photo"
    names = {p.file_id: p.name for p in gallery_photos(db(env).conn(), first)}
    assert names == {file_id: unicodedata.normalize("NFC", name) for name, file_id in ids.items()}
    printed = darkroom(env, "gallery", first)
    assert f"{len(NAMES)} photo(s)" in printed and "IMG_0001 (1).JPG" in printed and "写真 東京.jpg" in printed
    before = gallery_snapshot(db(env).conn(), first)

    # The same name in a second shoot, with other pixels: another photo, in the other gallery only.
    twin = f"originals/shoots/{second}/IMG_0001 (1).JPG"
    s3.put_object(Bucket=settings.storage.bucket, Key=twin, Body=solid((0, 0, 255)))
    [other] = await_change(galleries, {file_id_of(twin)}, "added").values()
    assert other.data["shootId"] == second and other.data["name"] == "IMG_0001 (1).JPG"
    other_web = next(r["key"] for r in other.data["renditions"] if r["name"] == "web")
    first_web = next(r["key"] for r in added[ids["IMG_0001 (1).JPG"]].data["renditions"] if r["name"] == "web")
    assert close_to(colour_of(store.get(other_web)), (0, 0, 255))
    assert close_to(colour_of(store.get(first_web)), colours["IMG_0001 (1).JPG"])
    assert store.get(other_web) != store.get(first_web)

    quiet(settings, galleries, files)
    assert gallery_snapshot(db(env).conn(), first) == before, "the second shoot changed the first one's gallery"
    assert [p.name for p in gallery_photos(db(env).conn(), second)] == ["IMG_0001 (1).JPG"]
    assert len(gallery_events(galleries.seen, shootId=first)) == len(NAMES), "one gallery.updated per photo"
    assert len(gallery_events(galleries.seen, shootId=second)) == 1


def test_unsafe_keys_are_refused_with_the_reason(
    settings: Settings, s3, fleet: list[WorkerProcess], watch  # noqa: ANN001
) -> None:
    dlq = watch(DEAD_LETTER_QUEUE)
    shoot = new_shoot()
    refused = {
        f"originals/shoots/{shoot}/../escape.jpg": "'..' segment",
        f"originals/shoots/{shoot}/line\nbreak.jpg": "control character U+000A",
        f"originals/shoots/{shoot}/bell\x07.jpg": "control character U+0007",
        f"originals/loose-{shoot}.jpg": "does not start with 'originals/shoots/'",
    }
    for key in refused:
        s3.put_object(Bucket=settings.storage.bucket, Key=key, Body=solid((1, 2, 3)))

    def letters() -> dict[str, str]:
        found = {}
        for letter in dead_letters(dlq):
            for key in refused:
                if repr(key) in letter.error_message:
                    found[key] = letter.error_message
                    assert letter.stage == "ingest" and letter.error_kind == "permanent"
        return found

    dlq.until(lambda _: set(letters()) == set(refused), 120)
    for key, message in letters().items():
        assert "untrusted key" in message and refused[key] in message, message


def test_a_photo_put_again_with_new_content_gets_new_renditions_at_new_keys_and_one_gallery_change(
    settings: Settings, store: ObjectStore, s3, fleet: list[WorkerProcess], env: dict[str, str], watch  # noqa: ANN001
) -> None:
    galleries, files = watch(GALLERIES), watch(FILES)
    shoot = new_shoot()
    key = f"originals/shoots/{shoot}/Retouch me (final).jpg"
    file_id = file_id_of(key)
    s3.put_object(Bucket=settings.storage.bucket, Key=key, Body=solid((250, 0, 0)))
    [added] = await_change(galleries, {file_id}, "added").values()
    old_keys = {r["key"] for r in added.data["renditions"]}

    s3.put_object(Bucket=settings.storage.bucket, Key=key, Body=solid((0, 200, 0)))
    [updated] = await_change(galleries, {file_id}, "updated").values()
    new_keys = {r["key"] for r in updated.data["renditions"]}
    assert updated.data["version"] != added.data["version"] and updated.data["name"] == "Retouch me (final).jpg"
    assert new_keys.isdisjoint(old_keys), "the same URL would let a cache serve the old image"
    web = next(r["key"] for r in updated.data["renditions"] if r["name"] == "web")
    assert close_to(colour_of(store.get(web)), (0, 200, 0))
    assert not any(store.exists(k) for k in old_keys), "the old version's renditions are removed"
    [photo] = gallery_photos(db(env).conn(), shoot)
    assert {r[1] for r in photo.renditions} == new_keys and photo.version == updated.data["version"]

    quiet(settings, galleries, files)
    assert [e.data["change"] for e in gallery_events(galleries.seen, fileId=file_id)] == ["added", "updated"]
    assert len(events_of(files.seen, FILE_UPLOADED, {file_id})) == 2  # one per version


def test_an_original_deleted_with_boto3_loses_its_renditions_and_its_place_in_the_gallery(
    settings: Settings, store: ObjectStore, s3, fleet: list[WorkerProcess], env: dict[str, str], watch  # noqa: ANN001
) -> None:
    galleries = watch(GALLERIES)
    shoot = new_shoot()
    keep, doomed = f"originals/shoots/{shoot}/keep me.jpg", f"originals/shoots/{shoot}/delete me.jpg"
    for key in (keep, doomed):
        s3.put_object(Bucket=settings.storage.bucket, Key=key, Body=solid((100, 100, 100)))
    added = await_change(galleries, {file_id_of(keep), file_id_of(doomed)}, "added")
    keys = [r["key"] for r in added[file_id_of(doomed)].data["renditions"]]
    assert all(store.exists(k) for k in keys)

    s3.delete_object(Bucket=settings.storage.bucket, Key=doomed)
    [removed] = await_change(galleries, {file_id_of(doomed)}, "removed").values()
    assert removed.data["shootId"] == shoot and removed.data["photoCount"] == 1
    assert not any(store.exists(k) for k in keys)
    assert [p.name for p in gallery_photos(db(env).conn(), shoot)] == ["keep me.jpg"]
    assert shoot in darkroom(env, "gallery", shoot) and "delete me" not in darkroom(env, "gallery", shoot)

    # Deleted by mistake, uploaded again with the same bytes: it is a new upload, and comes back.
    s3.put_object(Bucket=settings.storage.bucket, Key=doomed, Body=solid((100, 100, 100)))
    galleries.until(lambda seen: len(gallery_events(seen, fileId=file_id_of(doomed), change="added")) == 2, 180)
    assert sorted(p.name for p in gallery_photos(db(env).conn(), shoot)) == ["delete me.jpg", "keep me.jpg"]

    quiet(settings, galleries)
    changes = [e.data["change"] for e in gallery_events(galleries.seen, fileId=file_id_of(doomed))]
    assert changes == ["added", "removed", "added"]


def test_a_multipart_upload_of_a_20_mb_photo_is_processed_once(
    settings: Settings, s3, fleet: list[WorkerProcess], env: dict[str, str], watch, tmp_path: Path  # noqa: ANN001
) -> None:
    galleries, files = watch(GALLERIES), watch(FILES)
    shoot = new_shoot()
    # A real JPEG padded after its end marker (decoders stop there) to 20 MiB: four 5 MiB parts.
    photo = tmp_path / "big.jpg"
    photo.write_bytes(solid((10, 120, 230), 2400, 1600).ljust(20 * 1024 * 1024, b"\0"))
    key = f"originals/shoots/{shoot}/Big one.jpg"
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(photo), settings.storage.bucket, key, Config=config)
    file_id = file_id_of(key)

    await_change(galleries, {file_id}, "added")
    quiet(settings, galleries, files)
    [uploaded] = events_of(files.seen, FILE_UPLOADED, {file_id})
    assert uploaded.envelope().data["etag"].endswith("-4"), "stored as a multipart object"
    assert sorted(s.envelope().data["rendition"] for s in events_of(files.seen, FILE_PROCESSED, {file_id})) == ["thumb", "web"]
    assert len(gallery_events(galleries.seen, fileId=file_id)) == 1
