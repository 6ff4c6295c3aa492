"""The outbox relay: publishes a consumer's outbox exactly once and sends its mails.

Publishing: rows are produced inside a Kafka transaction that also writes the relay's "high-water
mark", the next outbox sequence number, as a record on the compacted topic `outbox.marks`
(orchestration/outbox_marks.py). After a crash, a relay reads the mark first: rows below it were
published (by the transaction that wrote the mark), rows at or above it were not. The database flag
`published` is only a cache of that; a crash between the Kafka commit and the flag costs nothing.

No call of the relay blocks without a bound: every transactional call has a timeout, and after a
timeout or a fatal error the producer is discarded and a new one made; its `init_transactions`
fences the old one by transactional id and aborts what it left open, and the mark is read again.
(Relays used to commit the mark as a group offset with `send_offsets_to_transaction`, which can
block forever when the group coordinator goes away: librdkafka issues 5456 and 5511. A relay that
finds no mark record reads that old group offset once, so existing outboxes carry over.) Each round
reports to the worker's progress heartbeats, so a call that hangs anyway fails `/health/live`.

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

from confluent_kafka import KafkaError, KafkaException, Producer

from orchestration.consumer import Effects
from orchestration.db import Database
from orchestration.faults import maybe_crash, maybe_hang
from orchestration.mail import Mail, MailRejected, send
from orchestration.outbox_marks import MARK_PARTITION, mark_record, read_legacy_mark, read_mark
from pipeline.bounded import discard
from pipeline.contracts.topics import OUTBOX_MARKS
from pipeline.errors import TransientError
from pipeline.kafka_config import producer_config
from pipeline.progress import Heartbeat, Progress, unwatched
from pipeline.retry import Backoff
from pipeline.settings import Settings
from pipeline.topics import TopicNames

if TYPE_CHECKING:
    from orchestration.consumer import OrchestrationStage

log = logging.getLogger(__name__)

_BATCH = 500
_TXN_TIMEOUT_S = 30.0  # bound of each transactional call
# How long a transaction may stay open before the broker aborts it. A relay killed mid-transaction
# leaves one open on `outbox.marks`, whose single partition every relay reads `read_committed` at
# start-up, so every starting relay waits behind it until the broker aborts it. A relay's transaction
# is at most a few hundred small records: 15 s bounds that wait without cutting a live one short.
_TXN_LIFETIME_S = 15.0
# Reading the mark back may wait for another relay's open transaction on `outbox.marks` to end:
# longer than a transaction may stay open.
_MARK_READ_TIMEOUT_S = _TXN_LIFETIME_S + 30.0


def relay_id(consumer: str, db: Database) -> str:
    """Transactional id and mark key of one consumer's relay on one database."""
    digest = hashlib.sha256(str(db.path).encode()).hexdigest()[:12]
    return f"darkroom.outbox.{consumer}.{digest}"


