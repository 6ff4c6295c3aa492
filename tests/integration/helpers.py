"""Awaiting outcomes on the real broker: processed events, dead letters, consumer-group progress."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from orchestration.mailbox import Mailbox, ReceivedMail
from pipeline.contracts.events import FILE_PROCESSED, FILE_UPLOADED
from pipeline.dead_letter import DeadLetter
from pipeline.kafka_config import consumer_config
from pipeline.settings import Settings
from pipeline.watch import Seen, TopicWatcher
from pipeline.worker import group_id


def events_of(seen: list[Seen], event_type: str, file_ids: set[str]) -> list[Seen]:
    """Messages of `event_type` keyed by one of `file_ids`."""
    return [s for s in seen if s.event_type == event_type and s.key is not None and s.key.decode() in file_ids]


def await_processed(files: TopicWatcher, file_ids: set[str], timeout_s: float = 120.0) -> dict[str, list[Seen]]:
    """Wait until every file id has a `file.processed`; returns them by file id."""
    files.until(lambda seen: {s.key.decode() for s in events_of(seen, FILE_PROCESSED, file_ids)} >= file_ids, timeout_s)
    by_id: dict[str, list[Seen]] = {f: [] for f in file_ids}
    for s in events_of(files.seen, FILE_PROCESSED, file_ids):
        by_id[s.key.decode()].append(s)
    return by_id


def uploaded_events(files: TopicWatcher, file_ids: set[str]) -> dict[str, Seen]:
    """The first `file.uploaded` seen for each file id."""
    out: dict[str, Seen] = {}
    for s in events_of(files.seen, FILE_UPLOADED, file_ids):
        out.setdefault(s.key.decode(), s)
    return out


def dead_letters(dlq: TopicWatcher) -> list[DeadLetter]:
    return [DeadLetter.from_message(s.key, s.value, list(s.headers.items())) for s in dlq.seen]


def group_caught_up(settings: Settings, stage: str, topic: str, timeout_s: float = 60.0) -> dict[int, int]:
    """Wait until the stage's group has committed up to the end of every partition of `topic`."""
    consumer = Consumer(consumer_config(settings, group_id(stage)))
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)}
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
            if all(ends[p] == 0 or committed[p] >= ends[p] for p in partitions):
                return committed
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group_id(stage)} not caught up on {topic}: committed={committed} ends={ends}")
            time.sleep(0.2)  # polling the coordinator: there is no event to await for a commit
    finally:
        consumer.close()


def committed_offsets(settings: Settings, stage: str, topic: str) -> dict[int, int]:
    """The stage group's committed offset per partition (-1001 when none)."""
    consumer = Consumer(consumer_config(settings, group_id(stage)))
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        return {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)}
    finally:
        consumer.close()


def expected_size(width: int, height: int, long_edge: int = 2048) -> tuple[int, int]:
    """The web rendition's size: fit inside long_edge², never enlarged."""
    scale = min(1.0, long_edge / max(width, height))
    return round(width * scale), round(height * scale)


def mailbox() -> Mailbox:
    """Mailpit of the session's dev stack: the one way tests read delivered mail."""
    return Mailbox.of(Settings())


def mails_to(address: str, containing: str = "") -> list[tuple[ReceivedMail, str]]:
    """Deliveries to `address` whose body contains `containing`, with their body text."""
    box = mailbox()
    found = [(m, box.text(m.id)) for m in box.messages() if address in m.to]
    return [(m, text) for m, text in found if containing in text or containing in m.subject]


def deliveries(message_id: str) -> int:
    """How many times Mailpit received a mail with this Message-ID."""
    return len(mailbox().deliveries(message_id))
