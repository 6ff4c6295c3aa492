"""A relay that hangs: liveness fails within its bound, the fleet supervisor restarts the worker, and
the outbox is still published exactly once. And the relay's mark record, read back on the real broker.

Counts come from the topics, read with a plain `read_committed` consumer from the beginning.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from operations.fleet.state import FleetState, pid_alive
from orchestration.db import Database
from orchestration.outbox_marks import MARK_PARTITION, mark_record, read_legacy_mark, read_mark
from pipeline.contracts.topics import OUTBOX_MARKS, USERS
from pipeline.errors import TransientError
from pipeline.kafka_config import consumer_config, producer_config
from pipeline.settings import Settings
from pipeline.watch import Seen
from tests.integration.test_business_flow import darkroom, of_type
from tests.integration.test_fleet import Fleet

pytestmark = pytest.mark.integration


def read_all(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Seen]:
    """Every committed message of `topic` up to its end now (read_committed, outside any group)."""
    consumer = Consumer(consumer_config(settings, f"darkroom.count.{uuid.uuid4().hex}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        assignment = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)  # high: last stable offset
            ends[p] = high
            assignment.append(TopicPartition(topic, p, low))
        consumer.assign(assignment)
        seen: list[Seen] = []
        deadline = time.monotonic() + timeout_s
        while True:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    seen.append(Seen(msg.partition(), msg.offset(), msg.key(), msg.value(), dict(msg.headers() or [])))
            positions = {tp.partition: tp.offset for tp in consumer.position(assignment)}
            if all(ends[p] == 0 or positions[p] >= ends[p] for p in ends):
                return seen
            assert time.monotonic() < deadline, f"{topic}: not read to its end in {timeout_s:.0f}s"
    finally:
        consumer.close()


def _transactional(settings: Settings, ident: str) -> Producer:
    producer = Producer({**producer_config(settings), "transactional.id": ident})
    producer.init_transactions(30)
    return producer


def _write_mark(producer: Producer, ident: str, next_seq: int, commit: bool = True) -> None:
    producer.begin_transaction()
    key, value = mark_record(ident, next_seq)
    producer.produce(OUTBOX_MARKS, key=key, value=value, partition=MARK_PARTITION)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)


def test_the_mark_read_back_is_the_last_committed_one_even_past_another_relays_open_transaction(
    settings: Settings,
) -> None:
    ours, other = f"darkroom.outbox.test.{uuid.uuid4().hex[:12]}", f"darkroom.outbox.other.{uuid.uuid4().hex[:12]}"
    assert read_mark(settings, ours, 60) is None  # never wrote one
    assert read_legacy_mark(settings, ours, 30) == 0  # and no group-offset mark from before either
    mine, theirs = _transactional(settings, ours), _transactional(settings, other)
    _write_mark(mine, ours, 5)
    _write_mark(theirs, other, 100, commit=False)  # another relay's transaction, left open
    _write_mark(mine, ours, 9)  # committed, but above the last stable offset while theirs is open
    _write_mark(mine, ours, 12, commit=False)
    mine.abort_transaction(30)  # an aborted mark never counts

    # While the other transaction is open, our last mark cannot be read: the read says so in time
    # rather than answer 5 (which would publish rows 5..8 a second time).
    with pytest.raises(TransientError, match="not read back within 3s"):
        read_mark(settings, ours, 3)
    theirs.commit_transaction(30)
    assert read_mark(settings, ours, 60) == 9
    assert read_mark(settings, other, 60) == 100


def _live(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_hung_relay_fails_liveness_the_supervisor_restarts_the_worker_and_the_outbox_goes_out_once(
    settings: Settings, stack, stack_env: dict[str, str], tmp_path: Path, watch,
) -> None:
    once = tmp_path / "hang-once"
    orch = {"DARKROOM_ORCHESTRATION__DB_PATH": str(tmp_path / "orchestration.sqlite"),
            "DARKROOM_ORCHESTRATION__RELAY_TICK_S": "0.2"}
    # 15 s: short for the test, long enough for a healthy relay round on a busy CI machine.
    env = {**stack_env, **orch, "DARKROOM_WORKER__LIVENESS_TIMEOUT_S": "15",
           "DARKROOM_FAULT_HANG_AT": "relay.commit:users", "DARKROOM_FAULT_ONCE_FILE": str(once)}
    users = watch(USERS)
    fleet = Fleet(env, tmp_path / "fleet", "--workers", "users=1", "--liveness-interval", "1",
                  "--liveness-failures", "3", "--restart-backoff", "0.5")
    try:
        def running(s: FleetState) -> list[tuple[int, int]]:
            return [(w.pid, w.port) for w in s.stages["users"].workers
                    if w.state == "running" and w.pid and w.port and pid_alive(w.pid)]

        state = fleet.wait(lambda s: bool(running(s)), 90, "users worker up")
        [(victim, port)] = running(state)
        email = f"hang-{time.time_ns()}@example.com"
        darkroom(orch, "shoot", "create", "--title", "Hang", "--client-email", email)

        deadline = time.monotonic() + 120
        while not once.exists():  # the relay reached the fault point and blocks there from now on
            assert time.monotonic() < deadline and pid_alive(victim), "the relay never reached relay.commit"
            time.sleep(0.1)  # a file appearing in another process: nothing to await but the file
        hung_at = time.monotonic()

        while True:
            status, body = _live(port)
            if status == 503:
                break
            assert status == 200 and time.monotonic() - hung_at < 120, (status, body)
            time.sleep(0.2)  # polling the endpoint, as a probe does
        not_live_at = time.monotonic()
        assert "users outbox relay" in body["reason"] and "without progress" in body["reason"], body

        def replaced(s: FleetState) -> bool:
            return any(pid != victim for pid, _ in running(s))

        state = fleet.wait(replaced, 120, "the stuck worker restarted")
        restarted_at = time.monotonic()
        assert not pid_alive(victim)
        assert any("not live for 3 probes" in line and "users outbox relay" in line for line in state.history)

        verified = users.until(lambda seen: of_type(seen, "user.verified", email=email), 120)
        published_at = time.monotonic()
        assert of_type(verified, "user.verified", email=email)
        db = Database(Path(orch["DARKROOM_ORCHESTRATION__DB_PATH"]))
        deadline = time.monotonic() + 60
        while db.conn().execute("SELECT count(*) FROM outbox WHERE consumer = 'users' AND published = 0").fetchone()[0]:
            assert time.monotonic() < deadline, "the restarted relay did not flag its outbox published"
            time.sleep(0.2)  # the relay flags rows in its own process
        # Flagged: nothing of this outbox can be published any more. Count what was, from the topic.
        everything = read_all(settings, USERS)
        created = of_type(everything, "user.created", email=email)
        verified_all = of_type(everything, "user.verified", email=email)
        assert len(created) == 1 and len(verified_all) == 1, (created, verified_all)
        print(f"\nhung relay: /health/live 503 {not_live_at - hung_at:.1f}s after the hang (bound 15s), "
              f"worker restarted {restarted_at - not_live_at:.1f}s later, outbox published "
              f"{published_at - restarted_at:.1f}s after the restart; user.created x{len(created)}, "
              f"user.verified x{len(verified_all)}")
    finally:
        fleet.stop()
