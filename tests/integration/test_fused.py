"""Fused image stages on the real stack: `darkroom worker resize,thumbnail,watermark` with the example pipeline.

One worker and one consumer group make every rendition of a photo from one read and one decode, and
publish exactly the `file.processed` events the stages run apart would publish (same deterministic
event ids, keys and causation), so the gallery sees each photo once. A SIGKILL mid-batch loses
nothing: the `file.uploaded` offset is committed only once the whole chain is durable.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
import pyvips

from pipeline.contracts.events import FILE_PROCESSED, GALLERY_UPDATED, H_RENDITION
from pipeline.contracts.topics import FILES, GALLERIES
from pipeline.envelope import deterministic_id
from pipeline.settings import Settings
from pipeline.watch import Seen
from storage import ObjectStore, rendition_key
from storage.upload import upload_files
from tests.integration.conftest import REPO, make_photos
from tests.integration.helpers import events_of, expected_size, uploaded_events
from tests.integration.test_business_flow import caught_up

pytestmark = pytest.mark.integration

PIPELINE = str(REPO / "examples" / "pipeline.yaml")
FUSED = "resize,thumbnail,watermark"
GROUP_STAGE = "resize+thumbnail+watermark"  # the fused worker's consumer group is darkroom.<this>
RENDITIONS = {"web": "resize", "thumb": "thumbnail", "proof": "watermark"}
SIZES = [(3000, 2000), (2000, 3000), (2400, 2400), (1600, 1200)]


def _env(tmp_path: Path) -> dict[str, str]:
    return {"DARKROOM_PIPELINE_FILE": PIPELINE,
            "DARKROOM_ORCHESTRATION__DB_PATH": str(tmp_path / "orchestration.sqlite"),
            "DARKROOM_ORCHESTRATION__RELAY_TICK_S": "0.2"}


def _processed(seen: list[Seen], ids: set[str]) -> list[Seen]:
    return events_of(seen, FILE_PROCESSED, ids)


def _pairs(seen: list[Seen], ids: set[str]) -> Counter[tuple[str, str]]:
    """(file id, rendition) → how many file.processed announced it."""
    return Counter((s.key.decode(), s.envelope().data["rendition"]) for s in _processed(seen, ids))  # type: ignore[union-attr]


def _gallery_added(seen: list[Seen], ids: set[str]) -> Counter[str]:
    return Counter(e.data["fileId"] for e in (s.envelope() for s in seen if s.event_type == GALLERY_UPDATED)
                   if e.data.get("change") == "added" and e.data.get("fileId") in ids)


def _expected_ids(files_seen: list[Seen], ids: set[str], files) -> dict[tuple[str, str], str]:  # type: ignore[no-untyped-def]
    """The event id the stages run apart would give each rendition: web from the upload, thumb and proof from web."""
    uploaded = uploaded_events(files, ids)
    out = {}
    for file_id in ids:
        web = deterministic_id(uploaded[file_id].envelope().event_id, "resize", "web")
        out[(file_id, "web")] = web
        out[(file_id, "thumb")] = deterministic_id(web, "thumbnail", "thumb")
        out[(file_id, "proof")] = deterministic_id(web, "watermark", "proof")
    return out


def test_the_fused_worker_publishes_what_the_stages_apart_would_and_the_gallery_gets_each_photo_once(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    files, galleries = watch(FILES), watch(GALLERIES)
    start_worker("ingest")
    worker = start_worker(FUSED, **env)
    start_worker("gallery", **env)
    worker.wait_for_line(r"assigned", 120)
    photos = make_photos(photo_dir / "fused", 8, seed=71, sizes=SIZES)
    results = upload_files(store, photos, shoot_id)
    assert all(r.ok for r in results)
    ids = {r.file_id for r in results}
    size_of = {r.file_id: SIZES[i % len(SIZES)] for i, r in enumerate(results)}

    wanted = {(f, r) for f in ids for r in RENDITIONS}
    files.until(lambda seen: set(_pairs(seen, ids)) >= wanted, 300)
    galleries.until(lambda seen: set(_gallery_added(seen, ids)) >= ids, 180)
    caught_up(settings, GROUP_STAGE, FILES)  # nothing more is coming from the fused worker: a duplicate would show now
    caught_up(settings, "gallery", FILES)
    files.poll(1.0)
    galleries.poll(1.0)

    assert _pairs(files.seen, ids) == Counter({pair: 1 for pair in wanted}), "one file.processed per rendition"
    assert _gallery_added(galleries.seen, ids) == Counter({f: 1 for f in ids}), "each photo once in the gallery"
    expected_ids = _expected_ids(files.seen, ids, files)
    uploaded = uploaded_events(files, ids)
    for seen in _processed(files.seen, ids):
        envelope = seen.envelope()
        file_id, name, data = seen.key.decode(), envelope.data["rendition"], envelope.data  # type: ignore[union-attr]
        assert envelope.event_id == expected_ids[(file_id, name)], (file_id, name)
        assert seen.headers[H_RENDITION] == name.encode()
        assert envelope.correlation_id == uploaded[file_id].envelope().correlation_id
        web_size = expected_size(*size_of[file_id])
        expected = {"web": web_size, "proof": web_size, "thumb": (400, 400)}[name]
        assert (data["width"], data["height"]) == expected, (file_id, name)
        # Per version of the original (#11), exactly as the stages run apart would write it.
        version = uploaded[file_id].envelope().data["version"]
        assert data["key"] == rendition_key(shoot_id, file_id, name, {"thumb": "webp"}.get(name, "jpg"), version)
        assert data["version"] == version
        stored = pyvips.Image.new_from_buffer(store.get(data["key"]), "")
        assert (stored.width, stored.height) == expected
        assert data["bytes"] == store.head(data["key"]).size
    assert "resize+thumbnail+watermark: assigned" in "\n".join(worker.lines)  # one group for the whole chain


def test_sigkill_of_the_fused_worker_mid_batch_loses_nothing(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    files = watch(FILES)  # a plain read_committed consumer outside any group
    start_worker("ingest")
    first = start_worker(FUSED, **env)
    photos = make_photos(photo_dir / "fused-kill", 16, seed=72, sizes=[(4000, 3000)])
    ids = {r.file_id for r in upload_files(store, photos, shoot_id)}

    files.until(lambda seen: len(_processed(seen, ids)) >= 3, 180)
    first.signal(signal.SIGKILL)
    first.wait()
    before = set(_pairs(files.seen, ids))
    assert len(before) < 3 * len(ids), "the batch finished before the kill; the test proves nothing"

    start_worker(FUSED, **env)
    wanted = {(f, r) for f in ids for r in RENDITIONS}
    files.until(lambda seen: set(_pairs(seen, ids)) >= wanted, 300)
    caught_up(settings, GROUP_STAGE, FILES)
    files.poll(1.0)

    counts = _pairs(files.seen, ids)
    assert set(counts) == wanted, "every rendition of every photo was announced"
    expected_ids = _expected_ids(files.seen, ids, files)
    for (file_id, name) in wanted:
        events = [s.envelope() for s in _processed(files.seen, {file_id}) if s.envelope().data["rendition"] == name]
        # Redone chains republish, but always the same event id and the same object.
        assert {e.event_id for e in events} == {expected_ids[(file_id, name)]}
        assert len({e.data["key"] for e in events}) == 1
        assert store.exists(events[0].data["key"])
    # A chain is committed whole or redone whole: no photo has only some of its renditions redone twice
    # unless web was redone too (thumb and proof follow web in every chain).
    for file_id in ids:
        assert counts[(file_id, "thumb")] <= counts[(file_id, "web")] and counts[(file_id, "proof")] <= counts[(file_id, "web")]
