"""W3C trace context carried in Kafka headers, so one trace follows a photo across stages."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def child_traceparent(parent: str | None) -> str:
    """A traceparent for a new span: same trace as `parent` when it is valid, else a new trace."""
    match = _TRACEPARENT.match(parent or "")
    trace_id = match.group(1) if match and match.group(1) != "0" * 32 else secrets.token_hex(16)
    flags = match.group(3) if match else "01"
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a traceparent header, or None when it is absent or malformed."""
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match else None
