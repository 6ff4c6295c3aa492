"""The spine end to end on the real stack: upload → storage.events → ingest → resize → file.processed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import pyvips

from operations.devstack import DevStack
from pipeline.contracts.events import FILE_PROCESSED, FILE_UPLOADED
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES
from pipeline.envelope import Envelope
from pipeline.settings import Settings
from pipeline.watch import TopicWatcher
from storage import ObjectStore, rendition_key
from storage.upload import upload_files
from tests.integration.conftest import make_photos
from tests.integration.helpers import (
    await_processed,
    committed_offsets,
    dead_letters,
    events_of,
    expected_size,
    group_caught_up,
    uploaded_events,
)

pytestmark = pytest.mark.integration


def version(files: TopicWatcher, file_id: str) -> str:
    """The version of the original that `file.uploaded` announced: its renditions are written under it."""
    return str(uploaded_events(files, {file_id})[file_id].envelope().data["version"])

SIZES = [(3000, 2000), (2000, 3000), (2400, 2400), (1600, 1200)]


def test_twenty_uploads_yield_exactly_one_processed_each_with_the_rendition_stored(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files = watch(FILES)
    start_worker("ingest")
    start_worker("resize")
    photos = make_photos(photo_dir / "twenty", 20, seed=1, sizes=SIZES)
    results = upload_files(store, photos, shoot_id)
    assert all(r.ok for r in results)
    ids = {r.file_id for r in results}
    size_of = {r.file_id: SIZES[i % len(SIZES)] for i, r in enumerate(results)}

    by_id = await_processed(files, ids)
    group_caught_up(settings, "resize", FILES)  # nothing more is coming: now duplicates would show
    files.poll(0.5)
    by_id = {f: [s for s in events_of(files.seen, FILE_PROCESSED, {f})] for f in ids}

    assert {f: len(v) for f, v in by_id.items()} == {f: 1 for f in ids}
    for file_id, [seen] in by_id.items():
        data = seen.envelope().data
        assert (data["width"], data["height"]) == expected_size(*size_of[file_id])
        assert data["key"] == rendition_key(shoot_id, file_id, "web", "jpg", version(files, file_id))
        stored = pyvips.Image.new_from_buffer(store.get(data["key"]), "")
        assert (stored.width, stored.height) == (data["width"], data["height"])
        assert data["bytes"] == store.head(data["key"]).size
        # One chain: the processed event is caused by the upload event and shares its correlation id.
        uploaded = uploaded_events(files, {file_id})[file_id].envelope()
        assert seen.envelope().causation_id == uploaded.event_id
        assert seen.envelope().correlation_id == uploaded.correlation_id


def test_sigkill_mid_batch_loses_nothing_and_redelivery_overwrites_the_same_keys(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files = watch(FILES)
    start_worker("ingest")
    first = start_worker("resize")
    photos = make_photos(photo_dir / "kill", 20, seed=2, sizes=[(4000, 3000)])
    ids = {r.file_id for r in upload_files(store, photos, shoot_id)}

    files.until(lambda seen: len(events_of(seen, FILE_PROCESSED, ids)) >= 3, 120)
    first.signal(signal.SIGKILL)
    first.wait()
    before = len(events_of(files.seen, FILE_PROCESSED, ids))
    assert before < len(ids), "the batch finished before the kill; the test proves nothing"

    start_worker("resize")
    by_id = await_processed(files, ids)
    group_caught_up(settings, "resize", FILES)
    files.poll(0.5)
    for file_id in ids:
        events = [s.envelope() for s in events_of(files.seen, FILE_PROCESSED, {file_id})]
        # A redelivered photo may be processed twice, but the output is the same object and the same event id.
        assert {e.data["key"] for e in events} == {rendition_key(shoot_id, file_id, "web", "jpg", version(files, file_id))}
        assert len({e.event_id for e in events}) == 1
        assert store.exists(rendition_key(shoot_id, file_id, "web", "jpg", version(files, file_id)))
    assert set(by_id) == ids


def test_bad_files_go_to_the_dead_letter_queue_and_later_photos_in_their_partition_still_finish(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files, dlq = watch(FILES), watch(DEAD_LETTER_QUEUE)
    folder = photo_dir / "bad"
    folder.mkdir()
    good_jpeg = make_photos(folder / "src", 1, seed=3, sizes=[(1200, 900)])[0].read_bytes()
    (folder / "corrupt.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("these are my notes, not a photo\n" * 20)
    start_worker("ingest")
    bad = upload_files(store, [folder / "corrupt.jpg", folder / "empty.jpg", folder / "notes.jpg"], shoot_id)
    bad_ids = {r.file_id for r in bad}
    spots = files.until(lambda seen: {s.key for s in events_of(seen, FILE_UPLOADED, bad_ids)} == {f.encode() for f in bad_ids}, 60)
    bad_spots = [(s.partition, s.offset) for s in events_of(spots, FILE_UPLOADED, bad_ids)]
    # Upload good photos in rounds until every bad photo has a good one behind it in its partition
    # (notifications are not ordered, so where a photo lands is observed, not predicted).
    good_ids: set[str] = set()

    def every_bad_photo_has_a_good_one_behind(seen: list) -> bool:
        good = events_of(seen, FILE_UPLOADED, good_ids)
        return all(any(g.partition == p and g.offset > o for g in good) for p, o in bad_spots)

    for round_no in range(8):
        batch = make_photos(folder / f"good-{round_no}", 6, seed=40 + round_no, sizes=[(1200, 900)])
        ids = {r.file_id for r in upload_files(store, batch, shoot_id)}
        good_ids |= ids
        files.until(lambda seen, ids=ids: {s.key for s in events_of(seen, FILE_UPLOADED, ids)} == {f.encode() for f in ids}, 60)
        if every_bad_photo_has_a_good_one_behind(files.seen):
            break

    start_worker("resize")
    await_processed(files, good_ids)
    dlq.until(lambda _: {d.key.decode() for d in dead_letters(dlq) if d.key} >= bad_ids, 60)

    letters = {d.key.decode(): d for d in dead_letters(dlq) if d.key and d.key.decode() in bad_ids}
    reasons = {r.file_id: letters[r.file_id].error_message for r in bad}
    assert "empty" in reasons[bad[1].file_id].lower()
    assert "is not a jpeg" in reasons[bad[2].file_id].lower()
    assert reasons[bad[0].file_id]  # truncated JPEG: libvips' reason, readable
    for letter in letters.values():
        assert letter.stage == "resize" and letter.topic == FILES and letter.error_kind == "permanent"
        assert letter.error_class.endswith("ImageRejected") and letter.attempts == 1
        # The original event, byte for byte, ready for a redrive.
        assert Envelope.from_bytes(letter.value).event_type == FILE_UPLOADED
    uploaded = uploaded_events(files, bad_ids | good_ids)
    for bad_id in bad_ids:
        spot = uploaded[bad_id]
        later = [g for g in good_ids if uploaded[g].partition == spot.partition and uploaded[g].offset > spot.offset]
        assert later, f"no good photo after {bad_id} in partition {spot.partition}"
        # ... and they were processed although the bad photo before them failed.
        assert all(store.exists(rendition_key(shoot_id, g, "web", "jpg", version(files, g))) for g in later)


def test_sigterm_finishes_in_flight_photos_and_commits_them(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files = watch(FILES)
    start_worker("ingest")
    photos = make_photos(photo_dir / "term", 30, seed=5, sizes=[(3000, 2000)])
    ids = {r.file_id for r in upload_files(store, photos, shoot_id)}
    files.until(lambda seen: len(events_of(seen, FILE_UPLOADED, ids)) == len(ids), 60)

    # A small window and one thread: at the SIGTERM most photos are still unread, a few in flight.
    worker = start_worker("resize", DARKROOM_WORKER__MAX_IN_FLIGHT="4", DARKROOM_WORKER__THREADS="1")
    files.until(lambda seen: len(events_of(seen, FILE_PROCESSED, ids)) >= 2, 120)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    worker.wait_for_line(r"SIGTERM received")

    files.poll(1.0)
    done = {s.key.decode() for s in events_of(files.seen, FILE_PROCESSED, ids)}
    committed = committed_offsets(settings, "resize", FILES)
    uploaded = uploaded_events(files, ids)
    below = {f for f, s in uploaded.items() if s.offset < committed[s.partition]}
    # Everything committed was processed (nothing dropped), and everything processed was committed
    # (in-flight work finished and its offsets were committed before exit).
    assert below == done
    assert done and done != ids, "the SIGTERM came too late to leave work undone"
    start_worker("resize")
    await_processed(files, ids)


def test_storage_outage_is_retried_without_dead_letters(
    settings: Settings, store: ObjectStore, stack: DevStack, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files, dlq = watch(FILES), watch(DEAD_LETTER_QUEUE)
    start_worker("ingest")
    photos = make_photos(photo_dir / "outage", 8, seed=6, sizes=[(2000, 1500)])
    ids = {r.file_id for r in upload_files(store, photos, shoot_id)}
    files.until(lambda seen: len(events_of(seen, FILE_UPLOADED, ids)) == len(ids), 60)

    stack.s3.stop()
    try:
        worker = start_worker("resize")
        worker.wait_for_line(r"retrying .*StorageOutage", 60)  # a StorageUnavailable: no answer at all
    finally:
        stack.up()  # only the stopped S3 server starts again
    await_processed(files, ids)
    dlq.poll(1.0)
    assert not [d for d in dead_letters(dlq) if d.key and d.key.decode() in ids]


def test_a_second_worker_joining_mid_batch_takes_partitions_and_nothing_is_lost(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files, dlq = watch(FILES), watch(DEAD_LETTER_QUEUE)
    start_worker("ingest")
    photos = make_photos(photo_dir / "scale", 24, seed=7, sizes=[(4000, 3000)])
    ids = {r.file_id for r in upload_files(store, photos, shoot_id)}
    first = start_worker("resize")
    files.until(lambda seen: len(events_of(seen, FILE_PROCESSED, ids)) >= 2, 120)

    second = start_worker("resize")
    # Cooperative rebalancing: the first worker drains and commits what it gives up, the second takes it.
    second.wait_for_line(r"assigned \[\(", 60)
    first.wait_for_line(r"revoked \[\(.*\(drained and committed\)", 60)
    await_processed(files, ids)
    group_caught_up(settings, "resize", FILES)
    for file_id in ids:
        events = [s.envelope() for s in events_of(files.seen, FILE_PROCESSED, {file_id})]
        assert len({e.event_id for e in events}) == 1
        assert store.exists(rendition_key(shoot_id, file_id, "web", "jpg", version(files, file_id)))
    dlq.poll(0.5)
    assert not [d for d in dead_letters(dlq) if d.key and d.key.decode() in ids]
    assert not any("drain timed out" in line for line in first.lines)
