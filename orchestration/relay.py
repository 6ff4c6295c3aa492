"""The outbox relay: publishes a consumer's outbox exactly once and sends its mails.

Publishing: rows are produced inside a Kafka transaction that also commits, as the offset of the
consumer group `darkroom.outbox.<consumer>.<db>` on `shoots[0]`, the next outbox sequence number
(the "high-water mark"). Group offsets are the one thing besides messages that a producer
transaction commits atomically, which is why they hold a number that is not an offset of `shoots`.
After a crash, a relay reads the mark first: rows below it were published (by the transaction that
wrote the mark), rows at or above it were not. The database flag `published` is only a cache of
that; a crash between the Kafka commit and the flag costs nothing.

One relay per consumer and database at a time: an exclusive file lock next to the database (every
process sharing a SQLite file is on one host), and the transactional id fences a zombie.

Mails: sent at least once, with a deterministic Message-ID, and marked sent (and their follow-up
events queued) in one transaction after the server's 250. A crash between the 250 and that
transaction resends the same mail; the receiver keeps one per Message-ID.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from orchestration.consumer import Effects
from orchestration.db import Database
from orchestration.faults import maybe_crash
from orchestration.mail import Mail, MailRejected, send
from pipeline.contracts.topics import SHOOTS
from pipeline.errors import TransientError
from pipeline.kafka_config import consumer_config, producer_config
from pipeline.retry import Backoff
from pipeline.settings import Settings
from pipeline.topics import TopicNames

if TYPE_CHECKING:
    from orchestration.consumer import OrchestrationStage

log = logging.getLogger(__name__)

MARK_PARTITION = (SHOOTS, 0)
_BATCH = 500
_TXN_TIMEOUT_S = 30.0


def relay_id(consumer: str, db: Database) -> str:
    """Transactional id and mark group of one consumer's relay on one database."""
    digest = hashlib.sha256(str(db.path).encode()).hexdigest()[:12]
    return f"darkroom.outbox.{consumer}.{digest}"


class TransactionalOutbox:
    """The Kafka side: a transactional producer and the high-water mark it commits."""

    def __init__(self, settings: Settings, ident: str) -> None:
        self._settings = settings
        self.ident = ident
        self._producer: Producer | None = None
        self._marks: Consumer | None = None
        self._names = TopicNames(settings.topics.prefix)  # outbox rows hold logical topic names
        self._mark_partition = (self._names(MARK_PARTITION[0]), MARK_PARTITION[1])
        self.mark = 0

    def _open(self) -> Producer:
        if self._producer is None:
            config = {**producer_config(self._settings), "transactional.id": self.ident,
                      "transaction.timeout.ms": int(_TXN_TIMEOUT_S * 1000)}
            producer = Producer(config)
            # Fences any earlier producer of this id and aborts its open transaction, so the mark
            # read next is final: nobody else can commit one any more.
            producer.init_transactions(_TXN_TIMEOUT_S)
            self._marks = Consumer(consumer_config(self._settings, self.ident))
            tp = TopicPartition(*self._mark_partition)
            [committed] = self._marks.committed([tp], timeout=_TXN_TIMEOUT_S)
            self.mark = max(committed.offset, 0)
            self._producer = producer
            log.info("%s: outbox mark %d", self.ident, self.mark)
        return self._producer

    def publish(self, rows: list[sqlite3.Row]) -> int:
        """Publish rows (sorted by seq, all >= mark) and the new mark in one transaction; returns the mark."""
        producer = self._open()
        assert self._marks is not None
        producer.begin_transaction()
        try:
            for row in rows:
                headers = [(k, v.encode("latin-1")) for k, v in json.loads(row["headers"])]
                while True:
                    try:
                        producer.produce(self._names(row["topic"]), key=row["key"], value=row["value"], headers=headers)
                        break
                    except BufferError:
                        producer.poll(0.05)
            new_mark = rows[-1]["seq"] + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(*self._mark_partition, new_mark)], self._marks.consumer_group_metadata(), _TXN_TIMEOUT_S
            )
            producer.commit_transaction(_TXN_TIMEOUT_S)
        except KafkaException as exc:
            self._recover(exc)
            raise TransientError(f"{self.ident}: outbox transaction failed: {exc}") from exc
        self.mark = new_mark
        return new_mark

    def _recover(self, exc: KafkaException) -> None:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is not None and err.txn_requires_abort() and self._producer is not None:
            try:
                self._producer.abort_transaction(_TXN_TIMEOUT_S)
                return
            except KafkaException:
                pass
        # Fatal or fenced, or the abort failed: start over; init_transactions re-reads the mark.
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
        if self._marks is not None:
            self._marks.close()
        self._producer = None
        self._marks = None


