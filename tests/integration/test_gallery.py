"""The gallery on the real stack: once per photo, 50 photos over many partitions, crashes, replay, deletes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestration.db import Database
from orchestration.gallery import gallery_snapshot
from pipeline.contracts.topics import FILES, GALLERIES
from pipeline.settings import Settings
from storage import ObjectStore
from storage.upload import upload_files
from tests.integration.conftest import make_photos
from tests.integration.helpers import mails_to
from tests.integration.test_business_flow import caught_up, darkroom, of_type

pytestmark = pytest.mark.integration

SIZES = [(640, 480), (480, 640)]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DARKROOM_ORCHESTRATION__DB_PATH": str(tmp_path / "orchestration.sqlite"),
            "DARKROOM_ORCHESTRATION__RELAY_TICK_S": "0.2", **extra}


def _added(galleries, shoot_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in of_type(galleries.seen, "gallery.updated", shootId=shoot_id, change="added"):
        counts[e.data["fileId"]] = counts.get(e.data["fileId"], 0) + 1
    return counts


def test_fifty_photos_give_fifty_gallery_updates_a_complete_read_model_one_batched_mail_and_an_identical_replay(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, tmp_path: Path
) -> None:
    env = _env(tmp_path, DARKROOM_ORCHESTRATION__NOTIFY_INTERVAL_S="4")
    files, galleries = watch(FILES), watch(GALLERIES)
    for stage in ("ingest", "resize", "gallery"):
        start_worker(stage, **env)
    email = f"fifty-{time.time_ns()}@example.com"
    shoot_id = darkroom(env, "shoot", "create", "--title", "Fifty", "--client-email", email).strip()
    results = upload_files(store, make_photos(photo_dir / "fifty", 50, seed=41, sizes=SIZES), shoot_id)
    ids = {r.file_id for r in results}
    assert len(ids) == 50

    galleries.until(lambda _: set(_added(galleries, shoot_id)) >= ids, 300)
    caught_up(settings, "gallery", FILES)
    galleries.poll(2.0)
    assert _added(galleries, shoot_id) == {f: 1 for f in ids}  # exactly one per photo
    def processed_of(seen: list) -> list:
        return [s for s in seen if s.event_type == "file.processed" and s.key and s.key.decode() in ids]

    processed = processed_of(files.until(lambda seen: len(processed_of(seen)) >= 50, 60))
    assert len({s.partition for s in processed}) > 1, "keyed by file id, one shoot spreads over partitions"
    assert {s.key for s in galleries.seen if s.event_type == "gallery.updated"
            and s.envelope().data["shootId"] == shoot_id} == {shoot_id.encode()}  # galleries keyed by shoot

    db = Database(Path(env["DARKROOM_ORCHESTRATION__DB_PATH"]))
    live = gallery_snapshot(db.conn(), shoot_id)
    assert len(live["photos"]) == 50 and {p[2] for p in live["photos"]} == {"complete"}
    assert len(live["renditions"]) == 50
    printed = darkroom(env, "gallery", shoot_id)
    assert "50 photo(s)" in printed and printed.count("X-Amz-Signature") == 50

    # The notifier, started on the backlog, batches all 50 into one mail to the client.
    start_worker("notifier", **env)
    deadline = time.monotonic() + 90
    while not mails_to(email, "new photo(s)"):
        assert time.monotonic() < deadline, "no gallery notification mailed"
        time.sleep(0.5)
    time.sleep(6)  # longer than the interval: a second batch would have been mailed by now
    mails = mails_to(email, "new photo(s)")
    assert len(mails) == 1 and "50 new photo(s)" in mails[0][1]

    # Replaying `files` from offset zero rebuilds the same gallery.
    rebuilt = tmp_path / "rebuilt.sqlite"
    darkroom(env, "rebuild", "gallery", "--into", str(rebuilt))
    assert gallery_snapshot(Database(rebuilt).conn(), shoot_id) == live


@pytest.mark.parametrize("point", ["after-apply", "after-publish"])
def test_a_killed_aggregator_publishes_no_second_gallery_update_and_a_delete_removes_the_photo(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, tmp_path: Path, shoot_id: str,
    point: str,
) -> None:
    env = _env(tmp_path)
    galleries = watch(GALLERIES)
    start_worker("ingest", **env)
    start_worker("resize", **env)
    doomed = start_worker("gallery", DARKROOM_FAULT=f"{point}:gallery", **env)
    results = upload_files(store, make_photos(photo_dir / f"crash-{point}", 6, seed=43 + len(point), sizes=SIZES), shoot_id)
    ids = {r.file_id for r in results}
    assert doomed.wait(180) == 137, "\n".join(doomed.lines[-20:])
    start_worker("gallery", **env)
    galleries.until(lambda _: set(_added(galleries, shoot_id)) >= ids, 180)
    caught_up(settings, "gallery", FILES)
    galleries.poll(2.0)
    assert _added(galleries, shoot_id) == {f: 1 for f in ids}

    victim = sorted(ids)[0]
    [added] = [e for e in of_type(galleries.seen, "gallery.updated", fileId=victim)]
    keys = [r["key"] for r in added.data["renditions"]]
    assert all(store.exists(k) for k in keys)
    darkroom(env, "photo", "delete", victim, "--shoot", shoot_id)
    galleries.until(lambda seen: of_type(seen, "gallery.updated", fileId=victim, change="removed"), 60)
    assert not any(store.exists(k) for k in keys)
    photos = gallery_snapshot(Database(Path(env["DARKROOM_ORCHESTRATION__DB_PATH"])).conn(), shoot_id)["photos"]
    assert {p[0]: p[2] for p in photos}[victim] == "deleted"


