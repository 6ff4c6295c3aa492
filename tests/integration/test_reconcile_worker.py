"""`darkroom worker reconcile` on the real stack: it publishes what notifications lost by itself, one
instance at a time, and a spare takes over when the holder dies."""

from __future__ import annotations

import signal
import uuid

import pytest

from pipeline.contracts.events import FILE_UPLOADED
from pipeline.contracts.topics import FILES
from pipeline.settings import Settings
from stages.ingest import RECONCILE_TICKS
from storage import open_store
from storage.keys import file_id_of
from tests.integration.helpers import events_of

pytestmark = pytest.mark.integration

HOLDS = rf"reconcile: assigned \[\('{RECONCILE_TICKS}', 0\)\]"
EMITTED = r"reconcile: (full|incremental) pass \d+ .* [1-9]\d* emitted"


def test_the_reconcile_worker_publishes_lost_uploads_alone_and_a_spare_takes_over_when_it_dies(
    settings: Settings, start_worker, watch, shoot_id: str
) -> None:
    # Notifications of another bucket are ignored by ingest: for this bucket, every notification is "lost",
    # as on a store that cannot notify Kafka at all.
    bucket = f"lost-{uuid.uuid4().hex[:8]}"
    store = open_store(settings.storage.model_copy(update={"bucket": bucket}))
    store.ensure_bucket()
    env = {"DARKROOM_STORAGE__BUCKET": bucket, "DARKROOM_RECONCILE__INTERVAL_S": "2",
           "DARKROOM_RECONCILE__GRACE_S": "1", "DARKROOM_RECONCILE__FULL_SWEEP_EVERY": "3"}
    files = watch(FILES)
    holder = start_worker("reconcile", **env)
    holder.wait_for_line(HOLDS, 90)
    spare = start_worker("reconcile", **env)
    spare.wait_for_line(r"reconcile: health and metrics on", 90)

    first, second = (f"originals/shoots/{shoot_id}/{name}" for name in ("first-1.jpg", "second-1.jpg"))
    first_id, second_id = file_id_of(first), file_id_of(second)  # what ingest (and so the reconciler) calls them
    store.put(first, b"\xff\xd8\xff", content_type="image/jpeg")
    found = files.until(lambda s: bool(events_of(s, FILE_UPLOADED, {first_id})), 90)
    envelope = events_of(found, FILE_UPLOADED, {first_id})[0].envelope()
    assert envelope.data["bucket"] == bucket and envelope.data["shootId"] == shoot_id
    holder.wait_for_line(EMITTED, 30)
    # One partition: the spare has none, so it ran no pass.
    assert not [line for line in spare.lines if "reconcile: assigned [(" in line or " pass " in line]

    holder.signal(signal.SIGKILL)
    assert holder.wait(30) == -signal.SIGKILL
    store.put(second, b"\xff\xd8\xff\xe0", content_type="image/jpeg")
    spare.wait_for_line(HOLDS, 90)  # after the dead holder's session timeout
    files.until(lambda s: bool(events_of(s, FILE_UPLOADED, {second_id})), 90)
    spare.wait_for_line(EMITTED, 30)
    files.poll(1.0)
    # The pass that found `second-1` saw `first-1` on `files` and emitted nothing more for it.
    assert len({s.envelope().event_id for s in events_of(files.seen, FILE_UPLOADED, {first_id})}) == 1
    # SIGTERM: the ticker stops, a pass in progress is interrupted, the tick is committed or left for the next holder.
    spare.signal(signal.SIGTERM)
    assert spare.wait(60) == 0
