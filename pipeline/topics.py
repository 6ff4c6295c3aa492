"""Topic specs, their names on the cluster (prefix) and their idempotent application to the broker.

The framework side; no topic of the platform. Topics belong to the operator on a real cluster: a
worker changes them only when told to (`DARKROOM_TOPICS__MANAGE`), `darkroom topics ensure` shows
the plan and applies it only with `--apply`, and a config the operator set on a topic is reported
as drift, never reverted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

if TYPE_CHECKING:
    from pipeline.settings import TopicSettings

log = logging.getLogger(__name__)

# The framework's own topic: dead letters of every stage. The platform's topics are contracts
# (pipeline/contracts/topics.py), plugged in through the `darkroom.topics` entry point.
DEAD_LETTER_QUEUE = "dead-letter-queue"
TOPIC_ENTRY_POINTS = "darkroom.topics"


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like: partitions and the configs we own. -1 replicas = the broker's default."""

    name: str
    partitions: int
    replication_factor: int = -1
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicNames:
    """Logical topic names (the constants in code: `files`, `dead-letter-queue`) to names on the cluster.

    Applied at the Kafka boundary only (publisher, runner subscription, admin tools and watchers),
    so stages, events and the rest of the code keep using the logical constants.
    """

    prefix: str = ""

    def __call__(self, logical: str) -> str:
        return self.prefix + logical

    def logical(self, physical: str) -> str:
        """The logical name of a topic on the cluster (unchanged when it lacks the prefix)."""
        return physical[len(self.prefix):] if self.prefix and physical.startswith(self.prefix) else physical


def installed_topic_specs(settings: TopicSettings | None = None, partitions: int | None = None) -> list[TopicSpec]:
    """Every topic the installed packages declare (`darkroom.topics` entry points), as it must be on the cluster.

    `settings` adds the name prefix, the replication factor and `min.insync.replicas`; `partitions`
    overrides `settings.partitions`.
    """
    from pipeline.settings import TopicSettings

    settings = settings or TopicSettings()
    names = TopicNames(settings.prefix)
    extra = {} if settings.min_insync_replicas is None else {"min.insync.replicas": str(settings.min_insync_replicas)}
    specs: dict[str, TopicSpec] = {}
    for ep in entry_points(group=TOPIC_ENTRY_POINTS):
        for spec in ep.load()(partitions or settings.partitions):
            specs[names(spec.name)] = TopicSpec(
                names(spec.name), spec.partitions, settings.replication_factor, {**spec.config, **extra}
            )
    return list(specs.values())


@dataclass(frozen=True)
class Drift:
    """A config an operator set on a topic that differs from our spec: reported, never reverted."""

    topic: str
    key: str
    have: str
    want: str


@dataclass
class TopicPlan:
    """What applying the specs would change; empty lists when the cluster already matches."""

    create: list[TopicSpec] = field(default_factory=list)
    grow: list[TopicSpec] = field(default_factory=list)
    # Configs left at a broker default that differ from our spec: {topic: {key: value}}.
    configure: dict[str, dict[str, str]] = field(default_factory=dict)
    drift: list[Drift] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.create or self.grow or self.configure)

    def lines(self) -> list[str]:
        """The plan for a human, one change per line."""
        out = [f"create {s.name}: {s.partitions} partitions, replication {_rf(s.replication_factor)}, "
               f"{_configs(s.config)}" for s in self.create]
        out += [f"grow {s.name} to {s.partitions} partitions" for s in self.grow]
        out += [f"configure {name}: {_configs(cfg)}" for name, cfg in self.configure.items()]
        out += [f"drift {d.topic}: {d.key}={d.have} set on the topic, spec says {d.want} (left as is)"
                for d in self.drift]
        return out


def _set_on_topic(entry: ConfigEntry) -> bool:
    """True when the value was set on the topic itself (by us at creation, or by an operator since)."""
    source = getattr(entry.source, "value", entry.source)
    return bool(source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value)


def _rf(replicas: int) -> str:
    return "broker default" if replicas < 0 else str(replicas)


def _configs(config: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(config.items())) or "no configs"


