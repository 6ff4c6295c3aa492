"""W3C trace context carried in Kafka headers, so one trace follows a photo across stages.

The runner makes each stage's processing an OpenTelemetry span whose parent is the context in the
consumed message's `traceparent` (see `context_from_headers`) and makes it current on the worker
thread; `child_traceparent` then hands that span's context to every event the stage publishes, so
the next stage's span becomes its child. Outside a runner span (tools, tests) it falls back to a
fresh span id in the parent's trace, as before.
"""

from __future__ import annotations

import random
import re

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ROOT = Context()  # an empty context: extracting into it never inherits whatever is current


def child_traceparent(parent: str | None) -> str:
    """A traceparent for an outgoing event: the active span when it continues `parent`'s trace, else a new span id.

    The active span wins when `parent` is absent or in the same trace, so a stage that forgets to pass
    the parent still continues the trace the runner started for the message it is processing.
    """
    current = current_traceparent()
    match = _TRACEPARENT.match(parent or "")
    if current is not None and (match is None or match.group(1) == current[3:35]):
        return current
    trace_id = match.group(1) if match and match.group(1) != "0" * 32 else f"{_nonzero_bits(128):032x}"
    flags = match.group(3) if match else "01"
    return f"00-{trace_id}-{_nonzero_bits(64):016x}-{flags}"


def _nonzero_bits(bits: int) -> int:
    # Ids must be unique, not secret: Python's PRNG, as OpenTelemetry's own id generator uses. The
    # `secrets` module read /dev/urandom per id, 11 % of the event runner's time (bench/RESULTS.md).
    while True:
        value = random.getrandbits(bits)
        if value:
            return value


def current_traceparent() -> str | None:
    """The W3C traceparent of the active OpenTelemetry span, or None when there is no valid one."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


# Headers the propagators read and write (W3C trace context and baggage by default, OTEL_PROPAGATORS otherwise).
def _propagated_fields() -> set[str]:
    return set(propagate.get_global_textmap().fields) | {"traceparent", "tracestate"}


def context_from_headers(headers: list[tuple[str, bytes]] | None) -> Context:
    """The trace context carried by Kafka headers, through the OpenTelemetry propagator API; empty when absent."""
    fields = _propagated_fields()
    carrier = {}
    for name, value in headers or []:
        if name in fields and value:
            carrier[name] = value.decode("ascii", errors="replace")
    if not carrier:
        return _ROOT
    return propagate.extract(carrier, context=_ROOT)


def headers_with_span(headers: list[tuple[str, bytes]], span: Span) -> list[tuple[str, bytes]]:
    """`headers` with the propagation headers replaced by `span`'s context (the propagator API's inject)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span, _ROOT))
    fields = _propagated_fields()
    kept = [(k, v) for k, v in headers if k not in fields]
    return [*kept, *((k, v.encode()) for k, v in carrier.items())]


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a traceparent header, or None when it is absent or malformed."""
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match else None
