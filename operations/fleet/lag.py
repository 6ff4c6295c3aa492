"""Consumer lag and progress of a stage's consumer group, read from Kafka (as KEDA's Kafka scaler does).

Lag of a partition = its end offset (read_committed) - the group's committed offset; a partition
without a committed offset counts from its earliest offset (workers start there:
`auto.offset.reset=earliest`). Read with a plain consumer of the group that never subscribes (so it
never joins the group): its `committed()` and `get_watermark_offsets()` are the calls the workers
themselves rely on. (AdminClient's group APIs crashed the process on a broker still loading its
coordinator, in confluent-kafka 2.16.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.bounded import close_quietly

TP = tuple[str, int]


@dataclass(frozen=True)
class GroupLag:
    """What one probe saw of a group."""

    group: str
    at: float  # time.monotonic() of the probe
    lag: dict[TP, int] = field(default_factory=dict)  # per partition: end (read_committed) - position
    position: int = 0  # sum over partitions of the committed offset (earliest when none): progress
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.lag.values())

    @property
    def partitions(self) -> int:
        return len(self.lag)


class LagProbe:
    """Reads groups' lag through one consumer per group (kept open between probes)."""

    def __init__(self, consumer_factory: Callable[[str], Any], topics: dict[str, tuple[str, ...]],
                 timeout_s: float = 5.0) -> None:
        self._new_consumer = consumer_factory  # group id -> a confluent_kafka.Consumer of that group
        self._topics = topics  # group id -> topics its stage reads
        self._timeout_s = timeout_s
        self._consumers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def group_lag(self, group: str) -> GroupLag:
        """The group's lag now; on a broker error, a GroupLag with `error` set and no partitions."""
        now = time.monotonic()
        with self._lock:
            try:
                return self._probe(group, now)
            except (KafkaException, RuntimeError) as exc:
                return GroupLag(group, now, error=str(exc))

    def _probe(self, group: str, now: float) -> GroupLag:
        consumer = self._consumers.get(group)
        if consumer is None:
            consumer = self._consumers[group] = self._new_consumer(group)
        consumer.poll(0)  # never subscribed, so nothing to read: serves its log and error callbacks
        topics = self._topics.get(group, ())
        metadata = consumer.list_topics(timeout=self._timeout_s)
        partitions = [TopicPartition(t, p) for t in topics if t in metadata.topics for p in metadata.topics[t].partitions]
        if not partitions:
            return GroupLag(group, now)
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=self._timeout_s)}
        lag: dict[TP, int] = {}
        position = 0
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=self._timeout_s)
            pos = committed.get((tp.topic, tp.partition), -1)
            if pos < 0:
                pos = low
            position += pos
            lag[(tp.topic, tp.partition)] = max(0, high - pos)
        return GroupLag(group, now, lag, position)

    def close(self) -> None:
        with self._lock:
            for consumer in self._consumers.values():
                close_quietly(consumer, self._timeout_s)
            self._consumers.clear()


def consumer_factory(config: Callable[[str], dict[str, Any]]) -> Callable[[str], Consumer]:
    """Consumers of a group that never subscribe: they read offsets without joining the group."""
    return lambda group: Consumer(config(group))


def rate(before: GroupLag | None, after: GroupLag) -> float | None:
    """Messages per second the group committed between two probes (None without two good probes)."""
    if before is None or before.error or after.error or after.at <= before.at:
        return None
    return max(0.0, (after.position - before.position) / (after.at - before.at))
