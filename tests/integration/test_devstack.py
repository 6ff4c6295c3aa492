"""The local stack without Docker, end to end: up, idempotent up, S3 notification to Kafka, down.

Runs its own broker and gateway on free ports in a temporary data dir, so it never touches a stack
already running on this machine. The first run downloads the Kafka jars and builds versitygw.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from operations.devstack import DevStack
from orchestration.mailbox import Mailbox
from pipeline.contracts.topics import STORAGE_EVENTS
from pipeline.settings import DevStackSettings, KafkaSettings, Settings, StorageSettings

pytestmark = pytest.mark.integration


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free (all held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DevStack]:
    """A DevStack on free ports and a tmp data dir; always brought down afterwards."""
    missing = [tool for tool in ("java", "mvn", "go") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"dev stack needs {', '.join(missing)} on PATH")
    kafka_port, controller_port, s3_port = _free_ports(3)
    settings = Settings(
        dev=DevStackSettings(
            data_dir=tmp_path / "devstack",
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            s3_port=s3_port,
        ),
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{kafka_port}"),
        storage=StorageSettings(endpoint_url=f"http://127.0.0.1:{s3_port}", bucket="devstack-test"),
    )
    dev = DevStack(settings)
    try:
        yield dev
    finally:
        dev.down()


def test_up_notify_down(stack: DevStack) -> None:
    first = stack.up()
    assert sorted(first.started) == ["kafka", "s3", "smtp"]
    assert first.bucket_created

    status = stack.status()
    assert {name: (s.state, s.healthy) for name, s in status.items()} == {
        "kafka": ("running", True),
        "s3": ("running", True),
        "smtp": ("running", True),
    }
    pids = {name: s.pid for name, s in status.items()}
    # `dev status` shows where Mailpit's web UI is, and it answers there.
    ui = status["smtp"].detail.split("Mailpit web UI ")[1]
    assert ui.startswith("http://127.0.0.1:") and Mailbox(ui).messages() == []

    # Second up: nothing started, same processes, bucket already there.
    t0 = time.monotonic()
    second = stack.up()
    assert second.started == []
    assert sorted(second.already_running) == ["kafka", "s3", "smtp"]
    assert not second.bucket_created
    assert {name: s.pid for name, s in stack.status().items()} == pids
    assert time.monotonic() - t0 < 10

    # A PutObject becomes an S3 event record on storage.events.
    storage = stack.settings.storage
    s3 = boto3.client(
        "s3",
        endpoint_url=storage.endpoint_url,
        aws_access_key_id=stack.settings.dev.s3_access_key,
        aws_secret_access_key=stack.settings.dev.s3_secret_key.get_secret_value(),
        region_name=storage.region,
        config=Config(s3={"addressing_style": "path"}),
    )
    key = f"originals/shoots/s1/{uuid.uuid4().hex}.jpg"
    s3.put_object(Bucket=storage.bucket, Key=key, Body=b"not really a jpeg")

    consumer = Consumer(
        {
            "bootstrap.servers": stack.settings.kafka.bootstrap_servers,
            "group.id": f"devstack-test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        # Assign every partition from the beginning: no group rebalance to wait for.
        partitions = consumer.list_topics(STORAGE_EVENTS, timeout=10).topics[STORAGE_EVENTS].partitions
        consumer.assign([TopicPartition(STORAGE_EVENTS, p, OFFSET_BEGINNING) for p in partitions])
        record = None
        deadline = time.monotonic() + 20
        while record is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            body = json.loads(msg.value())
            for rec in body.get("Records", []):  # the start-up test event has no Records
                if rec["s3"]["object"]["key"] == key:
                    record = rec
    finally:
        consumer.close()
    assert record is not None, "no S3 notification for the PutObject arrived on storage.events"
    assert record["eventName"].startswith("s3:ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == storage.bucket

    assert any("Kafka Server started" in line for line in stack.logs("kafka", 200))
    assert stack.logs("s3", 50)

    assert sorted(stack.down()) == ["kafka", "s3", "smtp"]
    status = stack.status()
    assert {name: (s.state, s.pid, s.healthy) for name, s in status.items()} == {
        "kafka": ("stopped", None, False),
        "s3": ("stopped", None, False),
        "smtp": ("stopped", None, False),
    }
    assert stack.down() == []
