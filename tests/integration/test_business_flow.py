"""The business flow on the real stack: shoot → user → invite → mail, crashes, and dead letters.

Real Kafka, real S3, the dev stack's real SMTP sink, real `darkroom worker` processes; the crash
tests make a worker `os._exit` (as SIGKILL would) at a chosen point between side effect and commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from orchestration.db import Database
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES, GALLERIES, INVITES, SHOOTS, USERS
from pipeline.envelope import Envelope
from pipeline.kafka_config import consumer_config, producer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import Settings
from pipeline.watch import Seen
from tests.integration.helpers import dead_letters, deliveries, mailbox

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FLOW = ("users", "invites", "invite-sender")


@pytest.fixture
def orch_env(tmp_path: Path) -> dict[str, str]:
    """A database of this test's own, and a quick relay."""
    return {"DARKROOM_ORCHESTRATION__DB_PATH": str(tmp_path / "orchestration.sqlite"),
            "DARKROOM_ORCHESTRATION__RELAY_TICK_S": "0.2"}


def darkroom(env: dict[str, str], *args: str) -> str:
    """Run a `darkroom` command; returns its stdout."""
    out = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def caught_up(settings: Settings, stage: str, topic: str, timeout_s: float = 60.0) -> None:
    """Wait until the stage's group has committed past every event of `topic`.

    Unlike comparing committed offsets with the log end, this holds on topics written in Kafka
    transactions, whose last offset is a commit marker no consumer ever receives (or commits).
    """
    group = Consumer(consumer_config(settings, f"darkroom.{stage}"))
    deadline = time.monotonic() + timeout_s
    try:
        partitions = [TopicPartition(topic, p) for p in group.list_topics(topic, timeout=10).topics[topic].partitions]
        while True:
            committed = group.committed(partitions, timeout=10)
            probe = Consumer({**consumer_config(settings, f"darkroom.probe.{time.time_ns()}"), "enable.partition.eof": True})
            probe.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                          for tp in committed])
            pending, at_end = 0, set()
            while len(at_end) < len(partitions) and time.monotonic() < deadline:
                for msg in probe.consume(100, timeout=1.0):
                    if msg.error() is not None:
                        at_end.add(msg.partition())
                    else:
                        pending += 1
            probe.close()
            if pending == 0 and len(at_end) == len(partitions):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stage} has {pending} uncommitted event(s) on {topic}")
            time.sleep(0.5)
    finally:
        group.close()


def of_type(seen: list[Seen], event_type: str, **data: str) -> list[Envelope]:
    found = [s.envelope() for s in seen if s.event_type == event_type]
    return [e for e in found if all(e.data.get(k) == v for k, v in data.items())]


def test_invite_flow_from_shoot_created_to_a_received_mail_with_one_correlation_id(
    settings: Settings, start_worker, watch, orch_env: dict[str, str]
) -> None:
    shoots, users, invites = watch(SHOOTS), watch(USERS), watch(INVITES)
    for stage in FLOW:
        start_worker(stage, **orch_env)
    email = f"client-{time.time_ns()}@example.com"
    shoot_id = darkroom(orch_env, "shoot", "create", "--title", "Wedding", "--client-email", email).strip()

    invites.until(lambda seen: of_type(seen, "invite.sent", shootId=shoot_id), 120)
    [created] = of_type(shoots.until(lambda s: of_type(s, "shoot.created", shootId=shoot_id), 10), "shoot.created",
                        shootId=shoot_id)
    users.until(lambda seen: of_type(seen, "user.verified", email=email), 10)
    chain = [created, *of_type(users.seen, "user.created", email=email), *of_type(users.seen, "user.verified", email=email),
             *of_type(invites.seen, "invite.created", shootId=shoot_id), *of_type(invites.seen, "invite.sent", shootId=shoot_id)]
    assert [e.event_type for e in chain] == ["shoot.created", "user.created", "user.verified", "invite.created", "invite.sent"]
    assert {e.correlation_id for e in chain} == {created.event_id}
    shoot_created, user_created, user_verified, invite_created, invite_sent = chain
    # Each event names its cause; the invite joins shoot and verified user and names the shoot.
    assert user_created.causation_id == shoot_created.event_id
    assert user_verified.causation_id == user_created.event_id
    assert invite_created.causation_id == shoot_created.event_id
    assert invite_sent.causation_id == invite_created.event_id

    # The mail arrived in Mailpit, carrying the chain's correlation id.
    sent = chain[-1]
    [mail] = mailbox().deliveries(sent.data["messageId"])
    assert mail.to == (email,)
    assert mailbox().headers(mail.id)["X-Darkroom-Correlation-Id"] == [created.event_id]

    listing = darkroom(orch_env, "invites", "list", "--shoot", shoot_id)
    invite_id = sent.data["inviteId"]
    assert invite_id in listing and "sent" in listing
    darkroom(orch_env, "invite", "accept", invite_id)
    [accepted] = of_type(invites.until(lambda s: of_type(s, "invite.accepted", inviteId=invite_id), 30), "invite.accepted")
    assert accepted.correlation_id == created.event_id
    db = Database(Path(orch_env["DARKROOM_ORCHESTRATION__DB_PATH"]))
    deadline = time.monotonic() + 30
    while db.conn().execute("SELECT status FROM invites WHERE invite_id = ?", (invite_id,)).fetchone()[0] != "accepted":
        assert time.monotonic() < deadline, "invite.accepted not applied"
        time.sleep(0.2)


