"""Ingest on the real stack: hostile keys dead-lettered, lost notifications recovered by the reconciler."""

from __future__ import annotations

import uuid

import pytest

from pipeline.contracts.events import FILE_UPLOADED
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES, STORAGE_EVENTS
from pipeline.dead_letter import DeadLetter
from pipeline.kafka_config import producer_config
from pipeline.publisher import Publisher
from pipeline.settings import Settings
from stages.ingest.reconciler import reconcile
from storage import ObjectStore, file_id_of, open_store
from tests.integration.helpers import events_of

pytestmark = pytest.mark.integration


def test_an_upload_with_an_untrusted_key_is_dead_lettered_by_ingest(
    store: ObjectStore, start_worker, watch, shoot_id: str
) -> None:
    dlq, files = watch(DEAD_LETTER_QUEUE), watch(FILES)
    start_worker("ingest")
    # An ANSI escape sequence in a name (it would recolour a terminal listing the gallery).
    hostile = f"originals/shoots/{shoot_id}/evil\x1b[31mname.jpg"
    fine = f"originals/shoots/{shoot_id}/rm -rf $HOME! (fine, just odd).jpg"
    store.put(hostile, b"\xff\xd8\xff", content_type="image/jpeg")
    store.put(fine, b"\xff\xd8\xff", content_type="image/jpeg")

    seen = dlq.until(lambda s: any(repr(hostile) in DeadLetter.from_message(m.key, m.value, list(m.headers.items())).error_message
                                   for m in s), 60)
    letter = next(d for d in (DeadLetter.from_message(m.key, m.value, list(m.headers.items())) for m in seen)
                  if repr(hostile) in d.error_message)
    assert letter.stage == "ingest" and letter.topic == STORAGE_EVENTS and letter.error_kind == "permanent"
    assert "untrusted key" in letter.error_message and "control character U+001B" in letter.error_message
    # The next upload is ingested all the same.
    files.until(lambda s: bool(events_of(s, FILE_UPLOADED, {file_id_of(fine)})), 60)


def test_the_reconciler_emits_file_uploaded_for_originals_whose_notification_was_lost(
    settings: Settings, watch, shoot_id: str
) -> None:
    # Notifications of another bucket are ignored by ingest: for this bucket, every notification is "lost".
    lost = settings.model_copy(update={"storage": settings.storage.model_copy(update={"bucket": f"lost-{uuid.uuid4().hex[:8]}"})})
    store = open_store(lost.storage)
    store.ensure_bucket()
    files = watch(FILES)
    keys = [f"originals/shoots/{shoot_id}/orphan {n}.jpg" for n in (1, 2)]
    orphans = {file_id_of(k) for k in keys}
    for key in keys:
        store.put(key, b"\xff\xd8\xff", content_type="image/jpeg")

    publisher = Publisher(producer_config(lost))
    try:
        first = reconcile(store, publisher, lost, grace_s=0)
        assert set(first.emitted) == orphans and len(first.emitted) == 2
        found = files.until(lambda s: len(events_of(s, FILE_UPLOADED, orphans)) == 2, 30)
        envelope = events_of(found, FILE_UPLOADED, {file_id_of(keys[0])})[0].envelope()
        assert envelope.data["bucket"] == lost.storage.bucket and envelope.data["shootId"] == shoot_id
        assert envelope.data["name"] == "orphan 1.jpg"
        # A second pass sees them on the topic and emits nothing.
        second = reconcile(store, publisher, lost, grace_s=0)
        assert second.emitted == [] and second.already_known == 2
        # A new version whose notification was lost is found: same file, another event.
        store.put(keys[0], b"\xff\xd8\xff\xe0", content_type="image/jpeg")
        third = reconcile(store, publisher, lost, grace_s=0)
        assert third.emitted == [file_id_of(keys[0])] and third.already_known == 1
        # A deletion whose notification was lost is announced too, once.
        store.delete(keys[1])
        fourth = reconcile(store, publisher, lost, grace_s=0)
        assert fourth.deleted == [file_id_of(keys[1])] and fourth.emitted == []
        deleted = files.until(lambda s: bool(events_of(s, "file.deleted", {file_id_of(keys[1])})), 30)
        assert events_of(deleted, "file.deleted", {file_id_of(keys[1])})[0].envelope().data["key"] == keys[1]
        assert reconcile(store, publisher, lost, grace_s=0).deleted == []
        # Younger than the grace period: left to the notification path.
        store.put(f"originals/shoots/{shoot_id}/orphan-3.jpg", b"\xff\xd8\xff", content_type="image/jpeg")
        assert reconcile(store, publisher, lost, grace_s=3600).too_recent == 1
    finally:
        publisher.close()
