"""The platform's topics (ADR-009): names, partitions, retention. Applied by `pipeline.topics.ensure_topics`."""

from __future__ import annotations

from pipeline.topics import DEAD_LETTER_QUEUE, TopicSpec

__all__ = ["DEAD_LETTER_QUEUE", "FILES", "GALLERIES", "INVITES", "OUTBOX_MARKS", "SHOOTS", "STORAGE_EVENTS", "USERS",
           "TopicSpec", "default_topic_specs"]

SHOOTS = "shoots"
USERS = "users"
INVITES = "invites"
FILES = "files"
GALLERIES = "galleries"
STORAGE_EVENTS = "storage.events"
# Platform-internal: each outbox relay's high-water mark, written in the relay's Kafka transaction
# (orchestration/outbox_marks.py). Not an event topic: no consumer group reads it.
OUTBOX_MARKS = "outbox.marks"

_FOREVER = "-1"


def default_topic_specs(partitions: int = 6, replication_factor: int = -1) -> list[TopicSpec]:
    """The topics of ADR-009 by logical name. Business topics keep events forever (audit, replay, event sourcing).

    The cluster's names, replication and `min.insync.replicas` come from the settings
    (`pipeline.topics.installed_topic_specs`); -1 replicas = the broker's default.
    """
    keep = {"retention.ms": _FOREVER, "cleanup.policy": "delete"}
    week = {"retention.ms": str(7 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
    return [
        TopicSpec(SHOOTS, partitions, replication_factor, keep),
        TopicSpec(USERS, partitions, replication_factor, keep),
        TopicSpec(INVITES, partitions, replication_factor, keep),
        TopicSpec(FILES, partitions, replication_factor, keep),
        TopicSpec(GALLERIES, partitions, replication_factor, keep),
        # Raw object-store notifications are re-derivable (the reconciler lists the bucket), so a week is enough.
        TopicSpec(STORAGE_EVENTS, partitions, replication_factor, week),
        # Dead letters wait for a human: keep them until redriven or purged by hand.
        TopicSpec(DEAD_LETTER_QUEUE, max(1, partitions // 2), replication_factor, keep),
        # One partition, compacted: the last mark per relay id survives, and a relay reads the whole
        # partition at start-up. Hour-long segments let the cleaner keep that read short.
        TopicSpec(OUTBOX_MARKS, 1, replication_factor,
                  {"cleanup.policy": "compact", "segment.ms": str(3600 * 1000), "retention.ms": _FOREVER}),
    ]
