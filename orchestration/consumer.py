"""The base of every business consumer: apply an event to the database exactly once.

`OrchestrationStage.handle` runs one SQLite transaction that
1. checks the event id against `processed` (the idempotency key) and stops if it was applied;
2. records the event id there;
3. applies the event to the consumer's tables (`apply`), writing any events to publish to the
   `outbox` and any mail to send to the `mail_outbox` (both with deterministic ids);
and returns no messages to the runner. The runner then commits the offset; the consumer's
`OutboxRelay` publishes the outbox in Kafka transactions and sends the mails.

So a crash anywhere before the offset commit makes the runner redeliver, and the redelivery stops at
step 1: no second outbox row, hence no second event and no second mail. The runner stays
at-least-once; the effects become exactly-once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from abc import abstractmethod
from datetime import UTC, datetime

from pydantic import BaseModel

from orchestration.db import Database
from orchestration.faults import maybe_crash
from orchestration.mail import Mail
from pipeline.contracts.events import event_message
from pipeline.envelope import Envelope
from pipeline.errors import ErrorKind, default_classify
from pipeline.progress import Progress
from pipeline.publisher import Outgoing
from pipeline.registry import Event, EventRegistry
from pipeline.settings import Settings
from pipeline.stage import EventStage

log = logging.getLogger(__name__)


class Effects:
    """What `apply` may do besides changing its tables: queue events and mails, in the same transaction.

    In replay mode (rebuilding state from the topics) nothing is queued: the events and mails of
    the past were published and sent when the events were first applied.
    """

    def __init__(self, tx: sqlite3.Connection, consumer: str, producer: str, traceparent: str | None, replay: bool) -> None:
        self.tx = tx
        self.consumer = consumer
        self.producer = producer
        self.traceparent = traceparent
        self.replay = replay

    def emit(
        self,
        payload: BaseModel,
        *,
        event_id: str,
        cause: Envelope | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> None:
        """Queue an event for publication (the relay publishes it after this transaction commits)."""
        if self.replay:
            return
        _, message = event_message(
            payload, event_id=event_id, producer=self.producer, cause=cause, correlation_id=correlation_id,
            causation_id=causation_id, traceparent=self.traceparent,
        )
        add_outgoing(self.tx, self.consumer, event_id, message)

    def mail(self, kind: str, ref: str, mail: Mail) -> None:
        """Queue a mail (once per Message-ID: queuing the same mail again is a no-op)."""
        if self.replay:
            return
        self.tx.execute(
            "INSERT OR IGNORE INTO mail_outbox (message_id, consumer, kind, ref, correlation_id, cause_event_id,"
            " traceparent, recipient, subject, body, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (mail.message_id, self.consumer, kind, ref, mail.correlation_id, mail.cause_event_id, self.traceparent,
             mail.recipient, mail.subject, mail.body, datetime.now(UTC).isoformat()),
        )


def add_outgoing(tx: sqlite3.Connection, consumer: str, event_id: str, message: Outgoing) -> None:
    """Insert one message into the outbox; the same event id twice is kept once."""
    headers = json.dumps([[k, v.decode("latin-1")] for k, v in message.headers])
    tx.execute(
        "INSERT OR IGNORE INTO outbox (consumer, event_id, topic, key, value, headers) VALUES (?,?,?,?,?,?)",
        (consumer, event_id, message.topic, message.key, message.value, headers),
    )


class OrchestrationStage(EventStage):
    """An EventStage whose state lives in the orchestration database (see the module docstring)."""

    def __init__(self, registry: EventRegistry, db: Database, settings: Settings) -> None:
        super().__init__(registry)
        self.db = db
        self.settings = settings
        self.relay: object | None = None  # set by `start_relay`; typed loosely to avoid an import cycle

    # -- what subclasses write --------------------------------------------------------------------

    @abstractmethod
    def apply(self, tx: sqlite3.Connection, event: Event[BaseModel], fx: Effects) -> None:
        """Change this consumer's tables for `event`; runs inside the event's transaction."""

    def on_mail_sent(self, tx: sqlite3.Connection, row: sqlite3.Row, fx: Effects) -> None:
        """Called in the transaction that marks a mail of this consumer as sent."""

    def tick(self, tx: sqlite3.Connection, now: float, fx: Effects) -> None:
        """Called by the relay on every round: time-driven work (e.g. batched notifications)."""

    # -- the framework side -----------------------------------------------------------------------

    def handle(self, event: Event[BaseModel], traceparent: str | None) -> list[Outgoing]:
        applied = self.apply_once(event, traceparent)
        if applied:
            maybe_crash("after-apply", self.name)
        wake = getattr(self.relay, "wake", None)
        if wake is not None:
            wake()
        return []

    def apply_once(self, event: Event[BaseModel], traceparent: str | None = None, replay: bool = False) -> bool:
        """Apply `event` unless its id is recorded; False if it was (a redelivery)."""
        with self.db.transaction() as tx:
            seen = tx.execute(
                "SELECT 1 FROM processed WHERE consumer = ? AND event_id = ?", (self.name, event.envelope.event_id)
            ).fetchone()
            if seen is not None:
                log.info("%s: %s %s already applied: redelivery skipped", self.name,
                         event.envelope.event_type, event.envelope.event_id)
                return False
            tx.execute("INSERT INTO processed (consumer, event_id) VALUES (?, ?)", (self.name, event.envelope.event_id))
            self.apply(tx, event, Effects(tx, self.name, self.settings.producer_name, traceparent, replay))
        return True

    def classify(self, exc: BaseException) -> ErrorKind:
        # A locked database is another process's long transaction, not a bad event.
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return ErrorKind.TRANSIENT
        return default_classify(exc)

    def start(self) -> None:
        """Start the outbox relay: called by the runner when the worker starts consuming."""
        start = getattr(self.relay, "start", None)
        if start is not None:
            start()

    def watch_progress(self, progress: Progress) -> None:
        """Let the worker's liveness watch the outbox relay (pipeline/progress.py)."""
        watch = getattr(self.relay, "watch_progress", None)
        if watch is not None:
            watch(progress)

    def close(self) -> None:
        stop = getattr(self.relay, "stop", None)
        if stop is not None:
            stop()
