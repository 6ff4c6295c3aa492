"""The reconcile worker: the reconciler (stages/ingest/reconciler.py) on a timer, one instance at a time.

`darkroom worker reconcile` runs this stage in the ordinary stage runner, so it drains on SIGTERM,
serves /health/* and /metrics and is restarted by the fleet supervisor like every other worker.

- Timer: a thread of each instance produces a `reconcile.tick` to the topic `reconcile.ticks` every
  `DARKROOM_RECONCILE__INTERVAL_S` (60 s); a pass runs when a tick is processed. A tick that comes
  less than half an interval after the last pass began (a second instance's, or a backlog after a
  downtime) is skipped, so passes stay one interval apart whoever ticks.
- One instance at a time: `reconcile.ticks` has ONE partition, read by the consumer group
  `darkroom.reconcile`, so Kafka gives it to exactly one live member: only that member processes
  ticks, i.e. runs passes. A second instance (a rolling update, a stray `fleet up`) is a hot spare:
  it takes over within the session timeout when the holder dies. No lock service, no lease to renew;
  a frozen holder loses the partition like any frozen consumer and its late pass is harmless
  (the events it would publish carry the same deterministic ids).
- Cheap: the first pass after start-up and every `FULL_SWEEP_EVERY`-th (10th) pass are full sweeps;
  the others are incremental: they list only the prefixes `originals/shoots/{shoot}/` of shoots with
  activity since the last pass covered (an upload on `files`, a `shoot.created`, or an original that
  was too recent last time), check only originals modified since then, and read only that window of
  `files`. A lost notification is therefore found within interval + grace (about 2 minutes) when
  anything else happened in its shoot meanwhile (the usual case: a broker outage during an upload
  loses some of a batch), and at the latest at the next full sweep (10 intervals, 10 minutes).
- Cost on 100,000 originals: a full sweep is 100 LIST calls (1,000 keys each; 6 to 22 s of listing
  on the local versitygw, quiet to loaded) plus one read of `files` with header filtering only
  (~56,000 messages/s); an incremental pass is one LIST call per 1,000 originals of each active shoot
  (~150 ms each) plus the window of `files` and `shoots`. At the defaults: 100 LIST calls every
  10 minutes (bench/reconcile_list.py; bench/RESULTS.md, "Reconciler").
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaException

from pipeline.envelope import H_EVENT_TYPE
from pipeline.errors import ErrorKind, Unavailable, default_classify
from pipeline.kafka_config import producer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import Settings
from pipeline.stage import Received
from pipeline.topics import TopicSpec
from stages.ingest.reconciler import Interrupted, ReconcileReport, reconcile
from storage import ObjectStore, StorageUnavailable, open_store

log = logging.getLogger(__name__)

RECONCILE_TICKS = "reconcile.ticks"
TICK = "reconcile.tick"
_TICK = TICK.encode()


def topic_specs(partitions: int = 6, replication_factor: int = 1) -> list[TopicSpec]:
    """The tick topic (entry point `darkroom.topics:reconcile`): one partition, so one holder at a time.

    `partitions` is ignored on purpose: a second partition would let two instances run passes.
    Ticks are worth nothing after an interval, so an hour of retention is plenty.
    """
    return [TopicSpec(RECONCILE_TICKS, 1, replication_factor, {"retention.ms": str(3600 * 1000), "cleanup.policy": "delete"})]


PassRunner = Callable[..., ReconcileReport]


class ReconcileStage:
    """Runs a reconcile pass per tick it holds; ticks itself every interval (see the module docstring)."""

    name = "reconcile"
    topics = (RECONCILE_TICKS,)

    def __init__(
        self, store: ObjectStore, publisher: Callable[[], Publisher], settings: Settings,
        run_pass: PassRunner = reconcile, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        # Made at start(): building the stage (as `fleet up` does to learn its topics) opens no connection.
        self._new_publisher = publisher
        self._publisher: Publisher | None = None
        self._settings = settings
        self._config = settings.reconcile
        self._run_pass = run_pass
        self._clock = clock
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._ident = f"{socket.gethostname()}:{os.getpid()}"
        # State of the passes this instance ran; lost with the process, so a new holder starts with a full sweep.
        self.passes = 0
        self._last_start: float | None = None
        self._covered: datetime | None = None  # originals up to here were checked by the last pass
        self._recent_shoots: set[str] = set()

    # -- the stage --------------------------------------------------------------------------------

    def accepts(self, headers: Mapping[str, bytes]) -> bool:
        return headers.get(H_EVENT_TYPE) == _TICK

    def process(self, message: Received) -> list[Outgoing]:
        """Run a pass, unless one began less than half an interval ago. Publishes itself, returns nothing."""
        now = self._clock()
        if self._last_start is not None and now - self._last_start < self._config.interval_s / 2:
            return []
        full = self._covered is None or self.passes % self._config.full_sweep_every == 0
        grace = timedelta(seconds=self._config.grace_s)
        # One grace period of overlap: clocks of the S3 server and of this host may disagree that much.
        since = None if full or self._covered is None else self._covered - grace
        started_at = datetime.now(UTC)
        began = time.perf_counter()
        assert self._publisher is not None, "start() first"
        try:
            report = self._run_pass(
                self._store, self._publisher, self._settings, self._config.grace_s, since=since, now=started_at,
                stop=self._stop, also_shoots=set() if full else self._recent_shoots,
            )
        except KafkaException as exc:
            # Metadata and offset look-ups time out while the broker is away: wait for it, as for any outage.
            raise Unavailable(f"reconcile pass: the Kafka broker did not answer: {exc}") from exc
        # Only a pass that finished (and had its events acknowledged) moves the state on.
        self._last_start = now
        self._covered = started_at - grace
        self._recent_shoots = report.recent_shoots
        self.passes += 1
        log.log(
            logging.INFO if report.emitted or report.full else logging.DEBUG,
            "reconcile: %s pass %d in %.2fs: %d prefix(es), %d listed, %d older, %d known, %d too recent, %d emitted",
            "full" if report.full else "incremental", self.passes, time.perf_counter() - began, report.prefixes,
            report.listed, report.older, report.already_known, report.too_recent, len(report.emitted),
        )
        return []

    def classify(self, exc: BaseException) -> ErrorKind:
        # The broker or the store being away is worth waiting for; the tick is retried, not dead-lettered.
        if isinstance(exc, StorageUnavailable | KafkaException | Interrupted):
            return ErrorKind.TRANSIENT
        return default_classify(exc)

    def health_checks(self) -> dict[str, Callable[[], None]]:
        return {"storage": self._store.ping}

    def start(self) -> None:
        """Start ticking (called by the runner when the worker starts consuming)."""
        self._publisher = self._new_publisher()
        self._ticker = threading.Thread(target=self._tick_forever, name="reconcile-ticker", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        """Stop ticking and interrupt a pass in progress (it raises Interrupted and publishes nothing)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2.0)
        if self._publisher is not None:
            self._publisher.close()

    # -- the timer --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Produce one tick (fire and forget: a tick lost in an outage is replaced one interval later)."""
        assert self._publisher is not None, "start() first"
        body = json.dumps({"at": datetime.now(UTC).isoformat(), "by": self._ident}).encode()
        self._publisher.produce(Outgoing(RECONCILE_TICKS, b"tick", body, [(H_EVENT_TYPE, _TICK)]), lambda _err: None)

    def _tick_forever(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self._config.interval_s)


def build_stage(settings: Settings) -> ReconcileStage:
    """The reconcile stage (entry point `darkroom.stages:reconcile`)."""
    return ReconcileStage(
        open_store(settings.storage), lambda: Publisher(producer_config(settings), settings.worker.delivery_timeout_s),
        settings,
    )
