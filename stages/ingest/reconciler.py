"""The reconciler: originals in the bucket that never got a `file.uploaded` get one now.

Object-store notifications are fire-and-forget (versitygw sends them without retry; AWS S3 cannot
send them to Kafka at all), so a lost notification must not mean a lost photo. The reconciler
learns which file ids already have a `file.uploaded` (from the `eventType` header and key alone, no
body parsing), lists the originals, and publishes the missing events with the same deterministic
ids the ingest stage would have used.

Two kinds of pass:
- full (`since=None`): every original under `originals/shoots/`, against all of `files`;
- incremental (`since=T`): only the shoots that had an upload (`file.uploaded` on `files`) or were
  created (`shoot.created` on `shoots`) since T are listed, by prefix `originals/shoots/{shoot}/`,
  and only their originals modified since T are checked, against the part of `files` written since
  T. A `file.uploaded` is always produced after its object was written, so that part is enough.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline.contracts.events import FILE_UPLOADED, SHOOT_CREATED
from pipeline.contracts.topics import FILES, SHOOTS
from pipeline.envelope import H_EVENT_TYPE, headers_dict
from pipeline.errors import Unavailable
from pipeline.kafka_config import consumer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import Settings
from stages.ingest.stage import uploaded_event
from storage.keys import ORIGINALS_PREFIX, InvalidKey, originals_prefix
from storage.port import ObjectStore

log = logging.getLogger(__name__)

_UPLOADED = FILE_UPLOADED.encode()
_CREATED = SHOOT_CREATED.encode()


class Interrupted(Exception):
    """The pass was asked to stop (worker shutdown); nothing was published for it."""


@dataclass
class ReconcileReport:
    """What one reconciliation pass found."""

    listed: int = 0
    already_known: int = 0
    too_recent: int = 0
    emitted: list[str] = field(default_factory=list)
    invalid_keys: list[str] = field(default_factory=list)
    full: bool = True
    prefixes: int = 1  # prefixes listed (one LIST call per 1,000 objects under each)
    older: int = 0  # listed, but modified before `since`: covered by an earlier pass
    recent_shoots: set[str] = field(default_factory=set)  # shoots of the too-recent ones: look again next pass


@dataclass
class Activity:
    """What `files` and `shoots` recorded since a time: file ids uploaded, shoots touched."""

    uploaded: set[str] = field(default_factory=set)
    shoots: set[str] = field(default_factory=set)


def _read_to_end(
    settings: Settings, starts: Callable[[Consumer], list[TopicPartition]], on_message: Callable[[Any], None],
    stop: threading.Event | None, timeout_s: float,
) -> None:
    """Read the partitions `starts` picks from their given offsets up to their current end.

    The end is reached at the partition-EOF event, which also holds on topics written in Kafka
    transactions (their last offset is a commit marker no consumer receives). Raises Unavailable
    when nothing at all arrives for `timeout_s` (the broker went away mid-read), so a pass never hangs.
    """
    config = consumer_config(settings, f"darkroom.reconciler.{uuid.uuid4().hex}")
    config["enable.partition.eof"] = True
    consumer = Consumer(config)
    try:
        assignment = starts(consumer)
        pending = {(tp.topic, tp.partition) for tp in assignment}
        if not pending:
            return
        consumer.assign(assignment)
        last_progress = time.monotonic()
        while pending:
            if stop is not None and stop.is_set():
                raise Interrupted("reconcile pass interrupted: the worker is stopping")
            batch = consumer.consume(500, timeout=1.0)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > timeout_s:
                raise Unavailable(f"reading {sorted(pending)} got nothing from Kafka for {timeout_s:.0f}s")
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard((msg.topic(), msg.partition()))
                    continue
                on_message(msg)
    finally:
        consumer.close()


def _non_empty(consumer: Consumer, topic: str, timeout_s: float) -> list[tuple[int, int, int]]:
    """(partition, low, high) of the partitions of `topic` that hold messages."""
    out = []
    for p in consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
        if high > low:
            out.append((p, low, high))
    return out


def known_uploads(settings: Settings, timeout_s: float = 30.0, stop: threading.Event | None = None) -> set[str]:
    """File ids that have a `file.uploaded` on `files`, read from the start to the current end."""
    seen: set[str] = set()

    def starts(consumer: Consumer) -> list[TopicPartition]:
        return [TopicPartition(FILES, p, OFFSET_BEGINNING) for p, _low, _high in _non_empty(consumer, FILES, timeout_s)]

    def on_message(msg: Any) -> None:
        if headers_dict(msg.headers()).get(H_EVENT_TYPE) == _UPLOADED and msg.key():
            seen.add(msg.key().decode())

    _read_to_end(settings, starts, on_message, stop, timeout_s)
    return seen


def recent_activity(
    settings: Settings, since: datetime, timeout_s: float = 30.0, stop: threading.Event | None = None,
) -> Activity:
    """Uploads on `files` and shoots created on `shoots` since `since` (by message timestamp).

    Only `file.uploaded` bodies are parsed (for their shoot id), and only those of the window.
    """
    activity = Activity()
    since_ms = int(since.timestamp() * 1000)

    def starts(consumer: Consumer) -> list[TopicPartition]:
        wanted = [TopicPartition(t, p, since_ms) for t in (FILES, SHOOTS) for p, _l, _h in _non_empty(consumer, t, timeout_s)]
        if not wanted:
            return []
        # offset -1: nothing at or after `since` in that partition.
        return [tp for tp in consumer.offsets_for_times(wanted, timeout=timeout_s) if tp.offset >= 0]

    def on_message(msg: Any) -> None:
        event_type = headers_dict(msg.headers()).get(H_EVENT_TYPE)
        if msg.topic() == SHOOTS:
            if event_type == _CREATED and msg.key():
                activity.shoots.add(msg.key().decode(errors="replace"))
            return
        if event_type != _UPLOADED or not msg.key():
            return
        activity.uploaded.add(msg.key().decode(errors="replace"))
        try:
            activity.shoots.add(str(json.loads(msg.value())["data"]["shootId"]))
        except (ValueError, KeyError, TypeError):
            pass  # an invalid event: ingest dead-letters those; it names no shoot to look at

    _read_to_end(settings, starts, on_message, stop, timeout_s)
    return activity


def _prefixes(shoots: Iterable[str]) -> list[str]:
    out = []
    for shoot in sorted(shoots):
        try:
            out.append(originals_prefix(shoot))
        except InvalidKey:
            continue  # never a prefix of ours: uploads under it are refused anyway
    return out


def reconcile(
    store: ObjectStore, publisher: Publisher, settings: Settings, grace_s: float = 60.0,
    since: datetime | None = None, now: datetime | None = None, stop: threading.Event | None = None,
    also_shoots: Iterable[str] = (),
) -> ReconcileReport:
    """Publish `file.uploaded` for originals older than `grace_s` that have none; a full pass unless `since`.

    An incremental pass also lists `also_shoots` (e.g. the `recent_shoots` of the previous pass,
    whose too-recent originals may have lost their notification).

    The grace period leaves time for the notification path to do its job first; a duplicate would
    be harmless anyway (same event id, idempotent renditions). `stop` interrupts a long pass
    (raises Interrupted) before anything is published.
    """
    report = ReconcileReport(full=since is None)
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=grace_s)
    if since is None:
        known = known_uploads(settings, stop=stop)
        prefixes = [ORIGINALS_PREFIX]
    else:
        activity = recent_activity(settings, since, stop=stop)
        known = activity.uploaded
        prefixes = _prefixes({*activity.shoots, *also_shoots})
    report.prefixes = len(prefixes)
    missing: list[Outgoing] = []
    for prefix in prefixes:
        for info in store.list(prefix):
            report.listed += 1
            if stop is not None and report.listed % 1000 == 0 and stop.is_set():
                raise Interrupted("reconcile pass interrupted: the worker is stopping")
            if since is not None and info.last_modified <= since:
                report.older += 1
                continue
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
                report.recent_shoots.add(info.key[len(ORIGINALS_PREFIX):].split("/", 1)[0])
            else:
                missing.append(Outgoing.event(FILES, file_id, envelope))
                report.emitted.append(file_id)
    if missing:
        publisher.publish_all(missing)
    if report.invalid_keys:
        log.warning("reconciler: %d originals have keys we refuse, e.g. %r", len(report.invalid_keys), report.invalid_keys[0])
    return report
