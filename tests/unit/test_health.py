"""Health endpoints: answers, reasons, timeouts and the Kafka check, without any service."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from pipeline.health import HealthChecks, HealthServer, kafka_check, stage_checks


def failing() -> None:
    raise ConnectionError("S3 at http://127.0.0.1:1 refused the connection")


def server(checks: dict, live: str | None = None, ready: str | None = None, timeout_s: float = 0.5) -> HealthServer:
    return HealthServer("127.0.0.1", 0, checks=HealthChecks(checks, timeout_s=timeout_s, cache_s=0.0),
                        live=lambda: live, ready=lambda: ready)


def body(answer) -> dict:
    return json.loads(answer.body)


def test_healthy_checks_answer_200() -> None:
    s = server({"kafka": lambda: None, "storage": lambda: None})
    try:
        for path in ("/health/live", "/health/ready", "/health/kafka", "/health/storage"):
            answer = s.answer(path)
            assert answer.status == 200, path
            assert body(answer)["status"] == "ok"
    finally:
        s.close()


def test_failing_check_answers_503_with_its_reason_and_makes_ready_fail() -> None:
    s = server({"kafka": lambda: None, "storage": failing})
    try:
        storage = s.answer("/health/storage")
        assert storage.status == 503
        assert "refused the connection" in body(storage)["reason"]
        ready = s.answer("/health/ready")
        assert ready.status == 503 and "storage" in body(ready)["reason"]
        assert s.answer("/health/live").status == 200  # a dependency down is no reason to restart the worker
    finally:
        s.close()


def test_probes_report_their_reason() -> None:
    s = server({}, live="the polling loop has not gone round for 99s", ready="draining: stop requested")
    try:
        assert body(s.answer("/health/live"))["reason"].startswith("the polling loop")
        assert s.answer("/health/ready").status == 503
    finally:
        s.close()


def test_a_hanging_check_answers_503_within_its_timeout_and_is_not_run_twice_at_once() -> None:
    release = threading.Event()
    calls = []

    def hangs() -> None:
        calls.append(1)
        release.wait(5)

    s = server({"kafka": hangs}, timeout_s=0.2)
    try:
        first, second = s.answer("/health/kafka"), s.answer("/health/kafka")
        assert first.status == second.status == 503
        assert "no answer within 0.2s" in body(first)["reason"]
        assert len(calls) == 1  # single-flight: probes do not pile up threads on a hung dependency
    finally:
        release.set()
        s.close()


def test_stage_without_storage_answers_200_and_unknown_paths_404() -> None:
    s = server({"kafka": lambda: None})
    try:
        assert body(s.answer("/health/storage"))["detail"] == "this stage uses no storage"
        assert s.answer("/nope").status == 404
    finally:
        s.close()


def test_served_over_http_on_a_free_port() -> None:
    s = server({"kafka": failing}).start()
    try:
        assert s.port > 0
        with urllib.request.urlopen(f"{s.url}/health/live", timeout=5) as resp:
            assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{s.url}/health/kafka", timeout=5)
        assert info.value.code == 503
        assert "refused" in json.loads(info.value.read())["reason"]
    finally:
        s.close()


def test_stage_checks_come_from_the_optional_method() -> None:
    class WithStore:
        def health_checks(self) -> dict:
            return {"storage": lambda: None}

    assert set(stage_checks(WithStore())) == {"storage"}
    assert stage_checks(object()) == {}


def metadata(brokers: dict, leaders: dict[int, int], error: object = None) -> SimpleNamespace:
    partitions = {p: SimpleNamespace(leader=leader) for p, leader in leaders.items()}
    return SimpleNamespace(brokers=brokers, topics={"files": SimpleNamespace(error=error, partitions=partitions)})


class FakeAdmin:
    def __init__(self, answer: SimpleNamespace) -> None:
        self.answer = answer

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> SimpleNamespace:
        return self.answer


def test_kafka_check_needs_brokers_and_leaders() -> None:
    kafka_check(FakeAdmin(metadata({1: "b"}, {0: 1, 1: 1})), "files", 1.0)()
    with pytest.raises(ConnectionError, match="no broker"):
        kafka_check(FakeAdmin(metadata({}, {0: 1})), "files", 1.0)()
    with pytest.raises(ConnectionError, match="without a leader"):
        kafka_check(FakeAdmin(metadata({1: "b"}, {0: 1, 1: -1})), "files", 1.0)()
    with pytest.raises(LookupError):
        kafka_check(FakeAdmin(metadata({1: "b"}, {}, error="UNKNOWN_TOPIC")), "files", 1.0)()


def test_one_failed_storage_probe_does_not_flip_readiness_but_a_lasting_failure_does() -> None:
    answers = iter([None, "S3 read timed out", None, "down", "down", "down"])

    def flaky() -> None:
        outcome = next(answers)
        if outcome is not None:
            raise TimeoutError(outcome)

    s = HealthServer("127.0.0.1", 0, checks=HealthChecks({"storage": flaky}, cache_s=0.0, failures_before_unready=3),
                     live=lambda: None, ready=lambda: None)
    try:
        assert s.answer("/health/ready").status == 200
        assert s.answer("/health/ready").status == 200  # one timeout: still ready
        assert s.answer("/health/ready").status == 200  # and the next success resets the count
        assert s.answer("/health/ready").status == 200  # down once
        assert s.answer("/health/ready").status == 200  # down twice
        ready = s.answer("/health/ready")  # down three times in a row: out of service
        assert ready.status == 503 and "down" in body(ready)["reason"]
    finally:
        s.close()


def test_a_worker_without_partitions_is_not_ready() -> None:
    from pipeline.settings import Settings
    from pipeline.worker import start_health_server

    assigned = threading.Event()
    assigned.set()
    runner = SimpleNamespace(stopping=False, assigned=assigned, assigned_partitions=2, heartbeat=0.0)
    s = start_health_server(runner, {}, Settings())  # type: ignore[arg-type]
    try:
        assert s.answer("/health/ready").status == 200
        runner.assigned_partitions = 0  # every partition revoked: more workers than partitions
        ready = s.answer("/health/ready")
        assert ready.status == 503 and "no partitions" in body(ready)["reason"]
    finally:
        s.close()
