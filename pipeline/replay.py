"""Replay: move a stopped consumer group's committed offsets so its stage reprocesses a topic.

Used to redo a stage after a fix (a better resize, a corrected watermark) or to rebuild a read
model from the topic's history. Safe because outputs are idempotent (deterministic keys and event
ids): a reprocessed photo overwrites its rendition and re-publishes the same event id.

Only a group without live members can be moved: the broker would reject the commit of a group
with members anyway, and a running worker would keep committing its own positions over ours.
So we check first (``describe_consumer_groups``) and refuse with a message that says what to stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import click
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from pipeline.kafka_config import admin_config
from pipeline.preflight import check_kafka
from pipeline.settings import Settings
from pipeline.topics import TopicNames

log = logging.getLogger(__name__)

TargetKind = Literal["earliest", "latest", "offset", "timestamp"]

# What librdkafka reports for "no committed offset" (OFFSET_INVALID).
NO_OFFSET = -1001


class ReplayRefused(Exception):
    """The group cannot be moved now (live members, unknown topic, broker refusal); the message says why."""


@dataclass(frozen=True)
class ReplayTarget:
    """Where to move the group: the first offset, the end, an offset, or the first event at/after a time."""

    kind: TargetKind
    value: int = 0  # the offset for "offset", epoch milliseconds for "timestamp"

    @classmethod
    def at_time(cls, iso: str) -> ReplayTarget:
        """From an ISO-8601 time with a zone, e.g. 2026-01-31T12:00:00Z; a naive time is refused (ambiguous)."""
        try:
            when = datetime.fromisoformat(iso)
        except ValueError as exc:
            raise ValueError(f"{iso!r} is not an ISO-8601 time, e.g. 2026-01-31T12:00:00Z") from exc
        if when.tzinfo is None:
            raise ValueError(f"{iso!r} has no time zone; add Z or +HH:MM")
        return cls("timestamp", int(when.timestamp() * 1000))

    def describe(self) -> str:
        if self.kind == "offset":
            return f"offset {self.value}"
        if self.kind == "timestamp":
            return f"time {datetime.fromtimestamp(self.value / 1000).astimezone().isoformat(timespec='seconds')}"
        return self.kind


@dataclass(frozen=True)
class OffsetMove:
    """One partition's plan: committed offset now (NO_OFFSET if none) → target, within [low, high)."""

    partition: int
    committed: int
    target: int
    low: int
    high: int

    @property
    def to_reprocess(self) -> int:
        """Messages between the target and the end (every one is read again, handled or skipped)."""
        return self.high - self.target


def live_members(admin: AdminClient, group: str, timeout_s: float = 10.0) -> list[str]:
    """``client_id@host`` of every live member of ``group`` (empty for an empty or unknown group)."""
    description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result()
    return [f"{m.client_id}@{m.host}" for m in description.members]


def clamp_offset(requested: int, low: int, high: int) -> int:
    """A requested offset inside what the partition holds: below the log start reads from the start, past the end waits."""
    return min(max(requested, low), high)


def plan(admin: AdminClient, group: str, topic: str, target: ReplayTarget,
         partitions: list[int] | None = None, timeout_s: float = 10.0) -> list[OffsetMove]:
    """Compute the moves for every (or the given) partition of ``topic``; changes nothing."""
    meta = admin.list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise ReplayRefused(f"topic {topic!r} does not exist" + (f" ({meta.error.str()})" if meta and meta.error else ""))
    available = sorted(meta.partitions)
    chosen = available if not partitions else sorted(set(partitions))
    unknown = [p for p in chosen if p not in meta.partitions]
    if unknown:
        raise ReplayRefused(f"topic {topic!r} has partitions {available}; no partition {unknown}")

    low = _offsets(admin, topic, chosen, OffsetSpec.earliest(), timeout_s)
    # The last stable offset: a replay "to latest" must not skip past an open transaction.
    high = _offsets(admin, topic, chosen, OffsetSpec.latest(), timeout_s)
    committed = committed_offsets(admin, group, topic, chosen, timeout_s)
    at: dict[int, int] = {}
    if target.kind == "timestamp":
        at = _offsets(admin, topic, chosen, OffsetSpec.for_timestamp(target.value), timeout_s)
    moves = []
    for p in chosen:
        if target.kind == "earliest":
            to = low[p]
        elif target.kind == "latest":
            to = high[p]
        elif target.kind == "offset":
            to = clamp_offset(target.value, low[p], high[p])
        else:
            # No event at or after the time: the broker answers -1, i.e. "from the end".
            to = at[p] if at[p] >= 0 else high[p]
        moves.append(OffsetMove(p, committed.get(p, NO_OFFSET), to, low[p], high[p]))
    return moves


def apply(admin: AdminClient, group: str, topic: str, moves: list[OffsetMove], timeout_s: float = 10.0) -> None:
    """Commit the planned offsets for ``group`` after checking again that it has no live member.

    A worker starting between the check and the commit makes the broker refuse the commit
    (the group is no longer empty); that refusal is reported as ReplayRefused, never half-applied
    silently: per-partition errors are collected and raised together.
    """
    members = live_members(admin, group, timeout_s)
    if members:
        raise ReplayRefused(refusal_message(group, members))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, m.partition, m.target) for m in moves])
    try:
        result = admin.alter_consumer_group_offsets([request], request_timeout=timeout_s)[group].result()
    except KafkaException as exc:
        raise ReplayRefused(f"the broker refused to move group {group!r}: {exc.args[0].str()}; is a worker running?") from exc
    failed = [f"{tp.partition}: {tp.error.str()}" for tp in result.topic_partitions if tp.error is not None]
    if failed:
        raise ReplayRefused(f"group {group!r} was not moved on partitions " + "; ".join(failed))
    log.info("replay: group %s on %s moved to %s", group, topic, {m.partition: m.target for m in moves})