@pytest.mark.parametrize("point", ["after-apply", "after-smtp", "after-publish"])
def test_a_crash_between_side_effect_and_commit_sends_no_second_mail_or_invite_sent(
    settings: Settings, start_worker, watch, orch_env: dict[str, str], point: str
) -> None:
    invites = watch(INVITES)
    start_worker("users", **orch_env)
    start_worker("invites", **orch_env)
    doomed = start_worker("invite-sender", DARKROOM_FAULT=f"{point}:invite-sender", **orch_env)
    email = f"crash-{point}-{time.time_ns()}@example.com"
    shoot_id = darkroom(orch_env, "shoot", "create", "--title", "Crash", "--client-email", email).strip()

    assert doomed.wait(240) == 137, "\n".join(doomed.lines[-20:])  # died at the fault point, nothing committed
    start_worker("invite-sender", **orch_env)  # the redelivery goes to a fresh worker
    invites.until(lambda seen: of_type(seen, "invite.sent", shootId=shoot_id), 120)
    caught_up(settings, "invite-sender", INVITES)
    invites.poll(2.0)  # anything duplicated would be here by now

    sent = of_type(invites.seen, "invite.sent", shootId=shoot_id)
    assert len(sent) == 1, [e.event_id for e in sent]
    message_id = sent[0].data["messageId"]
    # Only a crash after the server's 250 and before the database knew can resend; the resend has
    # the same Message-ID, so a receiver keeps one copy. Everywhere else: one delivery.
    assert deliveries(message_id) == (2 if point == "after-smtp" else 1)


def test_an_invalid_event_on_each_topic_is_dead_lettered_and_the_consumers_go_on(
    settings: Settings, start_worker, watch, orch_env: dict[str, str]
) -> None:
    dlq, invites = watch(DEAD_LETTER_QUEUE), watch(INVITES)
    for stage in (*FLOW, "notifier", "gallery"):
        start_worker(stage, **orch_env).wait_for_line(r"assigned", 60)
    bad: dict[str, tuple[str, dict[str, object]]] = {
        SHOOTS: ("shoot.created", {"shootId": "s-bad", "title": "x", "clientEmail": "not-an-address"}),
        USERS: ("user.created", {"userId": "../u", "email": "a@example.com"}),
        INVITES: ("invite.created", {"inviteId": "i-bad"}),
        FILES: ("file.processed", {"fileId": "f-bad", "shootId": "s", "rendition": "web"}),
        GALLERIES: ("gallery.updated", {"shootId": "s", "fileId": "f", "change": "exploded"}),
    }
    publisher = Publisher(producer_config(settings))
    tag = str(time.time_ns())
    try:
        messages = []
        for topic, (event_type, data) in bad.items():
            envelope = Envelope(event_id=f"bad-{topic}-{tag}", event_type=event_type, version="1.0.0",
                                occurred_at="2026-01-01T00:00:00Z", producer="test", correlation_id="c",
                                subject="x", data=data)
            headers = [("eventType", event_type.encode()), ("version", b"1.0.0")]
            messages.append(Outgoing(topic, f"bad-{tag}".encode(), envelope.to_bytes(), headers))
        publisher.publish_all(messages)
    finally:
        publisher.close()
    dlq.until(lambda _seen: {d.topic for d in dead_letters(dlq) if d.key == f"bad-{tag}".encode()} >= set(bad), 90)
    by_topic = {d.topic: d for d in dead_letters(dlq) if d.key == f"bad-{tag}".encode()}
    assert by_topic[SHOOTS].error_kind == "permanent" and "clientEmail" in by_topic[SHOOTS].error_message
    assert by_topic[FILES].stage == "gallery" and by_topic[GALLERIES].stage == "notifier"

    # ...and the consumers go on: a valid shoot after the poison still gets its invite mailed.
    shoot_id = darkroom(orch_env, "shoot", "create", "--title", "After", "--client-email", f"after-{tag}@example.com").strip()
    invites.until(lambda seen: of_type(seen, "invite.sent", shootId=shoot_id), 120)
