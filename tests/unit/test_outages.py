"""Outages do not use up the retry budget: a broker or store away for long dead-letters nothing,
while an event that keeps failing on its own still goes to the dead-letter queue."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import TopicPartition

from pipeline.errors import ErrorKind, TransientError, Unavailable, is_outage
from pipeline.publisher import DeliveryFailed, Outgoing
from pipeline.stage import Received
from storage.errors import StorageOutage, StorageUnavailable, classify, unreachable
from tests.unit.fakes import FakeConsumer, FakePublisher
from tests.unit.test_runner import SETTINGS, ScriptedStage, msg, start, stop


class BrokerAway(FakePublisher):
    """Every produce times out (as after delivery.timeout.ms) until `outage` deliveries have failed."""

    def __init__(self, changed, outage: int) -> None:
        super().__init__(changed)
        self.outage = outage

    def produce(self, message: Outgoing, on_done: Callable[[Exception | None], None]) -> None:
        if self.outage > 0:
            self.outage -= 1
            on_done(DeliveryFailed("1 of 1 messages not acknowledged within 5s: is the Kafka broker reachable?"))
            return
        super().produce(message, on_done)


def test_a_broker_away_longer_than_the_retry_budget_dead_letters_nothing_and_commits_after_delivery() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"a"), msg(0, 1, b"b")])
    publisher = BrokerAway(consumer.changed, outage=4 * SETTINGS.retry_max_attempts)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 2})
    stop(runner, thread)
    assert runner.stats.dead_lettered == 0 and runner.stats.retried >= 4 * SETTINGS.retry_max_attempts
    assert sorted(o.value for o in publisher.published) == [b"done:a", b"done:b"]  # produced again, acknowledged once
    assert ("files", 0) in consumer.ever_paused


class StoreAway(ScriptedStage):
    """Processing fails with an outage `times` times, then with a plain transient error forever for `poison`."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.left = times

    def process(self, message: Received) -> list[Outgoing]:
        if message.value == b"poison":
            raise TransientError("the server answers 500 for this object, every time")
        if self.left > 0:
            self.left -= 1
            raise unreachable(op="GET", endpoint="http://s3", bucket="b", key="k", detail="connection refused")
        return super().process(message)

    def classify(self, exc: BaseException) -> ErrorKind:
        return ErrorKind.TRANSIENT if isinstance(exc, StorageUnavailable) else super().classify(exc)


def test_a_store_outage_is_waited_out_while_an_event_failing_on_its_own_still_exhausts_its_retries() -> None:
    stage = StoreAway(times=5 * SETTINGS.retry_max_attempts)
    consumer = FakeConsumer([msg(0, 0, b"a"), msg(1, 0, b"poison")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 1, ("files", 1): 1})
    stop(runner, thread)
    topics = {o.value: o.topic for o in publisher.published}
    assert topics[b"done:a"] == "out"
    assert [o.topic for o in publisher.published if o.topic == "dead-letter-queue"] == ["dead-letter-queue"]
    assert runner.stats.dead_lettered == 1


@pytest.mark.parametrize("exc,outage", [
    (DeliveryFailed("timed out"), True),
    (unreachable(op="GET", endpoint="e", bucket="b", key="k", detail="refused"), True),
    (classify(status=503, code="ServiceUnavailable", detail="", op="GET", endpoint="e", bucket="b", key="k"), True),
    (classify(status=502, code=None, detail="bad gateway", op="GET", endpoint="e", bucket="b", key="k"), True),
    (classify(status=500, code="InternalError", detail="", op="GET", endpoint="e", bucket="b", key="k"), False),
    (classify(status=503, code="SlowDown", detail="", op="GET", endpoint="e", bucket="b", key="k"), False),
    (TransientError("x"), False),
    (ConnectionError("x"), False),
])
def test_what_counts_as_an_outage(exc: BaseException, outage: bool) -> None:
    assert is_outage(exc) is outage
    assert isinstance(exc, TransientError | StorageUnavailable | ConnectionError)  # every one is still retried
    if outage:
        assert isinstance(exc, Unavailable)
        assert not isinstance(exc, StorageUnavailable) or isinstance(exc, StorageOutage)


class LosesItsPartitions(FakeConsumer):
    """Like librdkafka: a pause flag survives the partition leaving the assignment. Once a retry has paused
    partition 0, the group loses every partition and assigns them again (a broker outage past the session timeout)."""

    def __init__(self, messages: list) -> None:
        super().__init__(messages)
        self.log = list(messages)
        self.rebalanced = False

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list:
        if not self.rebalanced and ("files", 0) in self.paused:
            self.rebalanced = True
            tps = [TopicPartition(t, p) for t, p in self._queues]
            self._callbacks["on_lost"](self, tps)
            for tp in self._queues:  # the new assignment starts at the committed offsets
                start = self.committed.get(tp, 0)
                self._queues[tp] = [m for m in self.log if (m.topic(), m.partition()) == tp and m.offset() >= start]
            self._callbacks["on_assign"](self, tps)
        return super().consume(num_messages, timeout)


def test_a_partition_paused_when_the_group_lost_it_is_read_again_once_reassigned() -> None:
    stage = ScriptedStage()
    consumer = LosesItsPartitions([msg(0, 0, b"flaky:1"), msg(0, 1, b"b")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 2})
    stop(runner, thread)
    assert consumer.rebalanced
    assert b"done:b" in [o.value for o in publisher.published]


def test_a_backoff_after_hours_of_failures_is_its_maximum_not_an_overflow() -> None:
    from pipeline.retry import Backoff

    backoff = Backoff(0.2, 5.0, 0)
    # A relay whose broker is down for an hour fails thousands of rounds; 2**1800 is no float.
    assert all(0.1 <= backoff.delay(attempt) <= 5.0 for attempt in (1, 10, 1025, 5000, 10**6))
