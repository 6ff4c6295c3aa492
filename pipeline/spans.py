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
    """Opens the span of one processing attempt: a child of the message's trace context.

    Named and attributed as the OpenTelemetry messaging conventions say for a consumer's processing
    (`process {topic}`, kind CONSUMER, `messaging.*`); `darkroom.*` attributes add the stage's view.
    """

    def __init__(self, tracer: Tracer | None, stage_name: str, group: str | None = None) -> None:
        # No tracer, no spans: the traceparent header still carries the trace on (new span ids, same
        # trace id) at a fraction of the cost; the worker passes one when spans are exported.
        self._tracer = tracer
        self._stage_name = stage_name
        self._group = group or f"darkroom.{stage_name}"

    def attempt(
        self, message: Received, event_type: str, attempt: int, dead_letter: bool
    ) -> AbstractContextManager[object]:
        """A span continuing the trace of `message`, current on the calling thread so that
        child_traceparent() puts its id in the output headers; nothing without a tracer."""
        if self._tracer is None:
            return nullcontext()
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": message.topic,
            "messaging.consumer.group.name": self._group,
            "messaging.destination.partition.id": str(message.partition),
            "messaging.kafka.offset": message.offset,
            "messaging.kafka.message.key": (message.key or b"").decode(errors="replace"),
            "messaging.message.body.size": len(message.value or b""),
            "darkroom.stage": self._stage_name,
            "darkroom.event_type": event_type,
            "darkroom.attempt": attempt,
            "darkroom.dead_letter": dead_letter,
        }
        return self._tracer.start_as_current_span(
            f"process {message.topic}",
            context=context_from_headers(message.headers), kind=SpanKind.CONSUMER, attributes=attributes,
        )
