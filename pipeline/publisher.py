"""Publishing that is done only when the broker says so: idempotent producer, acks=all, awaited delivery."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from pipeline.envelope import Envelope, envelope_headers
from pipeline.errors import PermanentError, Unavailable
from pipeline.progress import Heartbeat, unwatched
from pipeline.topics import TopicNames
from pipeline.tracing import context_from_headers, headers_with_span


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
    Deliveries awaited and delivery reports (success or error) go to `heartbeat`: liveness fails when
    messages wait and no report comes (pipeline/progress.py).
    """

    def __init__(
        self, config: Mapping[str, object], delivery_timeout_s: float = 30.0, names: TopicNames | None = None,
        tracer: Tracer | None = None, heartbeat: Heartbeat | None = None,
    ) -> None:
        self._producer = Producer(dict(config))
        # With a tracer, each message gets a `send {topic}` span (the messaging conventions' producer
        # span), child of the context its headers carry; the span's context replaces it in the headers.
        self._tracer = tracer
        self._client_id = str(config.get("client.id", ""))
        # Messages name logical topics (`files`); the cluster's names carry the deployment's prefix.
        self._names = names or TopicNames()
        self._timeout_s = delivery_timeout_s
        self._beat = heartbeat if heartbeat is not None else unwatched("publisher")
        self._outstanding = 0
        self._outstanding_lock = threading.Lock()
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

        topic = self._names(message.topic)
        headers = message.headers
        span = self._send_span(topic, message) if self._tracer is not None else None
        if span is not None:
            headers = headers_with_span(list(headers or []), span)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            self._reported()
            if span is not None:
                _end_send_span(span, err, msg)
            on_done(None if err is None else delivery_error(KafkaException(err)))

        with self._outstanding_lock:
            self._outstanding += 1
            self._beat.busy()
        while True:
            try:
                self._producer.produce(
                    topic, value=message.value, key=message.key, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # Local queue full: let deliveries drain instead of failing the event.
                self._producer.poll(0.05)
            except KafkaException as exc:
                self._reported()
                if span is not None:
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    span.end()
                on_done(delivery_error(exc))
                return

    def _send_span(self, topic: str, message: Outgoing) -> Span:
        assert self._tracer is not None
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.body.size": len(message.value or b""),
        }
        if message.key is not None:
            attributes["messaging.kafka.message.key"] = message.key.decode(errors="replace")
        if self._client_id:
            attributes["messaging.client.id"] = self._client_id
        return self._tracer.start_span(
            f"send {topic}", context=context_from_headers(message.headers), kind=SpanKind.PRODUCER, attributes=attributes,
        )

    def _reported(self) -> None:
        """A delivery report came (or never will): progress for liveness."""
        with self._outstanding_lock:
            self._outstanding -= 1
            self._beat.progressed()
            if self._outstanding == 0:
                self._beat.idle()

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


def _end_send_span(span: Span, err: KafkaError | None, msg: Message) -> None:
    """Ends a producer span on the broker's answer: where the message landed, or the error."""
    if err is None:
        span.set_attribute("messaging.destination.partition.id", str(msg.partition()))
        span.set_attribute("messaging.kafka.offset", msg.offset())
    else:
        span.set_status(Status(StatusCode.ERROR, err.str()))
        span.set_attribute("error.type", err.name())
    span.end()


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