@dataclass(frozen=True)
class EnsureReport:
    """What `ensure_topics` changed."""

    created: list[str]
    grown: list[str]
    reconfigured: list[str]
    unchanged: list[str]
    drift: list[Drift] = field(default_factory=list)


def plan_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> TopicPlan:
    """Compare the cluster with `specs`; reads only (Describe on the topics)."""
    existing = admin.list_topics(timeout=timeout_s).topics
    plan = TopicPlan(create=[s for s in specs if s.name not in existing])
    present = [s for s in specs if s.name in existing]
    plan.grow = [s for s in present if len(existing[s.name].partitions) < s.partitions]
    if not present:
        return plan
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in present],
                                       request_timeout=timeout_s)
    current = {res.name: fut.result(timeout=timeout_s) for res, fut in described.items()}
    for spec in present:
        have = current[spec.name]
        configure = {}
        for key, want in spec.config.items():
            entry = have.get(key)
            if entry is not None and entry.value == want:
                continue
            if entry is not None and _set_on_topic(entry):
                plan.drift.append(Drift(spec.name, key, str(entry.value), want))
            else:
                configure[key] = want
        if configure:
            plan.configure[spec.name] = configure
        elif spec not in plan.grow:
            plan.unchanged.append(spec.name)
    return plan


def apply_plan(admin: AdminClient, plan: TopicPlan, timeout_s: float = 30.0) -> EnsureReport:
    """Create, grow and configure as planned; never shrink, delete or touch a drifted config.

    Safe from every worker at once: "already exists" and "already grown" are success.
    """
    created, grown, reconfigured, unchanged = [], [], [], list(plan.unchanged)
    if plan.create:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config)) for s in plan.create],
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
        _await_leaders(admin, created, timeout_s)
    if plan.grow:
        for name, fut in admin.create_partitions([NewPartitions(s.name, s.partitions) for s in plan.grow],
                                                    operation_timeout=timeout_s, request_timeout=timeout_s).items():
            try:
                fut.result()
                grown.append(name)
            except KafkaException as exc:
                # Another worker grew it first, or our metadata was stale: either way it has enough.
                if exc.args[0].name() != "INVALID_PARTITIONS":
                    raise
    for name, config in plan.configure.items():
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()]
        resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=entries)
        for fut in admin.incremental_alter_configs([resource], request_timeout=timeout_s).values():
            fut.result()
        reconfigured.append(name)
    for d in plan.drift:
        log.warning("topics: %s has %s=%s set on the topic, the spec says %s; left as is", d.topic, d.key, d.have, d.want)
    log.info("topics: created=%s grown=%s reconfigured=%s", created, grown, reconfigured)
    return EnsureReport(created, grown, reconfigured, unchanged, list(plan.drift))


def _await_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Wait until every partition of `names` has a leader: a created topic is usable only then.

    CreateTopics returns when the controller has recorded the topic; brokers learn it a moment later,
    and a client that reads or writes in between gets NOT_LEADER / UNKNOWN_TOPIC errors.
    """
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending:
        topics = admin.list_topics(timeout=max(0.5, deadline - time.monotonic())).topics
        pending = {n for n in pending
                   if n not in topics or topics[n].error is not None or not topics[n].partitions
                   or any(p.leader < 0 for p in topics[n].partitions.values())}
        if not pending:
            # The leaders are named; they also have to serve the partitions (ListOffsets goes to each leader).
            request = {TopicPartition(n, p): OffsetSpec.latest() for n in names for p in topics[n].partitions}
            try:
                for fut in admin.list_offsets(request, request_timeout=max(0.5, deadline - time.monotonic())).values():
                    fut.result()
                return
            except KafkaException:
                pending = set(names)
        if time.monotonic() >= deadline:
            raise KafkaException(f"topics created but without leaders after {timeout_s:.0f}s: {sorted(pending)}")
        time.sleep(0.1)


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> EnsureReport:
    """Plan and apply in one go (the dev stack, and workers told to manage topics)."""
    return apply_plan(admin, plan_topics(admin, specs, timeout_s), timeout_s)
