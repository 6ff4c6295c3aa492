"""In-memory stand-ins for the consumer and publisher, for unit tests of the runner's logic only.

Integration tests never use these: they run against the real broker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from pipeline.publisher import Outgoing


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes]] = field(default_factory=list)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)


class FakeConsumer:
    """Serves preloaded messages per partition, honours pause/resume, records commits."""

    def __init__(self, messages: list[FakeMessage]) -> None:
        self._queues: dict[tuple[str, int], list[FakeMessage]] = {}
        for m in messages:
            self._queues.setdefault((m.topic(), m.partition()), []).append(m)
        self.paused: set[tuple[str, int]] = set()
        self.ever_paused: set[tuple[str, int]] = set()
        self.commits: list[dict[tuple[str, int], int]] = []
        self.committed: dict[tuple[str, int], int] = {}
        self.changed = threading.Condition()
        self._callbacks: dict[str, Callable[..., None]] = {}
        self._assigned = False
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self._callbacks = callbacks

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if not self._assigned:
            self._assigned = True
            self._callbacks["on_assign"](self, [TopicPartition(t, p) for t, p in self._queues])
        out: list[FakeMessage] = []
        for tp, queue in self._queues.items():
            while queue and tp not in self.paused and len(out) < num_messages:
                out.append(queue.pop(0))
        if not out:
            with self.changed:
                self.changed.wait(timeout if timeout > 0 else 0.001)
        return out

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        with self.changed:
            snapshot = {(o.topic, o.partition): o.offset for o in offsets}
            self.commits.append(snapshot)
            self.committed.update(snapshot)
            self.changed.notify_all()

    def pause(self, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        with self.changed:
            self.paused |= tps
            self.ever_paused |= tps
            self.changed.notify_all()

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(p.topic, p.partition) for p in partitions}

    def close(self) -> None:
        self.closed = True

    def wait_committed(self, expected: dict[tuple[str, int], int], timeout: float = 10.0) -> bool:
        """Block until every partition in `expected` has committed at least that offset."""
        with self.changed:
            return self.changed.wait_for(
                lambda: all(self.committed.get(tp, -1) >= off for tp, off in expected.items()), timeout
            )


class FakePublisher:
    """Records what would be published, notifying `changed`; can be told to fail."""

    def __init__(self, changed: threading.Condition) -> None:
        self.changed = changed
        self.published: list[Outgoing] = []
        self.fail_next = 0
        self.closed = False

    def produce(self, message: Outgoing, on_done: Callable[[Exception | None], None]) -> None:
        """Acknowledges at once, like a broker would later, on the caller's thread."""
        with self.changed:
            if self.fail_next:
                self.fail_next -= 1
                error: Exception | None = ConnectionError("broker unreachable (fake)")
            else:
                self.published.append(message)
                error = None
            self.changed.notify_all()
        on_done(error)

    def close(self, timeout_s: float = 10.0) -> None:
        self.closed = True
