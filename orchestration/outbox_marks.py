"""An outbox relay's high-water mark as a record on the compacted topic `outbox.marks`.

The relay writes `key = relay id, value = {"next": N}` in the same Kafka transaction as the outbox
rows below N, so the mark is committed exactly when those rows are. This replaces committing the
mark as a consumer-group offset with `send_offsets_to_transaction`, which can block forever when
the group coordinator goes away (librdkafka issues 5456 and 5511); a plain produce cannot. It is
the pattern of Kafka Streams' exactly-once changelogs: a compacted topic written in transactions,
restored `read_committed` to the end.

Reading it back (`read_mark`), after `init_transactions` has fenced every earlier producer of the
relay id (so none of our transactions is open any more):
1. the partition's end offset is taken `read_uncommitted` (the high watermark: our last mark is
   below it; `read_committed` would give the last stable offset, which another relay's open
   transaction can hold below our committed mark);
2. the partition is read `read_committed` from the beginning until the position passes that end:
   aborted marks are never seen, and the last one of our key wins (compaction keeps at least it).
Another relay's open transaction can hold the read back until it ends (at most its transaction
timeout), so the read is bounded and raises TransientError past its deadline.
"""

from __future__ import annotations

import json
import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.bounded import close_quietly
from pipeline.contracts.topics import OUTBOX_MARKS, SHOOTS
from pipeline.errors import TransientError
from pipeline.kafka_config import consumer_config
from pipeline.settings import Settings
from pipeline.topics import TopicNames

log = logging.getLogger(__name__)

MARK_PARTITION = 0
# Where relays before the mark topic committed their mark, as the offset of their group on shoots[0].
LEGACY_MARK_PARTITION = (SHOOTS, 0)
_COORDINATOR_MOVING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                 KafkaError.COORDINATOR_NOT_AVAILABLE})


def mark_record(ident: str, next_seq: int) -> tuple[bytes, bytes]:
    """Key and value of the mark record saying: every outbox row below `next_seq` is published."""
    return ident.encode(), json.dumps({"next": next_seq}, separators=(",", ":")).encode()


def parse_mark(value: bytes | None) -> int | None:
    """The `next` of a mark record's value; None for a tombstone (a deleted relay id)."""
    if value is None:
        return None
    data = json.loads(value)
    next_seq = data.get("next") if isinstance(data, dict) else None
    if not isinstance(next_seq, int) or next_seq < 0:
        raise ValueError(f"not an outbox mark: {value[:80]!r}")
    return next_seq


def read_mark(settings: Settings, ident: str, timeout_s: float) -> int | None:
    """The last committed mark of relay `ident`, or None if it never wrote one (see the module docstring)."""
    topic = TopicNames(settings.topics.prefix)(OUTBOX_MARKS)
    tp = TopicPartition(topic, MARK_PARTITION)
    base = consumer_config(settings, ident)
    deadline = time.monotonic() + timeout_s
    probe = Consumer({**base, "isolation.level": "read_uncommitted"})
    try:
        low, end = probe.get_watermark_offsets(tp, timeout=timeout_s)
    finally:
        close_quietly(probe, 5.0)
    if end <= low:
        return None
    key = ident.encode()
    mark: int | None = None
    reader = Consumer(base)
    try:
        reader.assign([TopicPartition(topic, MARK_PARTITION, OFFSET_BEGINNING)])
        while True:
            for msg in reader.consume(500, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaException(err)
                    continue
                if msg.key() == key:
                    mark = parse_mark(msg.value())
            [position] = reader.position([tp])
            # The position passes transaction markers too, so it reaches `end` even when the last
            # record before it is a marker nobody receives.
            if position.offset >= end:
                return mark
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{ident}: outbox mark not read back within {timeout_s:g}s (at offset {position.offset} of {end} "
                    f"in {topic}): is the broker up, or is another relay's transaction stuck open?"
                )
    finally:
        close_quietly(reader, 5.0)


def read_legacy_mark(settings: Settings, ident: str, timeout_s: float) -> int:
    """The mark as relays before `outbox.marks` committed it: their group's offset on shoots[0] (0 if none).

    Read once, by a relay that finds no mark record (migration); its first transaction then writes one.
    """
    consumer = Consumer(consumer_config(settings, ident))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                legacy = TopicPartition(TopicNames(settings.topics.prefix)(LEGACY_MARK_PARTITION[0]), LEGACY_MARK_PARTITION[1])
                [committed] = consumer.committed([legacy],
                                                 timeout=max(1.0, deadline - time.monotonic()))
                return max(committed.offset, 0)
            except KafkaException as exc:
                # E.g. NOT_COORDINATOR while a broker that just started loads its group metadata.
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                again = err is not None and (err.retriable() or err.code() in _COORDINATOR_MOVING)
                if not again or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the coordinator is moving or loading: back off a little
    finally:
        close_quietly(consumer, 5.0)
