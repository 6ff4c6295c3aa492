"""The relay's Kafka side with a fake producer: every transactional call bounded, a producer that timed
out discarded and re-made, the mark re-read after that, and the mark record in the transaction."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

import orchestration.relay as relay
from orchestration.outbox_marks import parse_mark
from pipeline.contracts.topics import OUTBOX_MARKS
from pipeline.errors import TransientError
from pipeline.settings import Settings


class FakeProducer:
    made: list[FakeProducer] = []
    fail_commits = 0

    def __init__(self, config: dict) -> None:
        self.config = config
        self.calls: list[tuple[str, object]] = []
        self.produced: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        FakeProducer.made.append(self)

    def init_transactions(self, timeout: float) -> None:
        self.calls.append(("init_transactions", timeout))

    def begin_transaction(self) -> None:
        self.calls.append(("begin_transaction", None))

    def produce(self, topic: str, key=None, value=None, headers=None, partition=None) -> None:
        self.produced.append((topic, key, value, partition))

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append(("commit_transaction", timeout))
        if FakeProducer.fail_commits:
            FakeProducer.fail_commits -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit timed out"))

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append(("abort_transaction", timeout))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.calls.append(("flush", timeout))
        return 0


def row(seq: int) -> dict:
    return {"seq": seq, "topic": "users", "key": b"k", "value": b"v%d" % seq, "headers": "[]"}


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch):
    FakeProducer.made.clear()
    FakeProducer.fail_commits = 0
    marks = iter([None, 7])  # no record at first (then the legacy mark, 0); 7 after the re-make
    discarded: list[object] = []
    monkeypatch.setattr(relay, "Producer", FakeProducer)
    monkeypatch.setattr(relay, "read_mark", lambda settings, ident, timeout_s: next(marks))
    monkeypatch.setattr(relay, "read_legacy_mark", lambda settings, ident, timeout_s: 0)
    monkeypatch.setattr(relay, "discard", lambda client, what: discarded.append(client))
    return relay.TransactionalOutbox(Settings(), "darkroom.outbox.users.abc", "users"), discarded


def test_rows_and_the_mark_record_go_in_one_transaction_with_every_call_bounded(outbox) -> None:
    kafka, _ = outbox
    assert kafka.publish([row(3), row(4)]) == 5
    [producer] = FakeProducer.made
    assert producer.config["transactional.id"] == "darkroom.outbox.users.abc"
    topics = [p[0] for p in producer.produced]
    assert topics == ["users", "users", OUTBOX_MARKS]  # the mark last, inside the same transaction
    _, key, value, partition = producer.produced[-1]
    assert key == b"darkroom.outbox.users.abc" and parse_mark(value) == 5 and partition == 0
    assert [name for name, _ in producer.calls] == ["init_transactions", "begin_transaction", "commit_transaction"]
    assert all(t is not None and t > 0 for name, t in producer.calls if name != "begin_transaction")


def test_a_commit_that_times_out_discards_the_producer_and_the_next_one_rereads_the_mark(outbox) -> None:
    kafka, discarded = outbox
    FakeProducer.fail_commits = 1
    with pytest.raises(TransientError, match="outbox transaction failed"):
        kafka.publish([row(3), row(4)])
    [first] = FakeProducer.made
    assert discarded == [first]  # not retried on the same producer, not waited on
    assert kafka.mark == 0  # unknown whether it committed: the next producer finds out

    kafka._open()  # a new producer fences the old one; the mark read back says the commit went through
    assert len(FakeProducer.made) == 2 and kafka.mark == 7
    assert FakeProducer.made[1].calls[0][0] == "init_transactions"
