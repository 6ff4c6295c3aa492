"""The reconciler: originals in the bucket that never got a `file.uploaded` get one now.

Object-store notifications are fire-and-forget (versitygw sends them without retry), so a lost
notification must not mean a lost photo. The reconciler reads which file ids already have a
`file.uploaded` (from the `eventType` header and key alone, no body parsing), lists the originals,
and publishes the missing events with the same deterministic ids the ingest stage would have used.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.contracts.events import FILE_UPLOADED
from pipeline.contracts.topics import FILES
from pipeline.envelope import H_EVENT_TYPE, headers_dict
from pipeline.kafka_config import consumer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from stages.ingest.stage import uploaded_event
from storage.keys import ORIGINALS_PREFIX, InvalidKey
from storage.port import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What one reconciliation pass found."""

    listed: int = 0
    already_known: int = 0
    too_recent: int = 0
    emitted: list[str] = field(default_factory=list)
    invalid_keys: list[str] = field(default_factory=list)


def known_uploads(settings: Settings, timeout_s: float = 30.0) -> set[str]:
    """File ids that have a `file.uploaded` on `files`, read from the start to the current end."""
    config = consumer_config(settings, f"darkroom.reconciler.{uuid.uuid4().hex}")
    config["enable.partition.eof"] = True
    consumer = Consumer(config)
    files = TopicNames(settings.topics.prefix)(FILES)
    try:
        metadata = consumer.list_topics(files, timeout=timeout_s).topics[files]
        ends: dict[int, int] = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(files, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(files, p, OFFSET_BEGINNING) for p in ends])
        seen: set[str] = set()
        wanted = FILE_UPLOADED.encode()
        while ends:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error():
                    continue
                if headers_dict(msg.headers()).get(H_EVENT_TYPE) == wanted and msg.key():
                    seen.add(msg.key().decode())
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
        return seen
    finally:
        consumer.close()


def reconcile(store: ObjectStore, publisher: Publisher, settings: Settings, grace_s: float = 60.0) -> ReconcileReport:
    """Publish `file.uploaded` for originals older than `grace_s` that have none.

    The grace period leaves time for the notification path to do its job first; a duplicate would
    be harmless anyway (same event id, idempotent renditions).
    """
    report = ReconcileReport()
    known = known_uploads(settings)
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    missing: list[Outgoing] = []
    for info in store.list(ORIGINALS_PREFIX):
        report.listed += 1
        try:
            file_id, envelope = uploaded_event(store.bucket, info.key, info.size, info.etag, settings.producer_name,
                                               info.last_modified)
        except InvalidKey:
            report.invalid_keys.append(info.key)
            continue
        if file_id in known:
            report.already_known += 1
        elif info.last_modified > cutoff:
            report.too_recent += 1
        else:
            missing.append(Outgoing.event(FILES, file_id, envelope))
            report.emitted.append(file_id)
    if missing:
        publisher.publish_all(missing)
    if report.invalid_keys:
        log.warning("reconciler: %d originals have keys we refuse, e.g. %r", len(report.invalid_keys), report.invalid_keys[0])
    return report
