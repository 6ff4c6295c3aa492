"""Rebuilding a consumer's state by replaying its topics from offset zero.

The events are applied by the consumer's own `apply`, in replay mode (no outbox rows, no mails, no
object deletes), into a fresh database; per-key order is the topics' order, which is all the
consumers rely on. With `into` unset, the rebuilt tables then replace the live ones in one
transaction (stop the consumer's workers first).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from orchestration.analytics import AnalyticsStage
from orchestration.analytics import ensure_schema as ensure_analytics_schema
from orchestration.consumer import OrchestrationStage
from orchestration.db import Database, db_path
from orchestration.invites import InvitesStage
from orchestration.users import UsersStage
from pipeline.contracts.events import default_registry
from pipeline.errors import InvalidEvent
from pipeline.kafka_config import consumer_config
from pipeline.settings import Settings
from pipeline.topics import TopicNames

log = logging.getLogger(__name__)

# Which tables each rebuildable consumer owns.
TABLES: dict[str, tuple[str, ...]] = {
    "gallery": ("gallery_photos", "gallery_renditions", "gallery_photo_details"),
    "users": ("users",),
    "invites": ("invite_shoots", "invite_users", "invites"),
    "analytics": ("analytics_shoots", "analytics_photos"),
}


def _stage(name: str, settings: Settings, db: Database) -> OrchestrationStage:
    if name == "gallery":
        from orchestration.workers import make_gallery

        return make_gallery(settings, db, with_store=False)
    if name == "users":
        return UsersStage(default_registry(), db, settings)
    if name == "invites":
        return InvitesStage(default_registry(), db, settings)
    if name == "analytics":
        return AnalyticsStage(default_registry(), db, settings)
    raise ValueError(f"cannot rebuild {name!r}; rebuildable: {', '.join(sorted(TABLES))}")


def replay(name: str, settings: Settings, into: Path, timeout_s: float = 30.0) -> int:
    """Apply every event of the consumer's topics, up to their current ends, to the database `into`."""
    db = Database(into)
    stage = _stage(name, settings, db)
    consumer = Consumer({**consumer_config(settings, f"darkroom.rebuild.{name}"), "enable.partition.eof": True})
    applied = 0
    try:
        assignment, ends = [], {}
        for topic in map(TopicNames(settings.topics.prefix), stage.topics):
            for p in consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                if high > low:
                    assignment.append(TopicPartition(topic, p, low))
                    ends[(topic, p)] = high
        consumer.assign(assignment)
        last_seen = time.monotonic()
        while ends:
            batch = consumer.consume(500, timeout=1.0)
            if batch:
                last_seen = time.monotonic()
            elif time.monotonic() - last_seen > timeout_s:
                raise TimeoutError(f"rebuild {name}: nothing read for {timeout_s:.0f}s with {len(ends)} partition(s) "
                                   "not read to their end; is the broker up? Run the rebuild again (it starts over).")
            for msg in batch:
                tp = (msg.topic(), msg.partition())
                if tp not in ends:
                    continue
                if msg.error() is not None:
                    # End of partition: the end may be a transaction marker rather than an event.
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        del ends[tp]
                    else:
                        log.warning("rebuild %s: %s", name, msg.error())
                    continue
                applied += _apply(stage, msg)
                if msg.offset() + 1 >= ends[tp]:
                    del ends[tp]  # caught up with the end this rebuild started from
    finally:
        consumer.close()
    return applied


def _apply(stage: OrchestrationStage, msg: Message) -> int:
    """Apply one message as the live consumer would; 1 if it changed state."""
    if not stage.accepts({k: v or b"" for k, v in msg.headers() or []}):
        return 0
    try:
        event = stage.registry.decode(msg.value())
    except InvalidEvent:
        return 0  # the live consumer dead-lettered it too
    if event.envelope.event_type not in stage.event_types:
        return 0
    return int(stage.apply_once(event, replay=True))


def rebuild(name: str, settings: Settings, into: Path | None = None) -> int:
    """Replay into `into`, or into a scratch file whose tables then replace the live ones."""
    if into is not None:
        into.unlink(missing_ok=True)
        return replay(name, settings, into)
    live = db_path(settings)
    with tempfile.TemporaryDirectory(dir=live.parent) as scratch:
        fresh = Path(scratch) / "rebuild.sqlite"
        applied = replay(name, settings, fresh)
        conn = Database(live).conn()
        ensure_analytics_schema(conn)  # its tables are created by its stage, which may never have run here
        conn.execute("ATTACH DATABASE ? AS fresh", (str(fresh),))
        try:
            conn.execute("BEGIN IMMEDIATE")
            for table in TABLES[name]:
                conn.execute(f"DELETE FROM main.{table}")  # noqa: S608 - table names are ours
                conn.execute(f"INSERT INTO main.{table} SELECT * FROM fresh.{table}")  # noqa: S608
            conn.execute("DELETE FROM main.processed WHERE consumer = ?", (name,))
            conn.execute("INSERT INTO main.processed SELECT * FROM fresh.processed WHERE consumer = ?", (name,))
            conn.execute("COMMIT")
        finally:
            conn.execute("DETACH DATABASE fresh")
    return applied
