"""Bounds for the client calls that have no timeout of their own.

librdkafka's synchronous `Consumer.commit` and `Consumer.close` wait for the group coordinator,
which may be gone (a broker outage), and confluent-kafka gives neither a timeout. Run them on a
daemon thread and stop waiting after a bound: a commit that did not answer is simply not
committed (the work is redone, outputs are idempotent), and a consumer that cannot leave its group
politely is dropped (the group notices at its session timeout). The abandoned thread may stay
blocked in librdkafka; being a daemon, it never keeps the process from exiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class CallTimedOut(TimeoutError):
    """A bounded call did not return in time; it may still complete in the background."""


def call_bounded(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run `call` on a daemon thread; its result or exception, or CallTimedOut after `timeout_s`."""
    outcome: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name=f"bounded-{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise CallTimedOut(f"{what}: no answer within {timeout_s:g}s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class Closeable(Protocol):
    def close(self) -> Any: ...


def close_quietly(client: Closeable, timeout_s: float) -> None:
    """Close a Kafka client within `timeout_s`; a close that hangs or fails is logged and abandoned."""
    try:
        call_bounded(client.close, timeout_s, f"close {type(client).__name__}")
    except Exception as exc:  # noqa: BLE001 - closing is best effort; the process goes on
        log.warning("%s not closed cleanly: %s", type(client).__name__, exc)


def discard(client: object, what: str) -> None:
    """Drop a client that misbehaved, destroying it on a daemon thread (its destructor can block too)."""
    holder = [client]
    del client

    def destroy() -> None:
        # Give the caller a moment to drop its own references, so the last one (and librdkafka's
        # destroy with it) is this thread's, not the caller's.
        time.sleep(1.0)
        holder.clear()

    threading.Thread(target=destroy, name=f"discard-{what}", daemon=True).start()