class TransactionalOutbox:
    """The Kafka side: a transactional producer and the high-water mark it writes in each transaction."""

    def __init__(self, settings: Settings, ident: str, stage: str = "") -> None:
        self._settings = settings
        self.ident = ident
        self._stage = stage
        self._producer: Producer | None = None
        self._names = TopicNames(settings.topics.prefix)  # outbox rows hold logical topic names
        self.mark = 0

    def _open(self) -> Producer:
        if self._producer is None:
            config = {**producer_config(self._settings), "transactional.id": self.ident,
                      "transaction.timeout.ms": int(_TXN_LIFETIME_S * 1000),
                      # librdkafka refuses a message timeout longer than the transaction's.
                      "delivery.timeout.ms": int(_TXN_LIFETIME_S * 1000)}
            producer = Producer(config)
            try:
                # Fences any earlier producer of this id and aborts its open transaction, so the mark
                # read next is final: nobody else can commit one any more.
                producer.init_transactions(_TXN_TIMEOUT_S)
                mark = read_mark(self._settings, self.ident, _MARK_READ_TIMEOUT_S)
                if mark is None:
                    mark = read_legacy_mark(self._settings, self.ident, _TXN_TIMEOUT_S)
                    log.info("%s: no mark in %s yet; starting from the group-offset mark %d", self.ident,
                             OUTBOX_MARKS, mark)
            except Exception:
                discard(producer, "relay-producer")
                raise
            self.mark = mark
            self._producer = producer
            log.info("%s: outbox mark %d", self.ident, self.mark)
        return self._producer

    def publish(self, rows: list[sqlite3.Row]) -> int:
        """Publish rows (sorted by seq, all >= mark) and the new mark in one transaction; returns the mark."""
        producer = self._open()
        new_mark = rows[-1]["seq"] + 1
        try:
            producer.begin_transaction()
            for row in rows:
                headers = [(k, v.encode("latin-1")) for k, v in json.loads(row["headers"])]
                self._produce(producer, self._names(row["topic"]), row["key"], row["value"], headers)
            key, value = mark_record(self.ident, new_mark)
            self._produce(producer, self._names(OUTBOX_MARKS), key, value, [], partition=MARK_PARTITION)
            maybe_hang("relay.commit", self._stage)
            producer.commit_transaction(_TXN_TIMEOUT_S)
        except KafkaException as exc:
            self._recover(exc)
            raise TransientError(f"{self.ident}: outbox transaction failed: {exc}") from exc
        self.mark = new_mark
        return new_mark

    @staticmethod
    def _produce(producer: Producer, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes]], partition: int | None = None) -> None:
        extra = {} if partition is None else {"partition": partition}
        deadline = time.monotonic() + _TXN_TIMEOUT_S
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers, **extra)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise KafkaException(KafkaError(KafkaError._QUEUE_FULL, "producer queue stayed full")) from None
                producer.poll(0.05)

    def _recover(self, exc: KafkaException) -> None:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is not None and err.txn_requires_abort() and self._producer is not None:
            try:
                self._producer.abort_transaction(_TXN_TIMEOUT_S)
                return
            except KafkaException:
                pass
        # Timed out, fatal or fenced, or the abort failed: the next round makes a new producer, whose
        # init_transactions fences this one and settles its transaction; the mark is read again.
        self.reset()

    def serve(self) -> None:
        """Serve the producer's log and error callbacks (confluent-kafka forwards them from poll)."""
        if self._producer is not None:
            self._producer.poll(0)

    def reset(self) -> None:
        """Drop the producer without waiting on it (it may be stuck); the next round starts over."""
        producer, self._producer = self._producer, None
        if producer is not None:
            discard(producer, "relay-producer")

    def close(self) -> None:
        """Stop: what the current transaction did not commit is aborted by the broker or the next relay."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(5)
            discard(producer, "relay-producer")


class OutboxRelay:
    """A thread of a consumer's worker: publishes its outbox, sends its mails, runs its `tick`."""

    def __init__(self, stage: OrchestrationStage, db: Database, settings: Settings) -> None:
        self.stage = stage
        self.db = db
        self.settings = settings
        # Prefixed like topics and groups (DARKROOM_TOPICS__PREFIX), so one prefixed ACL covers it.
        self.kafka = TransactionalOutbox(settings, settings.topics.prefix + relay_id(stage.name, db), stage.name)
        self._beat: Heartbeat = unwatched()
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

    def watch_progress(self, progress: Progress) -> None:
        """Report rounds to the worker's progress heartbeats (a round that never ends fails liveness)."""
        self._beat = progress.track(f"{self.stage.name} outbox relay")

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
                self._beat.busy()
                try:
                    self.run_once()
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - the relay must outlive any one failure
                    failures += 1
                    log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                            "%s relay: round failed (%d), retrying: %s", self.stage.name, failures, exc)
                finally:
                    # A failed round is an outcome too: the relay is not stuck, its broker may be down.
                    self._beat.progressed()
                    self._beat.idle()
                if failures:
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
            self._beat.progressed()
            with self.db.transaction() as tx:
                tx.execute("UPDATE mail_outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1"
                           " WHERE message_id = ?", (datetime.now(UTC).isoformat(), mail.message_id))
                self.stage.on_mail_sent(tx, row, self._effects(tx, row["traceparent"]))

    def _publish(self) -> None:
        self.kafka.serve()
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
                self._beat.progressed()
                maybe_crash("after-publish", self.stage.name)
                log.info("%s relay: published %d event(s), mark %d", self.stage.name, len(todo), self.kafka.mark)
            last = (todo or done)[-1]["seq"]
            with self.db.transaction() as tx:
                tx.execute("UPDATE outbox SET published = 1 WHERE consumer = ? AND seq <= ? AND published = 0",
                           (self.stage.name, last))
