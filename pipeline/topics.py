"""Topic specs and their idempotent application to the broker (the framework side; no topic of the platform)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

log = logging.getLogger(__name__)

# The framework's own topic: dead letters of every stage. The platform's topics are contracts
# (pipeline/contracts/topics.py), plugged in through the `darkroom.topics` entry point.
DEAD_LETTER_QUEUE = "dead-letter-queue"
TOPIC_ENTRY_POINTS = "darkroom.topics"


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like: partitions and the configs we own."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


def installed_topic_specs(partitions: int = 6) -> list[TopicSpec]:
    """Every topic the installed packages declare (`darkroom.topics` entry points), by name."""
    specs: dict[str, TopicSpec] = {}
    for ep in entry_points(group=TOPIC_ENTRY_POINTS):
        for spec in ep.load()(partitions):
            specs[spec.name] = spec
    return list(specs.values())


@dataclass(frozen=True)
class EnsureReport:
    """What `ensure_topics` changed."""

    created: list[str]
    grown: list[str]
    reconfigured: list[str]
    unchanged: list[str]


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> EnsureReport:
    """Create missing topics, grow partition counts and apply configs; never shrink or delete.

    Safe to run at every start-up from every worker at once: "already exists" is success. Every
    broker request is bounded by `timeout_s` (the futures fail with a timeout, never wait forever).
    """
    existing = admin.list_topics(timeout=timeout_s).topics
    created, grown, reconfigured, unchanged = [], [], [], []

    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config)) for s in missing],
            operation_timeout=timeout_s, request_timeout=timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                unchanged.append(name)

    present = [s for s in specs if s.name in existing]
    to_grow = [s for s in present if len(existing[s.name].partitions) < s.partitions]
    if to_grow:
        for name, fut in admin.create_partitions([NewPartitions(s.name, s.partitions) for s in to_grow],
                                                    operation_timeout=timeout_s, request_timeout=timeout_s).items():
            try:
                fut.result()
                grown.append(name)
            except KafkaException as exc:
                # Another worker grew it first, or our metadata was stale: either way it has enough.
                if exc.args[0].name() != "INVALID_PARTITIONS":
                    raise

    if present:
        described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in present],
                                           request_timeout=timeout_s)
        current = {res.name: fut.result() for res, fut in described.items()}
        for spec in present:
            have = current[spec.name]
            drift = {k: v for k, v in spec.config.items() if k not in have or have[k].value != v}
            if not drift:
                if spec.name not in grown:
                    unchanged.append(spec.name)
                continue
            entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()]
            resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
            for fut in admin.incremental_alter_configs([resource], request_timeout=timeout_s).values():
                fut.result()
            reconfigured.append(spec.name)
    log.info("topics: created=%s grown=%s reconfigured=%s", created, grown, reconfigured)
    return EnsureReport(created, grown, reconfigured, unchanged)
