"""Kafka client logs in an outage: one line when the brokers are lost, a summary per period, one when back."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError

from pipeline.kafka_config import admin_config, consumer_config, producer_config, redacted
from pipeline.kafka_logs import BrokerLog
from pipeline.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def refused(n: int) -> str:
    return f"Connect to ipv4#127.0.0.1:19092 failed: Connection refused (after 0ms in state CONNECT, {n} identical error(s))"


@pytest.fixture
def setup(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="test.kafka")
    clock = Clock()
    broker_log = BrokerLog("consumer darkroom.gallery", summary_s=30, quiet_s=15,
                           logger=logging.getLogger("test.kafka"), clock=clock)

    def lines() -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "test.kafka"]

    return broker_log, clock, lines


def test_an_outage_of_70s_at_20_failures_a_second_gives_four_lines(setup) -> None:
    broker_log, clock, lines = setup
    broker_log.error(KafkaError(KafkaError._TRANSPORT, refused(1)))
    broker_log.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    for i in range(70 * 20):  # 70 s of librdkafka noise: FAIL log lines and transport errors
        clock.now += 0.05
        if i % 2:
            broker_log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", refused(i))
        else:
            broker_log.error(KafkaError(KafkaError._TRANSPORT, refused(i)))
        if i % 20 == 0:
            broker_log.tick()  # the ticker, once a second
    for _ in range(16):  # the broker is back: no more failures
        clock.now += 1
        broker_log.tick()

    got = lines()
    levels = [level for level, _ in got]
    # Lost (with the transport error that came first), two summaries, back: instead of 2,800 lines.
    assert levels == [logging.WARNING, logging.WARNING, logging.WARNING, logging.INFO], got
    assert "lost every Kafka broker" in got[0][1] and "Connection refused" in got[0][1]
    assert "still unreachable after 30s" in got[1][1] and "still unreachable after 60s" in got[2][1]
    assert "failures stopped after 70s down" in got[3][1]
    assert broker_log.down_since is None


def test_a_failure_while_brokers_remain_is_shown_at_the_next_tick_at_most_once_per_period(setup) -> None:
    broker_log, clock, lines = setup
    for _ in range(100):
        broker_log.error(KafkaError(KafkaError._TRANSPORT, refused(1)))
        clock.now += 0.5
        broker_log.tick()
    shown = [m for _, m in lines()]
    assert len(shown) == 2 and all("Kafka connection failure" in m for m in shown)  # at 0.5 s and 30.5 s of 50 s


def test_a_second_outage_is_reported_again(setup) -> None:
    broker_log, clock, lines = setup
    for _ in range(2):
        broker_log.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        clock.now += 20
        broker_log.tick()
    assert [m for _, m in lines() if "lost every Kafka broker" in m].__len__() == 2
    assert len([m for _, m in lines() if "failures stopped" in m]) == 2


def test_other_lines_and_errors_pass_through_at_their_level(setup) -> None:
    broker_log, _clock, lines = setup
    broker_log.log(logging.WARNING, "%s [%s] %s", "MAXPOLL", "rdkafka#consumer-1", "Application maximum poll interval exceeded")
    broker_log.error(KafkaError(KafkaError._FENCED, "producer fenced", fatal=True))
    broker_log.error(KafkaError(KafkaError._MSG_TIMED_OUT, "message timed out"))
    assert lines() == [
        (logging.WARNING, "consumer darkroom.gallery: MAXPOLL [rdkafka#consumer-1] Application maximum poll interval exceeded"),
        (logging.ERROR, "consumer darkroom.gallery: Kafka error: producer fenced"),
        (logging.WARNING, "consumer darkroom.gallery: Kafka error: message timed out"),
    ]


def test_every_client_config_gets_its_own_callbacks_and_a_longer_reconnect_backoff() -> None:
    settings = Settings()
    configs = [admin_config(settings), producer_config(settings), consumer_config(settings, "darkroom.resize")]
    loggers = [c["logger"] for c in configs]
    assert all(isinstance(x, BrokerLog) for x in loggers) and len({id(x) for x in loggers}) == 3
    assert [x.client for x in loggers] == ["admin", "producer", "consumer darkroom.resize"]  # type: ignore[union-attr]
    for config in configs:
        assert config["error_cb"] == config["logger"].error  # type: ignore[union-attr]
        assert config["reconnect.backoff.ms"] == 1000 and config["reconnect.backoff.max.ms"] == 5000
        assert "logger" not in redacted(config) and "error_cb" not in redacted(config)
