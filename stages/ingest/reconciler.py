"""The reconciler: what the store holds that `files` never heard of gets announced now.

Object-store notifications are fire-and-forget (versitygw sends them without retry), so a lost
notification must not mean a lost photo, a lost new version of one, or a deleted photo that stays
in its gallery. The reconciler reads, per file, the last `file.uploaded` or `file.deleted` on
`files` (filtered on the `eventType` header before a body is parsed), lists the originals, and
publishes `file.uploaded` for every original whose current ETag was not the last one announced,
and `file.deleted` for every file last announced as uploaded that is no longer in the store.
A notification that was only late makes a second event for the same version or deletion, which
changes nothing downstream: the same rendition keys are overwritten, and the gallery keeps state.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.contracts.events import FILE_DELETED, FILE_UPLOADED
from pipeline.contracts.topics import FILES
from pipeline.envelope import H_EVENT_TYPE, headers_dict
from pipeline.kafka_config import consumer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from stages.ingest.stage import deleted_event, uploaded_event
from storage.keys import ORIGINALS_PREFIX, InvalidKey
from storage.port import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What one reconciliation pass found."""

    listed: int = 0
    already_known: int = 0
    too_recent: int = 0
    emitted: list[str] = field(default_factory=list)  # file ids given a file.uploaded
    deleted: list[str] = field(default_factory=list)  # file ids given a file.deleted
    invalid_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Announced:
    """The last word of `files` on one original: its file id, and its ETag (None: deleted)."""

    file_id: str
    etag: str | None


def announced(settings: Settings, bucket: str, timeout_s: float = 30.0) -> dict[str, Announced]:
    """Per key of `bucket`, the last `file.uploaded` / `file.deleted`, read from the start to the current end.

    By key, not file id: the file ids of events published before issue 11 were the name alone.
    """
    config = consumer_config(settings, f"darkroom.reconciler.{uuid.uuid4().hex}")
    config["enable.partition.eof"] = True
    consumer = Consumer(config)
    wanted = {FILE_UPLOADED.encode(), FILE_DELETED.encode()}
    files = TopicNames(settings.topics.prefix)(FILES)
    try:
        metadata = consumer.list_topics(files, timeout=timeout_s).topics[files]
        ends: dict[int, int] = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(files, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(files, p, OFFSET_BEGINNING) for p in ends])
        last: dict[str, Announced] = {}
        keys: dict[str, str] = {}  # file id -> key, for deletions that do not name their key
        while ends:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error():
                    continue
                event_type = headers_dict(msg.headers()).get(H_EVENT_TYPE)
                if event_type in wanted and msg.value():
                    _remember(last, keys, event_type.decode(), msg.value(), bucket)
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
        return last
    finally:
        consumer.close()


def _remember(last: dict[str, Announced], keys: dict[str, str], event_type: str, value: bytes, bucket: str) -> None:
    # Partition order is per-file order (files are keyed by file id), so the last one read is the last word.
    try:
        data = json.loads(value)["data"]
        file_id = str(data["fileId"])
        if event_type == FILE_UPLOADED:
            if data["bucket"] == bucket:
                keys[file_id] = str(data["key"])
                last[keys[file_id]] = Announced(file_id, str(data["etag"]))
        elif (key := data.get("key") or keys.get(file_id)) in last:
            last[key] = Announced(file_id, None)
    except (ValueError, KeyError, TypeError):
        pass  # not an envelope: ingest never wrote it, and its consumers dead-letter it


def reconcile(store: ObjectStore, publisher: Publisher, settings: Settings, grace_s: float = 60.0) -> ReconcileReport:
    """Announce originals older than `grace_s` whose current version was never announced, and deletions.

    The grace period leaves time for the notification path to do its job first.
    """
    report = ReconcileReport()
    last = announced(settings, store.bucket)
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    missing: list[Outgoing] = []
    present: set[str] = set()
    for info in store.list(ORIGINALS_PREFIX):
        report.listed += 1
        try:
            file_id, envelope = uploaded_event(store.bucket, info.key, info.size, info.etag, settings.producer_name,
                                               info.last_modified, f"reconciled|{info.last_modified.isoformat()}")
        except InvalidKey:
            report.invalid_keys.append(info.key)
            continue
        present.add(info.key)
        seen = last.get(info.key)
        if seen is not None and seen.etag == info.etag.strip('"'):
            report.already_known += 1
        elif info.last_modified > cutoff:
            report.too_recent += 1
        else:
            missing.append(Outgoing.event(FILES, file_id, envelope))
            report.emitted.append(file_id)
    for key, seen in sorted(last.items()):
        if seen.etag is not None and key not in present and key.startswith(ORIGINALS_PREFIX):
            try:
                _, envelope = deleted_event(store.bucket, key, settings.producer_name, None, f"reconciled|{seen.etag}",
                                            file_id=seen.file_id)
            except InvalidKey:
                continue
            missing.append(Outgoing.event(FILES, seen.file_id, envelope))
            report.deleted.append(seen.file_id)
    if missing:
        publisher.publish_all(missing)
    if report.invalid_keys:
        log.warning("reconciler: %d originals have keys we refuse, e.g. %r", len(report.invalid_keys), report.invalid_keys[0])
    return report
