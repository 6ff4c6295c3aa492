"""The OpenTelemetry span around each processing attempt; immutable once built, so worker threads share it lock-free.

Unlike the runner's other helpers it is not polling-thread-only: the span has to be current on the
thread that runs the stage (a pool thread, or the polling thread when `threads` = 0), so that
`child_traceparent()` (pipeline/tracing.py) puts its id into the events the stage publishes. It
keeps no state that changes after `__init__`, which is what makes that safe without a lock.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from opentelemetry.trace import SpanKind, Tracer

from pipeline.stage import Received
from pipeline.tracing import context_from_headers


class AttemptSpans:
    """Opens the span of one processing attempt: a child of the message's trace context."""

    def __init__(self, tracer: Tracer | None, stage_name: str) -> None:
        # No tracer, no spans: the traceparent header still carries the trace on (new span ids, same
        # trace id) at a fraction of the cost; the worker passes one when spans are exported.
        self._tracer = tracer
        self._stage_name = stage_name
        self._process_name = f"{stage_name} process"
        self._dead_letter_name = f"{stage_name} dead-letter"

    def attempt(
        self, message: Received, event_type: str, attempt: int, dead_letter: bool
    ) -> AbstractContextManager[object]:
        """A span continuing the trace of `message`, current on the calling thread so that
        child_traceparent() puts its id in the output headers; nothing without a tracer."""
        if self._tracer is None:
            return nullcontext()
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": message.topic,
            "messaging.destination.partition.id": str(message.partition),
            "messaging.kafka.offset": message.offset,
            "messaging.kafka.message.key": (message.key or b"").decode(errors="replace"),
            "darkroom.stage": self._stage_name,
            "darkroom.event_type": event_type,
            "darkroom.attempt": attempt,
        }
        return self._tracer.start_as_current_span(
            self._dead_letter_name if dead_letter else self._process_name,
            context=context_from_headers(message.headers), kind=SpanKind.CONSUMER, attributes=attributes,
        )
