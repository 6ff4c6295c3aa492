"""Dead letters: the original message, byte for byte, plus headers that say what went wrong.

The value and key are kept as they were so a redrive re-publishes exactly what the source topic
held; everything we know about the failure travels in `dlq.*` headers (as Kafka Connect does).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.envelope import headers_dict
from pipeline.publisher import Outgoing
from pipeline.stage import Received
from pipeline.topics import DEAD_LETTER_QUEUE

H_TOPIC = "dlq.topic"
H_PARTITION = "dlq.partition"
H_OFFSET = "dlq.offset"
H_STAGE = "dlq.stage"
H_ERROR_CLASS = "dlq.error.class"
H_ERROR_KIND = "dlq.error.kind"
H_ERROR_MESSAGE = "dlq.error.message"
H_ATTEMPTS = "dlq.attempts"
H_FAILED_AT = "dlq.failed.at"

_MAX_MESSAGE = 2000


@dataclass(frozen=True)
class DeadLetter:
    """What went wrong with one message, read back from the dead-letter queue."""

    topic: str
    partition: int
    offset: int
    stage: str
    error_class: str
    error_kind: str
    error_message: str
    attempts: int
    failed_at_ms: int
    key: bytes | None
    value: bytes | None
    original_headers: list[tuple[str, bytes]]

    @classmethod
    def from_message(cls, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> DeadLetter:
        """Parse a message of the dead-letter queue."""
        hdrs = headers_dict(headers)

        def text(name: str) -> str:
            return hdrs.get(name, b"").decode(errors="replace")

        return cls(
            topic=text(H_TOPIC),
            partition=int(text(H_PARTITION) or -1),
            offset=int(text(H_OFFSET) or -1),
            stage=text(H_STAGE),
            error_class=text(H_ERROR_CLASS),
            error_kind=text(H_ERROR_KIND),
            error_message=text(H_ERROR_MESSAGE),
            attempts=int(text(H_ATTEMPTS) or 0),
            failed_at_ms=int(text(H_FAILED_AT) or 0),
            key=key,
            value=value,
            original_headers=[(k, v) for k, v in headers or [] if not k.startswith("dlq.")],
        )


def dead_letter(message: Received, stage: str, error: BaseException, kind: str, attempts: int, failed_at_ms: int) -> Outgoing:
    """The dead-letter message for `message`, keyed as the original so one key's letters stay in order."""
    text = str(error) or error.__class__.__name__
    meta = [
        (H_TOPIC, message.topic),
        (H_PARTITION, str(message.partition)),
        (H_OFFSET, str(message.offset)),
        (H_STAGE, stage),
        (H_ERROR_CLASS, f"{type(error).__module__}.{type(error).__qualname__}"),
        (H_ERROR_KIND, kind),
        (H_ERROR_MESSAGE, text[:_MAX_MESSAGE]),
        (H_ATTEMPTS, str(attempts)),
        (H_FAILED_AT, str(failed_at_ms)),
    ]
    originals = [(k, v) for k, v in message.headers if not k.startswith("dlq.")]
    return Outgoing(DEAD_LETTER_QUEUE, message.key, message.value, originals + [(k, v.encode()) for k, v in meta])
