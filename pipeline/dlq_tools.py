"""Dead-letter queue tools: list, show and redrive letters (``darkroom dlq ...``).

A letter's ID is ``partition:offset`` in ``dead-letter-queue``: stable (the topic keeps letters
forever), unique, and what ``kafka-console-consumer`` shows too.

Redrive re-publishes the original key, value and headers (without ``dlq.*``) to the source
topic, plus one header ``redrive.from`` (``dead-letter-queue:P:O``) so the redriven event can be
traced to its letter. It must not redrive the same letter twice, so each redrive also writes a
*marker* into the DLQ itself: a message with a null value, the letter's key and the headers
``dlq.marker=redriven`` and ``dlq.redriven.id=P:O``. Both messages are written in one Kafka
transaction, so the marker exists if and only if the redriven event does (no double redrive after
a crash, no letter marked but never sent).

Why a marker and not a consumer group on the DLQ: a group has one position per partition, so it
cannot remember "letters 3 and 7 redriven, 5 left for later" when redrive is filtered by stage or
error class; markers can. Why in the DLQ and not a topic of its own: the markers live and expire
with the letters they mark, and the topic set of ADR-009 stays as it is. Readers of the DLQ skip
markers by the ``dlq.marker`` header (see :func:`is_marker`).
"""

from __future__ import annotations

import getpass
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from pipeline.dead_letter import DeadLetter
from pipeline.envelope import headers_dict
from pipeline.kafka_config import consumer_config, producer_config
from pipeline.preflight import check_kafka
from pipeline.settings import Settings
from pipeline.topics import DEAD_LETTER_QUEUE, TopicNames

H_MARKER = "dlq.marker"
H_REDRIVEN_ID = "dlq.redriven.id"
H_REDRIVEN_AT = "dlq.redriven.at"
H_REDRIVEN_BY = "dlq.redriven.by"
# On the redriven message (not dlq.*: it must survive if the event fails again and is dead-lettered anew).
H_REDRIVE_FROM = "redrive.from"
MARKER_REDRIVEN = b"redriven"

# One transactional id for every redrive: a second redrive started concurrently fences the first
# (its commit fails) instead of both re-publishing the same letters.
TRANSACTIONAL_ID = "darkroom.dlq-redrive"


@dataclass(frozen=True)
class Letter:
    """A dead letter as stored: its ID, when it was written, what went wrong, and whether it was redriven."""

    id: str
    partition: int
    offset: int
    timestamp_ms: int
    letter: DeadLetter
    redriven_at_ms: int | None = None
    redriven_by: str | None = None

    @property
    def redriven(self) -> bool:
        return self.redriven_at_ms is not None


