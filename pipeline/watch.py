"""Watching a topic from "now" on: for the demo, the CLI and tests that await events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from pipeline.envelope import H_EVENT_TYPE, Envelope, headers_dict
from pipeline.kafka_config import consumer_config
from pipeline.settings import Settings
from pipeline.topics import TopicNames


@dataclass(frozen=True)
class Seen:
    """One message seen on the watched topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def event_type(self) -> str | None:
        raw = self.headers.get(H_EVENT_TYPE)
        return raw.decode() if raw is not None else None

    def envelope(self) -> Envelope:
        """The message body as an envelope."""
        return Envelope.from_bytes(self.value or b"")


class TopicWatcher:
    """Reads a topic from its end at construction time (or from the start), outside any consumer group."""

    def __init__(self, settings: Settings, topic: str, from_start: bool = False, timeout_s: float = 30.0) -> None:
        self.topic = topic = TopicNames(settings.topics.prefix)(topic)  # logical name in, the cluster's name used
        config = consumer_config(settings, f"darkroom.watch.{uuid.uuid4().hex}")
        self._consumer = Consumer(config)
        partitions = self._consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        assignment = []
        for p in partitions:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            assignment.append(TopicPartition(topic, p, low if from_start else high))
        self._consumer.assign(assignment)
        self.seen: list[Seen] = []

    def poll(self, timeout_s: float = 0.5) -> list[Seen]:
        """Messages that arrived since the last call (waits up to `timeout_s` for the first)."""
        batch = []
        for msg in self._consumer.consume(500, timeout=timeout_s):
            if msg.error():
                continue
            batch.append(Seen(msg.partition(), msg.offset(), msg.key(), msg.value(), headers_dict(msg.headers())))
        self.seen.extend(batch)
        return batch

    def until(self, done: Callable[[list[Seen]], bool], timeout_s: float) -> list[Seen]:
        """Poll until `done(all seen so far)` holds; raises TimeoutError with what was seen otherwise."""
        deadline = time.monotonic() + timeout_s
        while not done(self.seen):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: condition not met after {timeout_s:.0f}s; saw {len(self.seen)} messages")
            self.poll(min(0.5, max(0.01, deadline - time.monotonic())))
        return self.seen

    def close(self) -> None:
        """Leave the topic."""
        self._consumer.close()
