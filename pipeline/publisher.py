"""Publishing that is done only when the broker says so: idempotent producer, acks=all, awaited delivery."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pipeline.envelope import Envelope, envelope_headers
from pipeline.errors import PermanentError, Unavailable


@dataclass(frozen=True)
class Outgoing:
    """One message to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    def event(
        cls,
        topic: str,
        key: str,
        envelope: Envelope,
        parent_traceparent: str | None = None,
        extra_headers: Sequence[tuple[str, bytes]] = (),
    ) -> Outgoing:
        """An envelope as a message, with the standard headers plus `extra_headers` (e.g. `rendition`)."""
        headers = [*envelope_headers(envelope, parent_traceparent), *extra_headers]
        return cls(topic, key.encode(), envelope.to_bytes(), headers)


class DeliveryFailed(Unavailable):
    """The broker did not acknowledge a message in time; publishing again is safe (idempotent ids).

    An outage (see pipeline.errors.Unavailable): retried for as long as the broker stays away.
    """


class Publisher:
    """A thread-safe producer whose `publish_all` returns only once every message is acknowledged.

    A background thread serves delivery callbacks, so callers on any thread just wait on futures.
    """

    def __init__(self, config: dict[str, str | int | bool], delivery_timeout_s: float = 30.0) -> None:
        self._producer = Producer(config)
        self._timeout_s = delivery_timeout_s
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, name="publisher-poll", daemon=True)
        self._poller.start()

    def _poll_forever(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def produce(self, message: Outgoing, on_done: Callable[[Exception | None], None]) -> None:
        """Start producing one message; `on_done(None)` on the broker's acknowledgement, else with the error.

        `on_done` runs on the publisher's callback thread and must be cheap. The error is already
        classified: DeliveryFailed (transient) or PermanentError (see `delivery_error`).
        """

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            on_done(None if err is None else delivery_error(KafkaException(err)))

        while True:
            try:
                self._producer.produce(
                    message.topic, value=message.value, key=message.key, headers=message.headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # Local queue full: let deliveries drain instead of failing the event.
                self._producer.poll(0.05)
            except KafkaException as exc:
                on_done(delivery_error(exc))
                return

    def publish(self, message: Outgoing) -> Future[None]:
        """Start producing one message; the future resolves on the broker's acknowledgement."""
        future: Future[None] = Future()
        self.produce(message, lambda error: future.set_result(None) if error is None else future.set_exception(error))
        return future

    def publish_all(self, messages: Sequence[Outgoing], timeout_s: float | None = None) -> None:
        """Produce and wait for every acknowledgement.

        Raises DeliveryFailed (transient) on a timeout or a retriable broker error, PermanentError on
        an error retrying cannot fix (e.g. a message over the size limit).
        """
        futures = [self.publish(m) for m in messages]
        _, pending = wait(futures, timeout=timeout_s or self._timeout_s)
        if pending:
            raise DeliveryFailed(
                f"{len(pending)} of {len(futures)} messages not acknowledged within {timeout_s or self._timeout_s:.0f}s: "
                "is the Kafka broker reachable?"
            )
        for fut in futures:
            exc = fut.exception()
            if exc is not None:
                raise exc

    def flush(self, timeout_s: float = 10.0) -> int:
        """Wait for outstanding messages; returns how many are still queued."""
        return self._producer.flush(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued and stop the callback thread."""
        self.flush(timeout_s)
        self._closed.set()
        self._poller.join(timeout=1.0)


def delivery_error(exc: KafkaException) -> Exception:
    """A failed delivery as our error classes: permanent when retrying cannot help, transient otherwise."""
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is not None and not (err.retriable() or err.code() in _TRANSIENT_CODES):
        failure: Exception = PermanentError(f"broker refused the message: {err.str()}")
    else:
        failure = DeliveryFailed(f"delivery failed: {exc}: is the Kafka broker reachable?")
    failure.__cause__ = exc
    return failure


_TRANSIENT_CODES = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.REQUEST_TIMED_OUT,
}