def letter_id(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


def parse_id(text: str) -> tuple[int, int]:
    """``"P:O"`` → (P, O); raises ValueError with the expected form."""
    try:
        partition, offset = (int(part) for part in text.split(":"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a dead-letter ID; expected PARTITION:OFFSET, e.g. 0:42") from exc
    return partition, offset


def is_marker(headers: list[tuple[str, bytes]] | None) -> bool:
    """True for a redrive marker (not a letter)."""
    return any(k == H_MARKER for k, _v in headers or [])


def read_letters(settings: Settings, timeout_s: float = 30.0) -> list[Letter]:
    """Every letter of the DLQ, oldest first per partition, with the redrive markers applied.

    Reads from the start to the end as of now, outside any consumer group (nothing is committed),
    at read_committed so markers of an aborted redrive do not count.
    """
    config = {**consumer_config(settings, f"darkroom.dlq-tools.{uuid.uuid4().hex}"), "enable.partition.eof": True}
    dlq = TopicNames(settings.topics.prefix)(DEAD_LETTER_QUEUE)
    consumer = Consumer(config)
    try:
        meta = consumer.list_topics(dlq, timeout=timeout_s).topics[dlq]
        if meta.error is not None:
            raise KafkaException(meta.error)
        assignment, pending = [], set()
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(dlq, p), timeout=timeout_s)
            if high > low:
                assignment.append(TopicPartition(dlq, p, low))
                pending.add(p)
        consumer.assign(assignment)
        letters: dict[str, Letter] = {}
        marks: dict[str, tuple[int, str]] = {}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dlq}: not read to the end within {timeout_s:.0f} s")
            for msg in consumer.consume(500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise KafkaException(err)
                headers = msg.headers() or []
                if is_marker(headers):
                    h = headers_dict(headers)
                    marked = h.get(H_REDRIVEN_ID, b"").decode()
                    marks[marked] = (int(h.get(H_REDRIVEN_AT, b"0") or 0), h.get(H_REDRIVEN_BY, b"").decode())
                    continue
                lid = letter_id(msg.partition(), msg.offset())
                letters[lid] = Letter(
                    lid, msg.partition(), msg.offset(), msg.timestamp()[1],
                    DeadLetter.from_message(msg.key(), msg.value(), headers),
                )
    finally:
        consumer.close()
    out = []
    for lid, letter in letters.items():
        if lid in marks:
            at, by = marks[lid]
            letter = Letter(letter.id, letter.partition, letter.offset, letter.timestamp_ms, letter.letter, at, by)
        out.append(letter)
    return sorted(out, key=lambda x: (x.timestamp_ms, x.partition, x.offset))


def error_class_matches(full_name: str, wanted: str) -> bool:
    """``wanted`` is the full class name or its last part: "PermanentError" matches "pipeline.errors.PermanentError"."""
    return full_name == wanted or full_name.rsplit(".", 1)[-1] == wanted


def select(letters: Iterable[Letter], stage: str | None = None, error_class: str | None = None,
           ids: Iterable[str] = (), include_redriven: bool = False) -> list[Letter]:
    """Letters matching every given filter; redriven ones only with ``include_redriven``."""
    wanted_ids = set(ids)
    return [
        x for x in letters
        if (include_redriven or not x.redriven)
        and (stage is None or x.letter.stage == stage)
        and (error_class is None or error_class_matches(x.letter.error_class, error_class))
        and (not wanted_ids or x.id in wanted_ids)
    ]


@dataclass(frozen=True)
class Redriven:
    """One letter sent back: to which topic, partition and offset."""

    id: str
    topic: str
    partition: int
    offset: int


def redrive_message_headers(letter: DeadLetter, lid: str) -> list[tuple[str, bytes]]:
    """The original headers without dlq.* (already stripped by DeadLetter) nor an earlier redrive.from, plus ours."""
    kept = [(k, v) for k, v in letter.original_headers if k != H_REDRIVE_FROM]
    return [*kept, (H_REDRIVE_FROM, f"{DEAD_LETTER_QUEUE}:{lid}".encode())]


def redrive(settings: Settings, letters: list[Letter], timeout_s: float = 30.0) -> list[Redriven]:
    """Re-publish ``letters`` to their source topics and mark them, all in one transaction.

    Letters already marked are refused (ValueError): select() leaves them out unless asked.
    Returns where each landed. On any error the transaction is aborted: nothing is redriven.
    """
    again = [x.id for x in letters if x.redriven]
    if again:
        raise ValueError(f"already redriven: {', '.join(again)}")
    broken = [x.id for x in letters if not x.letter.topic]
    if broken:
        raise ValueError(f"no dlq.topic header, cannot tell where to redrive: {', '.join(broken)}")
    if not letters:
        return []
    producer = Producer({**producer_config(settings), "transactional.id": settings.topics.prefix + TRANSACTIONAL_ID})
    delivered: dict[str, tuple[str, int, int]] = {}
    errors: list[str] = []

    def on_delivery(lid: str) -> Callable[[KafkaError | None, Message], None]:
        def callback(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(f"{lid}: {err.str()}")
            else:
                delivered[lid] = (msg.topic(), msg.partition(), msg.offset())
        return callback

    producer.init_transactions(timeout_s)
    producer.begin_transaction()
    try:
        now = str(int(time.time() * 1000)).encode()
        by = f"{getpass.getuser()}@{socket.gethostname()}".encode()
        for x in letters:
            d = x.letter
            producer.produce(d.topic, value=d.value, key=d.key, headers=redrive_message_headers(d, x.id),
                             on_delivery=on_delivery(x.id))
            marker = [(H_MARKER, MARKER_REDRIVEN), (H_REDRIVEN_ID, x.id.encode()), (H_REDRIVEN_AT, now), (H_REDRIVEN_BY, by)]
            # Same partition as the letter: a reader meets the marker after the letter it marks.
            producer.produce(TopicNames(settings.topics.prefix)(DEAD_LETTER_QUEUE), value=None, key=d.key, partition=x.partition, headers=marker)
        if producer.flush(timeout_s) or errors:
            raise KafkaException(KafkaError(KafkaError._FAIL, "; ".join(errors) or "not all messages were delivered"))
        producer.commit_transaction(timeout_s)
    except BaseException:
        producer.abort_transaction(timeout_s)
        raise
    return [Redriven(lid, *delivered[lid]) for lid in (x.id for x in letters)]


def format_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def describe_value(value: bytes | None, limit: int = 4000) -> str:
    """The value as pretty JSON if it is JSON, else a byte count and a printable prefix."""
    if value is None:
        return "(null)"
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)[:limit]
    except (ValueError, UnicodeDecodeError):
        return f"({len(value)} bytes, not JSON) {value[:200]!r}"


# --- CLI ------------------------------------------------------------------------------------------


@click.group("dlq")
def dlq_group() -> None:
    """Inspect and redrive the dead-letter queue. A letter's ID is PARTITION:OFFSET in dead-letter-queue."""


def _letters(settings: Settings) -> list[Letter]:
    check_kafka(settings)
    try:
        return read_letters(settings)
    except (KafkaException, TimeoutError) as exc:
        raise click.ClickException(f"reading {DEAD_LETTER_QUEUE} at {settings.kafka.bootstrap_servers} failed: {exc}") from exc


@dlq_group.command("list")
@click.option("--stage", default=None, help="Only letters of this stage, e.g. resize.")
@click.option("--error-class", default=None, help="Only this error class (full name or last part, e.g. PermanentError).")
@click.option("--all", "include_redriven", is_flag=True, help="Include letters already redriven.")
@click.pass_obj
def list_command(settings: Settings, stage: str | None, error_class: str | None, include_redriven: bool) -> None:
    """One line per letter, oldest first: ID, time, stage, source, error class, status, message."""
    letters = select(_letters(settings), stage, error_class, include_redriven=include_redriven)
    click.echo(f"{'ID':<10} {'FAILED AT':<20} {'STAGE':<10} {'SOURCE':<24} {'ERROR':<24} {'STATUS':<9} MESSAGE")
    for x in letters:
        d = x.letter
        source = f"{d.topic}:{d.partition}:{d.offset}"
        status = "redriven" if x.redriven else "pending"
        failed = format_time(d.failed_at_ms or x.timestamp_ms)
        message = d.error_message.replace("\n", " ")[:100]
        click.echo(f"{x.id:<10} {failed:<20} {d.stage:<10} {source:<24} {d.error_class.rsplit('.', 1)[-1]:<24} {status:<9} {message}")
    click.echo(f"{len(letters)} letter(s)", err=True)


@dlq_group.command("show")
@click.argument("letter_id")
@click.pass_obj
def show_command(settings: Settings, letter_id: str) -> None:
    """Everything about one letter: failure, source, original headers, key and value."""
    try:
        parse_id(letter_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ID") from exc
    found = [x for x in _letters(settings) if x.id == letter_id]
    if not found:
        raise click.ClickException(f"no dead letter {letter_id} (IDs are PARTITION:OFFSET, see `darkroom dlq list --all`)")
    x = found[0]
    d = x.letter
    lines = [
        f"id:          {x.id}",
        "status:      " + (f"redriven at {format_time(x.redriven_at_ms or 0)} by {x.redriven_by}" if x.redriven else "pending"),
        f"failed at:   {format_time(d.failed_at_ms or x.timestamp_ms)}",
        f"stage:       {d.stage}",
        f"source:      {d.topic} partition {d.partition} offset {d.offset}",
        f"error:       {d.error_class} ({d.error_kind}) after {d.attempts} attempt(s)",
        f"message:     {d.error_message}",
        f"key:         {d.key.decode(errors='replace') if d.key is not None else '(null)'}",
        "headers:",
        *(f"  {k}: {v.decode(errors='replace')}" for k, v in d.original_headers),
        "value:",
        describe_value(d.value),
    ]
    click.echo("\n".join(lines))


@dlq_group.command("redrive")
@click.option("--stage", default=None, help="Only letters of this stage.")
@click.option("--error-class", default=None, help="Only this error class (full name or last part).")
@click.option("--id", "ids", multiple=True, help="Only these letters (PARTITION:OFFSET, repeatable).")
@click.option("--dry-run", is_flag=True, help="List what would be redriven, send nothing.")
@click.pass_obj
def redrive_command(settings: Settings, stage: str | None, error_class: str | None, ids: tuple[str, ...], dry_run: bool) -> None:
    """Re-publish pending letters to their source topic (original key, value, headers), once each.

    Fix the cause first (upload the missing original, deploy the fixed stage): a letter that fails
    again becomes a new letter with a new ID.
    """
    for raw in ids:
        try:
            parse_id(raw)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--id") from exc
    letters = _letters(settings)
    known = {x.id: x for x in letters}
    for raw in ids:
        if raw not in known:
            raise click.ClickException(f"no dead letter {raw}")
        if known[raw].redriven:
            click.echo(f"{raw}: already redriven at {format_time(known[raw].redriven_at_ms or 0)}, skipped", err=True)
    chosen = select(letters, stage, error_class, ids)
    if dry_run:
        for x in chosen:
            click.echo(f"would redrive {x.id} -> {x.letter.topic} ({x.letter.stage}: {x.letter.error_message[:80]})")
        click.echo(f"dry run: {len(chosen)} letter(s), nothing sent", err=True)
        return
    try:
        done = redrive(settings, chosen)
    except KafkaException as exc:
        raise click.ClickException(f"redrive aborted, nothing was sent: {exc}") from exc
    for r in done:
        click.echo(f"redrove {r.id} -> {r.topic}:{r.partition}:{r.offset}")
    click.echo(f"{len(done)} letter(s) redriven", err=True)
