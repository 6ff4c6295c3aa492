"""Operating the fleet on the real stack: replay a stopped group, inspect and redrive dead letters."""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from confluent_kafka.admin import AdminClient

from operations.samples import sample_jpeg
from pipeline.cli import main
from pipeline.contracts.events import FILE_PROCESSED, FILE_UPLOADED
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES
from pipeline.dlq_tools import H_REDRIVE_FROM, is_marker
from pipeline.kafka_config import admin_config, producer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.replay import committed_offsets, live_members
from pipeline.settings import Settings
from pipeline.watch import Seen
from stages.ingest.stage import uploaded_event
from storage import ObjectStore
from storage.keys import original_key
from storage.upload import upload_files
from tests.integration.conftest import make_photos
from tests.integration.helpers import await_processed, events_of, group_caught_up

pytestmark = pytest.mark.integration


def darkroom(args: Sequence[str]) -> Result:
    """`darkroom ARGS` in this process (settings from the session's DARKROOM_* environment)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def wait_group_empty(settings: Settings, group: str, timeout_s: float = 30.0) -> None:
    admin = AdminClient(admin_config(settings))
    deadline = time.monotonic() + timeout_s
    while live_members(admin, group):
        assert time.monotonic() < deadline, f"{group} still has members after {timeout_s:.0f} s"
        time.sleep(0.5)  # the coordinator has no event to await for a member leaving


def committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic`, read with the admin API."""
    admin = AdminClient(admin_config(settings))
    partitions = list(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    return committed_offsets(admin, group, topic, partitions, 10.0)


def test_replaying_a_stopped_group_to_earliest_reprocesses_with_the_same_event_ids(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    files = watch(FILES)
    start_worker("ingest")
    resize = start_worker("resize")
    photos = make_photos(photo_dir / "replay", 10, seed=61, sizes=[(900, 600), (600, 900)])
    ids = {r.file_id for r in upload_files(store, photos, shoot_id)}
    first = {f: seen[0].envelope() for f, seen in await_processed(files, ids).items()}
    group_caught_up(settings, "resize", FILES)
    written = {f: store.head(e.data["key"]).last_modified for f, e in first.items()}

    refused = CliRunner().invoke(main, ["replay", "--group", "darkroom.resize", "--topic", FILES, "--to-earliest"])
    assert refused.exit_code != 0 and "live member" in refused.output, refused.output

    resize.signal(signal.SIGTERM)
    assert resize.wait() == 0
    wait_group_empty(settings, "darkroom.resize")
    time.sleep(1.1)  # S3 Last-Modified has one-second resolution: let the overwrite be visible
    before = committed(settings, "darkroom.resize", FILES)
    planned = darkroom(["replay", "--group", "darkroom.resize", "--topic", FILES, "--to-earliest"])
    assert planned.exit_code == 0 and "dry run" in planned.output, planned.output
    assert committed(settings, "darkroom.resize", FILES) == before, "replay without --execute moved offsets"
    moved = darkroom(["replay", "--group", "darkroom.resize", "--topic", FILES, "--to-earliest", "--execute"])
    assert moved.exit_code == 0, moved.output
    assert committed(settings, "darkroom.resize", FILES) != before
    assert "moved darkroom.resize" in moved.output

    start_worker("resize")

    def twice(seen: list[Seen]) -> bool:
        processed = events_of(seen, FILE_PROCESSED, ids)
        return all(sum(1 for s in processed if s.key.decode() == f) >= 2 for f in ids)

    files.until(twice, 180)
    group_caught_up(settings, "resize", FILES, timeout_s=180)
    for seen in events_of(files.seen, FILE_PROCESSED, ids):
        again = seen.envelope()
        before = first[seen.key.decode()]
        # Deterministic ids and keys: the redo is recognisable as the same event and overwrites the same object.
        assert (again.event_id, again.data["key"]) == (before.event_id, before.data["key"])
    for f, e in first.items():
        assert store.head(e.data["key"]).last_modified > written[f], f"{f}: rendition not rewritten"


def test_a_dead_letter_whose_cause_was_fixed_is_redriven_once_and_processed(
    settings: Settings, store: ObjectStore, start_worker, watch, shoot_id: str
) -> None:
    files, dlq = watch(FILES), watch(DEAD_LETTER_QUEUE)
    start_worker("resize")  # no ingest: the only file.uploaded events are the ones this test sends
    photo = sample_jpeg(800, 600, 91_000)
    key = original_key(shoot_id, f"late-{hashlib.sha256(photo).hexdigest()[:10]}", "jpg")
    etag = hashlib.md5(photo).hexdigest()  # noqa: S324 - what S3 computes for a single PUT
    file_id, uploaded = uploaded_event(store.bucket, key, len(photo), etag, "test")
    publisher = Publisher(producer_config(settings))
    try:
        publisher.publish_all([Outgoing.event(FILES, file_id, uploaded)])
    finally:
        publisher.close()

    seen = dlq.until(lambda seen: any(s.key == file_id.encode() for s in seen), 60)
    letter = next(s for s in seen if s.key == file_id.encode())
    assert not is_marker(list(letter.headers.items()))
    letter_id = f"{letter.partition}:{letter.offset}"

    listed = darkroom(["dlq", "list", "--stage", "resize", "--error-class", "PermanentError"])
    assert listed.exit_code == 0, listed.output
    [line] = [ln for ln in listed.output.splitlines() if ln.startswith(letter_id + " ")]
    assert "pending" in line and "no longer exists" in line
    shown = darkroom(["dlq", "show", letter_id])
    assert shown.exit_code == 0 and key in shown.output and "file.uploaded" in shown.output, shown.output

    store.put(key, photo, content_type="image/jpeg")  # the fix: the original is there now
    redriven = darkroom(["dlq", "redrive", "--id", letter_id])
    assert redriven.exit_code == 0, redriven.output
    assert f"redrove {letter_id} -> {FILES}:" in redriven.output

    files.until(lambda seen: bool(events_of(seen, FILE_PROCESSED, {file_id})), 60)
    [processed] = events_of(files.seen, FILE_PROCESSED, {file_id})
    assert processed.envelope().causation_id == uploaded.event_id  # the original event, byte for byte
    assert store.exists(processed.envelope().data["key"])
    [resent] = [s for s in events_of(files.seen, FILE_UPLOADED, {file_id}) if H_REDRIVE_FROM in s.headers]
    assert resent.headers[H_REDRIVE_FROM] == f"{DEAD_LETTER_QUEUE}:{letter_id}".encode()
    assert not [h for h in resent.headers if h.startswith("dlq.")]
    assert resent.value == letter.value

    again = darkroom(["dlq", "redrive", "--id", letter_id])
    assert again.exit_code == 0 and "already redriven" in again.output and "0 letter(s) redriven" in again.output
    assert darkroom(["dlq", "redrive", "--stage", "resize", "--dry-run"]).output.count(letter_id) == 0
    files.poll(1.0)
    assert len(events_of(files.seen, FILE_UPLOADED, {file_id})) == 2  # the original and one redrive, no more
    listed = darkroom(["dlq", "list", "--all", "--stage", "resize"])
    assert [ln for ln in listed.output.splitlines() if ln.startswith(letter_id + " ") and "redriven" in ln]
