"""A worker's HTTP endpoints: `/health/live`, `/health/ready`, `/health/<check>` and `/metrics`.

Every health answer is JSON, 200 when healthy and 503 with the reason when not:
- `/health/live`: every part of the worker with work makes progress (pipeline/progress.py: the poll
  loop, the stage's work, the publisher, outbox relays); a stuck one is worth a restart;
- `/health/ready`: started, partitions assigned, not draining, and every check passes;
- `/health/kafka`: a metadata fetch from the broker answers within the check timeout;
- `/health/storage` (and any other named check): what the stage offers through an optional
  `health_checks()` method, e.g. `{"storage": store.ping}`; a stage without storage answers 200.

Checks are single-flight and cached for a second, so frequent probes never pile up calls on a slow
dependency, and each is bounded by a timeout even when the dependency hangs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

log = logging.getLogger(__name__)

Check = Callable[[], None]
"""A dependency check: returns when healthy, raises with a readable message when not."""

Probe = Callable[[], str | None]
"""A state probe (liveness, readiness): None when fine, else the reason it is not."""

KAFKA = "kafka"
STORAGE = "storage"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    ok: bool
    detail: str
    seconds: float


class HealthChecks:
    """Named checks, each run at most once at a time, cached for `cache_s` and bounded by `timeout_s`."""

    def __init__(
        self, checks: Mapping[str, Check], timeout_s: float = 2.0, cache_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic, failures_before_unready: int = 1,
    ) -> None:
        self.checks = dict(checks)
        self._failures_before_unready = failures_before_unready
        self._failures: dict[str, int] = {}  # consecutive failed runs per check
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, Future[CheckResult]] = {}
        self._cached: dict[str, tuple[float, CheckResult]] = {}
        # One thread per check is enough: a check is never run twice at once (single-flight).
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.checks)), thread_name_prefix="health-check")

    def run(self, name: str) -> CheckResult:
        """The result of check `name` (KeyError if there is none)."""
        check = self.checks[name]
        with self._lock:
            cached = self._cached.get(name)
            if cached is not None and self._clock() - cached[0] < self._cache_s:
                return cached[1]
            future = self._running.get(name)
            if future is None:
                future = self._running[name] = self._pool.submit(self._timed, name, check)
        try:
            return future.result(timeout=self._timeout_s)
        except FutureTimeout:
            return CheckResult(False, f"{name}: no answer within {self._timeout_s:g}s", self._timeout_s)

    def run_all(self) -> dict[str, CheckResult]:
        return {name: self.run(name) for name in self.checks}

    def unready_reasons(self) -> list[str]:
        """Run every check; the failures that lasted `failures_before_unready` runs in a row (readiness).

        A single failed probe (one slow S3 answer) leaves readiness alone: flipping every worker out
        of service at once for a blip would turn a hiccup into an outage.
        """
        results = self.run_all()
        with self._lock:
            return [r.detail for name, r in results.items()
                    if not r.ok and self._failures.get(name, 1) >= self._failures_before_unready]

    def _timed(self, name: str, check: Check) -> CheckResult:
        started = self._clock()
        try:
            check()
            result = CheckResult(True, "ok", self._clock() - started)
        except Exception as exc:  # any failure of a dependency is an answer, not a crash
            result = CheckResult(False, f"{name}: {type(exc).__name__}: {exc}", self._clock() - started)
        with self._lock:
            self._cached[name] = (self._clock(), result)
            self._running.pop(name, None)
            self._failures[name] = 0 if result.ok else self._failures.get(name, 0) + 1
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class MetricsSource(Protocol):
    """What /metrics serves (pipeline.metrics.StageMetrics)."""

    def render(self) -> bytes: ...


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"


class HealthServer:
    """The HTTP server of one worker, on a daemon thread; `port` is the bound one (useful with port 0)."""

    def __init__(
        self, host: str, port: int, *, checks: HealthChecks, live: Probe, ready: Probe,
        metrics: MetricsSource | None = None, metrics_content_type: str = "text/plain; version=0.0.4; charset=utf-8",
    ) -> None:
        self.checks = checks
        self._live = live
        self._ready = ready
        self._metrics = metrics
        self._metrics_type = metrics_content_type
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                answer = server.answer(self.path.split("?", 1)[0])
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("health: " + format, *args)  # probes every few seconds: never at INFO

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()  # waits for serve_forever: only when it runs
        self._httpd.server_close()
        self.checks.close()

    def answer(self, path: str) -> _Answer:
        """The answer to GET `path` (separate from HTTP so it is testable without sockets)."""
        path = path.rstrip("/") or "/"
        if path == "/metrics" and self._metrics is not None:
            return _Answer(200, self._metrics.render(), self._metrics_type)
        if path == "/health/live":
            return _probe_answer("live", self._live())
        if path == "/health/ready":
            reason = self._ready()
            if reason is None:
                reason = "; ".join(self.checks.unready_reasons()) or None
            return _probe_answer("ready", reason)
        if path.startswith("/health/"):
            name = path.removeprefix("/health/")
            if name in self.checks.checks:
                result = self.checks.run(name)
                return _json(200 if result.ok else 503, {
                    "status": "ok" if result.ok else "unhealthy", "check": name,
                    ("detail" if result.ok else "reason"): result.detail, "seconds": round(result.seconds, 3),
                })
            if name == STORAGE:
                return _json(200, {"status": "ok", "check": name, "detail": "this stage uses no storage"})
        return _json(404, {"status": "not found", "paths": self.paths()})

    def paths(self) -> list[str]:
        named = {f"/health/{n}" for n in (*self.checks.checks, STORAGE)}
        return ["/health/live", "/health/ready", *sorted(named), *(["/metrics"] if self._metrics else [])]


def _probe_answer(name: str, reason: str | None) -> _Answer:
    if reason is None:
        return _json(200, {"status": "ok", "check": name})
    return _json(503, {"status": "unhealthy", "check": name, "reason": reason})


def _json(status: int, body: dict[str, Any]) -> _Answer:
    return _Answer(status, json.dumps(body).encode() + b"\n")


class MetadataSource(Protocol):
    """The part of confluent_kafka's AdminClient/Consumer the Kafka check uses."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...


def kafka_check(client: MetadataSource, topic: str, timeout_s: float) -> Check:
    """Fetch the metadata of `topic` from the broker: proves a broker answers and the topic has leaders."""

    def check() -> None:
        poll = getattr(client, "poll", None)
        if poll is not None:
            poll(0)  # serves the client's log and error callbacks, which nothing else polls
        metadata = client.list_topics(topic=topic, timeout=timeout_s)
        if not metadata.brokers:
            raise ConnectionError("no broker in the metadata")
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise LookupError(f"topic {topic}: {info.error if info is not None else 'missing'}")
        leaderless = sorted(p for p, meta in info.partitions.items() if meta.leader < 0)
        if leaderless:
            raise ConnectionError(f"topic {topic}: partitions without a leader: {leaderless}")

    return check


def stage_checks(stage: object) -> dict[str, Check]:
    """The checks a stage offers through an optional `health_checks()` method (e.g. {"storage": store.ping})."""
    offer = getattr(stage, "health_checks", None)
    return dict(offer()) if callable(offer) else {}
