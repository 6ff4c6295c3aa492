"""Progress heartbeats: liveness that means the worker gets somewhere, not merely that it runs.

Each long-running part of a worker (the poll loop, the stage's work, the publisher, an outbox
relay) holds a named `Heartbeat` and reports on it:
- `busy()` when it has work (an attempt running, a delivery awaited, a relay round started);
- `progressed()` when something came of it: an outcome, good or bad (a finished attempt, a failed
  one, an acknowledgement, a delivery error, a transaction committed or aborted);
- `idle()` when it has no work left.

A component is stuck when it has been busy with no outcome for longer than the bound: a call that
never returns (librdkafka's `send_offsets_to_transaction`, issues 5456/5511), a thread that
deadlocked. `/health/live` then answers 503 naming it, and the supervisor or Kubernetes restarts
the worker. Failures count as outcomes on purpose: a worker retrying against a broker or store
that is down is doing its job; restarting it would only add a crash loop to the outage (that is
what `/health/ready` and `/health/kafka` report).

Reporting is a couple of attribute writes, cheap enough for every message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Heartbeat:
    """One component's progress. Methods are safe from any thread (plain attribute writes)."""

    __slots__ = ("name", "_clock", "busy_since", "progressed_at")

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self.busy_since: float | None = None
        self.progressed_at: float | None = None

    def busy(self) -> None:
        """There is work (keeps the earliest time it started, until `idle`)."""
        if self.busy_since is None:
            self.busy_since = self._clock()

    def progressed(self) -> None:
        """Something came of the work: an outcome, good or bad."""
        self.progressed_at = self._clock()

    def idle(self) -> None:
        """No work left."""
        self.busy_since = None

    def stalled_for(self, now: float) -> float | None:
        """Seconds busy without an outcome, or None when idle."""
        since = self.busy_since
        if since is None:
            return None
        last = self.progressed_at
        return now - (since if last is None or last < since else last)


class Progress:
    """The heartbeats of one worker, and the liveness verdict over them."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._beats: dict[str, Heartbeat] = {}
        self._lock = threading.Lock()

    def track(self, name: str) -> Heartbeat:
        """The heartbeat called `name` (created on first use)."""
        with self._lock:
            beat = self._beats.get(name)
            if beat is None:
                beat = self._beats[name] = Heartbeat(name, self._clock)
            return beat

    def stuck(self) -> str | None:
        """None when every component progresses, else a reason naming those stuck (for /health/live)."""
        now = self._clock()
        with self._lock:
            beats = list(self._beats.values())
        stuck = [(b.name, s) for b in beats if (s := b.stalled_for(now)) is not None and s > self.timeout_s]
        if not stuck:
            return None
        return "; ".join(f"{name}: busy for {s:.0f}s without progress (bound {self.timeout_s:g}s)" for name, s in stuck)


def unwatched(name: str = "unwatched") -> Heartbeat:
    """A heartbeat nobody reads: the default of components built without a Progress."""
    return Heartbeat(name)