class OutboxRelay:
    """A thread of a consumer's worker: publishes its outbox, sends its mails, runs its `tick`."""

    def __init__(self, stage: OrchestrationStage, db: Database, settings: Settings) -> None:
        self.stage = stage
        self.db = db
        self.settings = settings
        # Prefixed like topics and groups (DARKROOM_TOPICS__PREFIX), so one prefixed ACL covers it.
        self.kafka = TransactionalOutbox(settings, settings.topics.prefix + relay_id(stage.name, db))
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock_file: IO[str] | None = None
        self._backoff = Backoff(0.2, 5.0, 0)
        self._thread = threading.Thread(target=self._run, name=f"{stage.name}-relay", daemon=True)

    def start(self) -> OutboxRelay:
        """Start the relay thread (once: a stopped relay is not restarted)."""
        if not self._thread.is_alive() and not self._stopping.is_set():
            self._thread.start()
        return self

    def wake(self) -> None:
        """Something was queued: run a round now instead of at the next tick."""
        self._wake.set()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Finish the current round plus one more (what the last events queued), then stop."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.kafka.close()
        if self._lock_file is not None:
            self._lock_file.close()  # lets another worker of this consumer take over the relay
            self._lock_file = None

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            stopping = self._stopping.is_set()
            if self._holds_lock():
                try:
                    self.run_once()
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - the relay must outlive any one failure
                    failures += 1
                    log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                            "%s relay: round failed (%d), retrying: %s", self.stage.name, failures, exc)
                    self._wake.wait(self._backoff.delay(failures))
                    if not stopping:
                        continue
            if stopping:
                return
            self._wake.wait(self.settings.orchestration.relay_tick_s)
            self._wake.clear()

    def _holds_lock(self) -> bool:
        if self._lock_file is not None:
            return True
        handle = open(f"{self.db.path}.{self.stage.name}.relay.lock", "w")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False  # another worker of this consumer relays; the OS frees the lock if it dies
        self._lock_file = handle
        return True

    def run_once(self) -> None:
        """One round: time-driven work, then mails, then events (mails may queue events)."""
        with self.db.transaction() as tx:
            self.stage.tick(tx, time.time(), self._effects(tx))
        self._send_mails()
        self._publish()

    def _effects(self, tx: sqlite3.Connection, traceparent: str | None = None) -> Effects:
        return Effects(tx, self.stage.name, self.settings.producer_name, traceparent, replay=False)

    def _send_mails(self) -> None:
        rows = self.db.conn().execute(
            "SELECT * FROM mail_outbox WHERE consumer = ? AND status = 'pending' ORDER BY created_at LIMIT 100",
            (self.stage.name,),
        ).fetchall()
        for row in rows:
            mail = Mail(row["message_id"], row["recipient"], row["subject"], row["body"],
                        row["correlation_id"], row["cause_event_id"])
            try:
                send(mail, self.settings)
            except MailRejected as exc:
                log.error("%s: mail %s refused for good: %s", self.stage.name, mail.message_id, exc)
                with self.db.transaction() as tx:
                    tx.execute("UPDATE mail_outbox SET status = 'failed', attempts = attempts + 1 WHERE message_id = ?",
                               (mail.message_id,))
                continue
            maybe_crash("after-smtp", self.stage.name)
            with self.db.transaction() as tx:
                tx.execute("UPDATE mail_outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1"
                           " WHERE message_id = ?", (datetime.now(UTC).isoformat(), mail.message_id))
                self.stage.on_mail_sent(tx, row, self._effects(tx, row["traceparent"]))

    def _publish(self) -> None:
        conn = self.db.conn()
        while True:
            rows = conn.execute(
                "SELECT seq, topic, key, value, headers FROM outbox WHERE consumer = ? AND published = 0"
                " ORDER BY seq LIMIT ?", (self.stage.name, _BATCH),
            ).fetchall()
            if not rows:
                return
            self.kafka._open()
            done = [r for r in rows if r["seq"] < self.kafka.mark]  # published by a relay that died before flagging
            todo = [r for r in rows if r["seq"] >= self.kafka.mark]
            if todo:
                self.kafka.publish(todo)
                maybe_crash("after-publish", self.stage.name)
                log.info("%s relay: published %d event(s), mark %d", self.stage.name, len(todo), self.kafka.mark)
            last = (todo or done)[-1]["seq"]
            with self.db.transaction() as tx:
                tx.execute("UPDATE outbox SET published = 1 WHERE consumer = ? AND seq <= ? AND published = 0",
                           (self.stage.name, last))