def refusal_message(group: str, members: list[str]) -> str:
    stage = group.removeprefix("darkroom.")
    return (
        f"group {group!r} has {len(members)} live member(s) ({', '.join(sorted(members))}); stop its workers first "
        f"(docker compose stop {stage} / kubectl scale deployment darkroom-{stage} --replicas=0 after pausing its "
        "ScaledObject), wait for the session timeout if one was killed, then run replay again"
    )


def _offsets(admin: AdminClient, topic: str, partitions: list[int], spec: OffsetSpec, timeout_s: float) -> dict[int, int]:
    futures = admin.list_offsets(
        {TopicPartition(topic, p): spec for p in partitions},
        isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout_s,
    )
    return {tp.partition: fut.result().offset for tp, fut in futures.items()}


def committed_offsets(admin: AdminClient, group: str, topic: str, partitions: list[int], timeout_s: float) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    result = admin.list_consumer_group_offsets([request], request_timeout=timeout_s)[group].result()
    return {tp.partition: tp.offset for tp in result.topic_partitions}


# --- CLI ------------------------------------------------------------------------------------------


@click.command("replay")
@click.option("--group", required=True, help="Consumer group to move, e.g. darkroom.resize.")
@click.option("--topic", required=True, help="Topic whose offsets move, e.g. files.")
@click.option("--to-earliest", "earliest", is_flag=True, help="From the first event the topic still holds.")
@click.option("--to-latest", "latest", is_flag=True, help="To the end: skip everything not yet processed.")
@click.option("--to-offset", "offset", type=int, default=None, help="From this offset on every partition (clamped).")
@click.option("--to-timestamp", "timestamp", default=None, help="From the first event at/after this ISO time (with zone).")
@click.option("--to-datetime", "datetime_", default=None,
              help="As Kafka's reset tool: YYYY-MM-DDTHH:mm:SS[.sss][zone]; without a zone, UTC.")
@click.option("--partition", "partitions", type=int, multiple=True, help="Only these partitions (repeatable).")
@click.option("--execute", is_flag=True, help="Move the offsets; without it only the plan is shown (as Kafka's tool).")
@click.option("--dry-run", is_flag=True, hidden=True, help="The default; kept so older scripts still work.")
@click.pass_obj
def replay_command(settings: Settings, group: str, topic: str, earliest: bool, latest: bool, offset: int | None,
                   timestamp: str | None, datetime_: str | None, partitions: tuple[int, ...], execute: bool,
                   dry_run: bool) -> None:
    """Show how a STOPPED consumer group would move to reprocess TOPIC (or skip ahead); move it with --execute.

    Refuses while the group has live members. Outputs are idempotent, so reprocessing overwrites
    renditions and re-publishes the same event ids.
    """
    if execute and dry_run:
        raise click.UsageError("--execute and --dry-run contradict each other; give one")
    chosen = [name for name, on in (("--to-earliest", earliest), ("--to-latest", latest),
                                    ("--to-offset", offset is not None), ("--to-timestamp", timestamp is not None),
                                    ("--to-datetime", datetime_ is not None)) if on]
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one of --to-earliest, --to-latest, --to-offset N, --to-timestamp ISO, --to-datetime ISO"
        )
    if datetime_ is not None:
        timestamp = datetime_ if _has_zone(datetime_) else f"{datetime_}+00:00"
    try:
        if earliest:
            target = ReplayTarget("earliest")
        elif latest:
            target = ReplayTarget("latest")
        elif offset is not None:
            target = ReplayTarget("offset", offset)
        else:
            target = ReplayTarget.at_time(timestamp or "")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=chosen[0]) from exc
    check_kafka(settings)
    admin = AdminClient(admin_config(settings))
    topic = TopicNames(settings.topics.prefix)(topic)  # logical name in (files), the cluster's name moved
    try:
        members = live_members(admin, group)
        if members:
            raise ReplayRefused(refusal_message(group, members))
        moves = plan(admin, group, topic, target, list(partitions) or None)
        _print_plan(group, topic, target, moves)
        if not execute:
            click.echo("dry run: nothing changed; run again with --execute to move the offsets", err=True)
            return
        apply(admin, group, topic, moves)
    except ReplayRefused as exc:
        raise click.ClickException(str(exc)) from exc
    except KafkaException as exc:
        raise click.ClickException(f"Kafka at {settings.kafka.bootstrap_servers} failed: {exc}") from exc
    total = sum(m.to_reprocess for m in moves)
    click.echo(f"moved {group} on {topic} to {target.describe()}: {total} event(s) ahead of the group", err=True)


def _has_zone(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return True  # let ReplayTarget.at_time report the format


def _print_plan(group: str, topic: str, target: ReplayTarget, moves: list[OffsetMove]) -> None:
    click.echo(f"{group} on {topic} -> {target.describe()}")
    click.echo(f"{'partition':>9} {'committed':>10} {'target':>10} {'low':>10} {'high':>10}")
    for m in moves:
        committed = "-" if m.committed < 0 else str(m.committed)
        click.echo(f"{m.partition:>9} {committed:>10} {m.target:>10} {m.low:>10} {m.high:>10}")
