"""Quiet Kafka client logs in an outage: one line when a client loses the brokers, one when the
failures stop, and a summary every `summary_s` while they go on.

Left to itself librdkafka writes every failed connection attempt of every client to stderr: about
20 "Connect … failed" lines a second per worker while the broker was down (issue 10: 1,900 lines in
the gallery log in 20 s). Every client we create gets a `BrokerLog` (pipeline/kafka_config.py) as
its `logger` and `error_cb`:
- connection failures (`_TRANSPORT`, `_ALL_BROKERS_DOWN`, `_RESOLVE`, librdkafka's `FAIL` lines)
  are counted, not printed: a WARNING when the client loses every broker, then a WARNING summary
  per `summary_s` while failures go on, then an INFO once none came for `quiet_s` (librdkafka
  signals no reconnection, so "failures stopped" is the evidence it is back, or idle);
- a connection failure while the client still has brokers is shown at most once per `summary_s`
  (at the next tick, so that the "all brokers down" that usually follows makes it one line);
- every other line and error goes to Python logging at its own level.
Reported by librdkafka only when the client is polled (confluent-kafka forwards logs from `poll`);
a ticker thread notices the quiet period, since nothing may be polled then.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

log = logging.getLogger("pipeline.kafka")

CONNECTION_ERRORS = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})
# librdkafka log facilities that report a failed or dropped broker connection.
CONNECTION_FACILITIES = frozenset({"FAIL", "BROKERFAIL", "ERROR"})


class BrokerLog:
    """The `logger` and `error_cb` of one Kafka client (see the module docstring)."""

    def __init__(
        self, client: str, *, summary_s: float = 30.0, quiet_s: float = 15.0,
        logger: logging.Logger = log, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._summary_s = summary_s
        self._quiet_s = quiet_s
        self._log = logger
        self._clock = clock
        self._lock = threading.Lock()
        self.down_since: float | None = None  # all brokers lost, and failures since
        self._failures = 0  # connection failures since the last line about them
        self._total = 0  # connection failures since the brokers were lost
        self._last_failure = 0.0
        self._last_line = -1e18
        self._last_detail = ""

    # -- what librdkafka calls --------------------------------------------------------------------

    def log(self, level: int, fmt: str, *args: Any) -> None:
        """librdkafka's log line (confluent-kafka calls `logger.log(level, "%s [%s] %s", fac, name, text)`)."""
        fac = str(args[0]) if args else ""
        text = str(args[-1]) if args else fmt
        if fac in CONNECTION_FACILITIES or "Connect to " in text or "Connection refused" in text:
            self.connection_failed(text)
            return
        self._log.log(level, "%s: " + fmt, self.client, *args)

    def error(self, err: KafkaError) -> None:
        """librdkafka's error callback."""
        if err.code() in CONNECTION_ERRORS:
            self.connection_failed(err.str(), all_down=err.code() == KafkaError._ALL_BROKERS_DOWN)
            return
        self._log.log(logging.ERROR if err.fatal() else logging.WARNING, "%s: Kafka error: %s", self.client, err.str())

    # -- the state ----------------------------------------------------------------------------------

    def connection_failed(self, detail: str, all_down: bool = False) -> None:
        """Count one failed or dropped connection; say so when it matters (see the module docstring)."""
        with self._lock:
            now = self._clock()
            self._failures += 1
            self._total += 1
            self._last_failure = now
            if not all_down:
                self._last_detail = detail
            if self.down_since is None and all_down:
                self.down_since = now
                self._last_line = now
                self._failures = 0
                self._log.warning("%s: lost every Kafka broker (%s); retrying quietly, a summary every %gs",
                                  self.client, self._last_detail or detail, self._summary_s)
            elif self.down_since is not None and now - self._last_line >= self._summary_s:
                self._say(now)
            # A failure while other brokers are up waits for the next tick: usually "all brokers down"
            # follows within milliseconds, and then one line says both.

    def tick(self) -> None:
        """Called now and then (by the ticker): the back-line after a quiet period, summaries meanwhile."""
        with self._lock:
            now = self._clock()
            if self.down_since is not None and now - self._last_failure >= self._quiet_s:
                self._log.info("%s: Kafka connection failures stopped after %.0fs down (%d failed attempts); "
                               "back or idle", self.client, self._last_failure - self.down_since, self._total)
                self.down_since = None
                self._failures = self._total = 0
                self._last_line = -1e18
            elif self._failures and now - self._last_line >= self._summary_s:
                self._say(now)

    def _say(self, now: float) -> None:
        if self.down_since is not None:
            self._log.warning("%s: Kafka still unreachable after %.0fs: %d failed attempt(s) in the last %.0fs; last: %s",
                              self.client, now - self.down_since, self._failures, now - self._last_line,
                              self._last_detail)
        else:
            self._log.warning("%s: Kafka connection failure (%d since the last such line; at most one per %gs): %s",
                              self.client, self._failures, self._summary_s, self._last_detail)
        self._failures = 0
        self._last_line = now


class _Ticker:
    """One daemon thread per process that ticks every live BrokerLog once a second."""

    def __init__(self) -> None:
        self._logs: weakref.WeakSet[BrokerLog] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, broker_log: BrokerLog) -> None:
        with self._lock:
            self._logs.add(broker_log)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kafka-log-ticker", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(1.0)  # a periodic timer: there is no event to wait for
            with self._lock:
                logs = list(self._logs)
            for broker_log in logs:
                broker_log.tick()


_ticker = _Ticker()


def client_callbacks(client: str) -> dict[str, Any]:
    """The `logger` and `error_cb` properties for a new client, with its own BrokerLog (ticked)."""
    broker_log = BrokerLog(client)
    _ticker.add(broker_log)
    return {"logger": broker_log, "error_cb": broker_log.error}
