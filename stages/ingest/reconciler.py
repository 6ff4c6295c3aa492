"""The reconciler: what the store holds that `files` never heard of gets announced now.

Object-store notifications are fire-and-forget (versitygw sends them without retry; AWS S3 cannot
send them to Kafka at all), so a lost notification must not mean a lost photo, a lost new version
of one, or a deleted photo that stays in its gallery. The reconciler reads, per key, the last
`file.uploaded` or `file.deleted` on `files` (filtered on the `eventType` header before a body is
parsed), lists the originals, and publishes `file.uploaded` for every original whose current ETag
was not the last one announced, and `file.deleted` for every file last announced as uploaded that
is no longer in the store. A notification that was only late makes a second event for the same
version or deletion, which changes nothing downstream: the same rendition keys are overwritten,
and the gallery keeps state.

Two kinds of pass:
- full (`since=None`): every original under `originals/shoots/`, against all of `files`; only a
  full pass sees every original, so only a full pass announces deletions;
- incremental (`since=T`): only the shoots that had an upload or a deletion on `files`, or were
  created (`shoot.created` on `shoots`), since T are listed, by prefix `originals/shoots/{shoot}/`,
  and only their originals modified since T are checked, against the part of `files` written since
  T. A `file.uploaded` is always produced after its object was written, so that part is enough.

Every read of Kafka ends at the partitions' current end and raises Unavailable when nothing
arrives for its timeout, so a pass never hangs on a broker that went away.
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

from pipeline.contracts.events import FILE_DELETED, FILE_UPLOADED, SHOOT_CREATED
from pipeline.contracts.topics import FILES, SHOOTS
from pipeline.envelope import H_EVENT_TYPE, headers_dict
from pipeline.errors import Unavailable
from pipeline.kafka_config import consumer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from stages.ingest.stage import deleted_event, uploaded_event
from storage.keys import ORIGINALS_PREFIX, InvalidKey, originals_prefix
from storage.port import ObjectStore

log = logging.getLogger(__name__)

_UPLOADED = FILE_UPLOADED.encode()
_CREATED = SHOOT_CREATED.encode()
_ANNOUNCING = frozenset({_UPLOADED, FILE_DELETED.encode()})


class Interrupted(Exception):
    """The pass was asked to stop (worker shutdown); nothing was published for it."""


@dataclass
class ReconcileReport:
    """What one reconciliation pass found."""

    listed: int = 0
    already_known: int = 0
    too_recent: int = 0
    emitted: list[str] = field(default_factory=list)  # file ids given a file.uploaded
    deleted: list[str] = field(default_factory=list)  # file ids given a file.deleted
    invalid_keys: list[str] = field(default_factory=list)
    full: bool = True
    prefixes: int = 1  # prefixes listed (one LIST call per 1,000 objects under each)
    older: int = 0  # listed, but modified before `since`: covered by an earlier pass
    recent_shoots: set[str] = field(default_factory=set)  # shoots of the too-recent ones: look again next pass


@dataclass(frozen=True)
class Announced:
    """The last word of `files` on one original: its file id, and its ETag (None: deleted)."""

    file_id: str
    etag: str | None


@dataclass
class Activity:
    """What `files` and `shoots` recorded since a time: the last word per key, and the shoots touched."""

    announced: dict[str, Announced] = field(default_factory=dict)
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


class _LastWord:
    """Per key, the last `file.uploaded` / `file.deleted` read (partition order is per-file order:
    `files` is keyed by file id, so the last one read is the last word)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.last: dict[str, Announced] = {}
        self._keys: dict[str, str] = {}  # file id -> key, for deletions that do not name their key

    def read(self, msg: Any) -> str | None:
        """Remember one message of `files`; the shoot it names, if it is an upload or a deletion."""
        event_type = headers_dict(msg.headers()).get(H_EVENT_TYPE)
        if event_type not in _ANNOUNCING or not msg.value():
            return None
        try:
            data = json.loads(msg.value())["data"]
            file_id = str(data["fileId"])
            if event_type == _UPLOADED:
                if data["bucket"] == self.bucket:
                    self._keys[file_id] = str(data["key"])
                    self.last[self._keys[file_id]] = Announced(file_id, str(data["etag"]))
            elif (key := data.get("key") or self._keys.get(file_id)) is not None:
                self.last[key] = Announced(file_id, None)
            return str(data["shootId"])
        except (ValueError, KeyError, TypeError):
            return None  # not an envelope: ingest never wrote it, and its consumers dead-letter it


