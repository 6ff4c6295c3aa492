"""Dead letters per stage, for `darkroom fleet status`: letters in the DLQ not yet redriven.

Reads the topic from its start to its current end outside any consumer group (nothing committed),
looking at headers only. Redrive markers (`dlq.marker`, written by `darkroom dlq redrive`) are not
letters, and the letter each one marks no longer counts as open.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.dead_letter import H_STAGE
from pipeline.kafka_config import consumer_config
from pipeline.settings import Settings
from pipeline.topics import DEAD_LETTER_QUEUE

H_MARKER = "dlq.marker"
H_REDRIVEN_ID = "dlq.redriven.id"


def count_dead_letters(settings: Settings, timeout_s: float = 10.0) -> dict[str, int]:
    """Open dead letters per stage. Raises TimeoutError if the topic cannot be read to its end in time."""
    config = {**consumer_config(settings, f"darkroom.fleet-status.{uuid.uuid4().hex}"), "enable.partition.eof": True}
    consumer = Consumer(config)
    try:
        meta = consumer.list_topics(DEAD_LETTER_QUEUE, timeout=timeout_s).topics[DEAD_LETTER_QUEUE]
        if meta.error is not None:
            raise KafkaException(meta.error)
        assignment, pending = [], set()
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(DEAD_LETTER_QUEUE, p), timeout=timeout_s)
            if high > low:
                assignment.append(TopicPartition(DEAD_LETTER_QUEUE, p, low))
                pending.add(p)
        consumer.assign(assignment)
        stage_of: dict[str, str] = {}
        redriven: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{DEAD_LETTER_QUEUE} not read to its end within {timeout_s:.0f}s")
            for msg in consumer.consume(500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise KafkaException(err)
                headers = {k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []}
                if H_MARKER in headers:
                    redriven.add(headers.get(H_REDRIVEN_ID, ""))
                else:
                    stage_of[f"{msg.partition()}:{msg.offset()}"] = headers.get(H_STAGE, "?")
    finally:
        consumer.close()
    return dict(Counter(stage for lid, stage in stage_of.items() if lid not in redriven))
