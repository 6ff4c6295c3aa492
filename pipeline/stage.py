"""What a stage is to the runner: which messages it wants, how it processes one, how it judges a failure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from pydantic import BaseModel

from pipeline.envelope import H_EVENT_TYPE, H_TRACEPARENT, headers_dict
from pipeline.errors import ErrorKind, default_classify
from pipeline.progress import Progress
from pipeline.publisher import Outgoing
from pipeline.registry import Event, EventRegistry


@dataclass(frozen=True)
class Received:
    """A message as the runner received it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int

    @cached_property
    def headers_by_name(self) -> dict[str, bytes]:
        """The headers as a dict (the last value of a repeated name wins), built once per message."""
        return headers_dict(self.headers)

    def header(self, name: str) -> str | None:
        """A header as text, or None when absent."""
        value = self.headers_by_name.get(name)
        return value.decode(errors="replace") if value is not None else None


class Stage(Protocol):
    """One consumer group's worth of work. The runner calls `process` on a worker thread."""

    name: str
    topics: Sequence[str]

    def accepts(self, headers: Mapping[str, bytes]) -> bool:
        """Cheap filter on headers, before the body is parsed; rejected messages are skipped and committed."""
        ...

    def process(self, message: Received) -> list[Outgoing]:
        """Do the work and return the events to publish. Side effects must be idempotent (redelivery)."""
        ...

    def classify(self, exc: BaseException) -> ErrorKind:
        """Whether a failure of `process` is worth retrying."""
        ...

    def start(self) -> None:
        """Start background work (e.g. an outbox relay); called once when the runner starts, not at build."""
        ...

    def close(self) -> None:
        """Release what the stage holds (clients, pools)."""
        ...


class EventStage(ABC):
    """A stage that reads envelopes of given event types and hands typed events to `handle`.

    `inline = True` says the stage is cheap (no blocking I/O, no heavy CPU): the runner then runs it on
    its polling thread instead of handing each message to a pool thread and back.
    """

    name: str
    topics: Sequence[str]
    event_types: frozenset[str]
    inline: bool = False

    def __init__(self, registry: EventRegistry) -> None:
        self.registry = registry
        self._wanted = {t.encode() for t in self.event_types}

    def accepts(self, headers: Mapping[str, bytes]) -> bool:
        # A message without the header is accepted so that decoding can dead-letter it with a reason.
        event_type = headers.get(H_EVENT_TYPE)
        return event_type is None or event_type in self._wanted

    def process(self, message: Received) -> list[Outgoing]:
        event = self.registry.decode(message.value)
        if event.envelope.event_type not in self.event_types:
            return []
        return self.handle(event, message.header(H_TRACEPARENT))

    @abstractmethod
    def handle(self, event: Event[BaseModel], traceparent: str | None) -> list[Outgoing]:
        """Process one event; `traceparent` is the trace context to continue in outputs."""

    def classify(self, exc: BaseException) -> ErrorKind:
        return default_classify(exc)

    def start(self) -> None:
        return None

    def watch_progress(self, progress: Progress) -> None:
        """Register background work (e.g. an outbox relay) with the worker's liveness; optional for a stage."""
        return None

    def close(self) -> None:
        return None