def _non_empty(consumer: Consumer, topic: str, timeout_s: float) -> list[tuple[int, int, int]]:
    """(partition, low, high) of the partitions of `topic` that hold messages."""
    out = []
    for p in consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
        if high > low:
            out.append((p, low, high))
    return out


def announced(
    settings: Settings, bucket: str, timeout_s: float = 30.0, stop: threading.Event | None = None,
) -> dict[str, Announced]:
    """Per key of `bucket`, the last `file.uploaded` / `file.deleted`, read from the start to the current end.

    By key, not file id: the file ids of events published before issue 11 were the name alone.
    """
    files = TopicNames(settings.topics.prefix)(FILES)
    words = _LastWord(bucket)

    def starts(consumer: Consumer) -> list[TopicPartition]:
        return [TopicPartition(files, p, OFFSET_BEGINNING) for p, _low, _high in _non_empty(consumer, files, timeout_s)]

    _read_to_end(settings, starts, words.read, stop, timeout_s)
    return words.last


def recent_activity(
    settings: Settings, bucket: str, since: datetime, timeout_s: float = 30.0, stop: threading.Event | None = None,
) -> Activity:
    """The last word per key on `files` since `since` (by message timestamp), and the shoots touched:
    by an upload or a deletion on `files`, or created on `shoots`. Only the window's bodies are parsed."""
    names = TopicNames(settings.topics.prefix)
    files, shoots = names(FILES), names(SHOOTS)
    words = _LastWord(bucket)
    activity = Activity(announced=words.last)
    since_ms = int(since.timestamp() * 1000)

    def starts(consumer: Consumer) -> list[TopicPartition]:
        wanted = [TopicPartition(t, p, since_ms) for t in (files, shoots) for p, _l, _h in _non_empty(consumer, t, timeout_s)]
        if not wanted:
            return []
        # offset -1: nothing at or after `since` in that partition.
        return [tp for tp in consumer.offsets_for_times(wanted, timeout=timeout_s) if tp.offset >= 0]

    def on_message(msg: Any) -> None:
        if msg.topic() == shoots:
            if headers_dict(msg.headers()).get(H_EVENT_TYPE) == _CREATED and msg.key():
                activity.shoots.add(msg.key().decode(errors="replace"))
            return
        shoot = words.read(msg)
        if shoot is not None:
            activity.shoots.add(shoot)

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
    """Announce originals older than `grace_s` whose current version was never announced, and (in a
    full pass) deletions; a full pass unless `since`.

    An incremental pass also lists `also_shoots` (e.g. the `recent_shoots` of the previous pass,
    whose too-recent originals may have lost their notification). The grace period leaves time for
    the notification path to do its job first. `stop` interrupts a long pass (raises Interrupted)
    before anything is published.
    """
    report = ReconcileReport(full=since is None)
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=grace_s)
    if since is None:
        last = announced(settings, store.bucket, stop=stop)
        prefixes = [ORIGINALS_PREFIX]
    else:
        activity = recent_activity(settings, store.bucket, since, stop=stop)
        last = activity.announced
        prefixes = _prefixes({*activity.shoots, *also_shoots})
    report.prefixes = len(prefixes)
    missing: list[Outgoing] = []
    present: set[str] = set()
    for prefix in prefixes:
        for info in store.list(prefix):
            report.listed += 1
            if stop is not None and report.listed % 1000 == 0 and stop.is_set():
                raise Interrupted("reconcile pass interrupted: the worker is stopping")
            present.add(info.key)
            if since is not None and info.last_modified <= since:
                report.older += 1
                continue
            try:
                file_id, envelope = uploaded_event(store.bucket, info.key, info.size, info.etag, settings.producer_name,
                                                   info.last_modified, f"reconciled|{info.last_modified.isoformat()}")
            except InvalidKey:
                report.invalid_keys.append(info.key)
                continue
            seen = last.get(info.key)
            if seen is not None and seen.etag == info.etag.strip('"'):
                report.already_known += 1
            elif info.last_modified > cutoff:
                report.too_recent += 1
                report.recent_shoots.add(info.key[len(ORIGINALS_PREFIX):].split("/", 1)[0])
            else:
                missing.append(Outgoing.event(FILES, file_id, envelope))
                report.emitted.append(file_id)
    # Only a full pass has listed every original: only it may call a missing one deleted.
    for key, seen in sorted(last.items()) if since is None else ():
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
