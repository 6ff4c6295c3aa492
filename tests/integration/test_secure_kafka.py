"""Production connections on a real broker: SASL_SSL with SCRAM-SHA-256/512 and a private CA.

A second dev broker (the devstack's KafkaBroker with its optional SASL_SSL listener) runs for this
module, with a CA and a broker certificate made here and SCRAM users created at format time. The
resize worker talks to it only through DARKROOM_KAFKA__* variables; storage is the session's S3.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from operations.devstack.kafka_broker import KafkaBroker
from operations.samples import sample_jpeg
from pipeline.contracts.events import FILE_PROCESSED
from pipeline.contracts.topics import FILES, default_topic_specs
from pipeline.envelope import Envelope
from pipeline.kafka_config import producer_config
from pipeline.preflight import PreflightError, check_kafka
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import DevStackSettings, Settings
from pipeline.topics import ensure_topics
from pipeline.watch import TopicWatcher
from stages.ingest.stage import uploaded_event
from storage import ObjectStore
from storage.keys import original_key
from tests.integration.conftest import REPO
from tests.integration.helpers import events_of
from tests.tls import make_server_pki

pytestmark = pytest.mark.integration

USER = "darkroom-worker"
PASSWORD = "s3cr3t-Sc4am-pa55word"  # distinctive, so a leak into any log line is easy to find
WRONG = "not-the-password-42"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SecureBroker:
    """Addresses and client settings of the module's SASL_SSL broker."""

    def __init__(self, broker: KafkaBroker, sasl_port: int, ca: Path) -> None:
        self.broker = broker
        self.bootstrap = f"127.0.0.1:{sasl_port}"
        self.ca = ca

    def env(self, password: str = PASSWORD, mechanism: str = "SCRAM-SHA-256", ca: bool = True) -> dict[str, str]:
        """DARKROOM_KAFKA__* variables of a client of the SASL_SSL listener."""
        env = {
            "DARKROOM_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "DARKROOM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "DARKROOM_KAFKA__SASL_MECHANISM": mechanism,
            "DARKROOM_KAFKA__SASL_USERNAME": USER,
            "DARKROOM_KAFKA__SASL_PASSWORD": password,
        }
        if ca:
            env["DARKROOM_KAFKA__SSL_CA_LOCATION"] = str(self.ca)
        return env

    def settings(self, base: Settings, **kwargs: object) -> Settings:
        """``base`` with the Kafka settings of ``env(**kwargs)``."""
        env = self.env(**kwargs)  # type: ignore[arg-type]
        kafka = base.kafka.model_copy(update={
            "bootstrap_servers": env["DARKROOM_KAFKA__BOOTSTRAP_SERVERS"], "security_protocol": "SASL_SSL",
            "sasl_mechanism": env["DARKROOM_KAFKA__SASL_MECHANISM"], "sasl_username": USER,
            "sasl_password": SecretStr(env["DARKROOM_KAFKA__SASL_PASSWORD"]),
            "ssl_ca_location": Path(env["DARKROOM_KAFKA__SSL_CA_LOCATION"]) if "DARKROOM_KAFKA__SSL_CA_LOCATION" in env else None,
        })
        return base.model_copy(update={"kafka": kafka})


@pytest.fixture(scope="module")
def secure(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    pki = make_server_pki(folder)
    ca, keystore = pki.ca, pki.keystore
    sasl_port = _free_port()
    dev = DevStackSettings(
        data_dir=folder, kafka_port=_free_port(), kafka_controller_port=_free_port(), kafka_heap="384m",
        kafka_sasl_ssl_port=sasl_port, kafka_ssl_keystore_pem=keystore,
        kafka_scram_users={USER: SecretStr(PASSWORD)},
    )
    broker = KafkaBroker(dev, folder)
    pid = broker.start()
    try:
        broker.wait_healthy(pid, 120)
        admin = broker.admin_client()
        assert admin is not None
        ensure_topics(admin, default_topic_specs())
        _wait_for_leaders(admin, FILES)
        yield SecureBroker(broker, sasl_port, ca)
    finally:
        broker.stop()
        log = broker.process.logfile.read_text(errors="replace") if broker.process.logfile.exists() else ""
        assert PASSWORD not in log, "the SCRAM password appeared in the broker log"
        assert PASSWORD not in broker.server_properties.read_text()


def _wait_for_leaders(admin: AdminClient, topic: str, timeout_s: float = 30.0) -> None:
    """Just-created partitions have no leader for a moment; watermark requests fail until they do."""
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(topic=topic, timeout=5).topics[topic]
        if meta.error is None and meta.partitions and all(p.leader >= 0 for p in meta.partitions.values()):
            return
        assert time.monotonic() < deadline, f"{topic}: partitions without a leader after {timeout_s:.0f} s"
        time.sleep(0.2)  # metadata has no event to await


def _publish_uploads(settings: Settings, store: ObjectStore, shoot: str, count: int) -> dict[str, Envelope]:
    """Originals written straight to S3 and their file.uploaded events published over SASL_SSL."""
    messages, envelopes = [], {}
    for i in range(count):
        data = sample_jpeg(640, 480, 70_000 + i)
        file_id = f"secure-{i}-{hashlib.sha256(data).hexdigest()[:10]}"
        key = original_key(shoot, file_id, "jpg")
        info = store.put(key, data, content_type="image/jpeg")
        fid, envelope = uploaded_event(store.bucket, key, info.size, info.etag, "test")
        envelopes[fid] = envelope
        messages.append(Outgoing.event(FILES, fid, envelope))
    publisher = Publisher(producer_config(settings))
    try:
        publisher.publish_all(messages)
    finally:
        publisher.close()
    return envelopes


def test_worker_with_the_right_scram_credentials_processes_photos_and_logs_no_secret(
    secure: SecureBroker, settings: Settings, store: ObjectStore, start_worker, shoot_id: str
) -> None:
    # The test's own clients use SCRAM-SHA-512, the worker SCRAM-SHA-256: both mechanisms are proven.
    client = secure.settings(settings, mechanism="SCRAM-SHA-512")
    check_kafka(client, timeout_s=20)
    watcher = TopicWatcher(client, FILES)
    try:
        worker = start_worker("resize", **secure.env())
        envelopes = _publish_uploads(client, store, shoot_id, 3)
        watcher.until(lambda seen: {s.key.decode() for s in events_of(seen, FILE_PROCESSED, set(envelopes))} >= set(envelopes), 120)
        for seen in events_of(watcher.seen, FILE_PROCESSED, set(envelopes)):
            processed = seen.envelope()
            assert processed.causation_id == envelopes[seen.key.decode()].event_id
            assert store.exists(processed.data["key"])
    finally:
        watcher.close()
    worker.stop()
    assert worker.lines, "the worker logged nothing; the secret check below would prove nothing"
    assert not [line for line in worker.lines if PASSWORD in line]


def test_a_wrong_password_is_reported_as_authentication_within_seconds(secure: SecureBroker, settings: Settings) -> None:
    started = time.monotonic()
    with pytest.raises(PreflightError) as caught:
        check_kafka(secure.settings(settings, password=WRONG), timeout_s=30)
    took = time.monotonic() - started
    message = caught.value.message
    assert "authentication failed" in message.lower() and USER in message, message
    assert WRONG not in message and PASSWORD not in message
    assert took < 10, f"took {took:.1f} s"


def test_an_untrusted_broker_certificate_is_reported_as_tls(secure: SecureBroker, settings: Settings) -> None:
    with pytest.raises(PreflightError) as caught:
        check_kafka(secure.settings(settings, ca=False), timeout_s=30)
    assert "TLS handshake" in caught.value.message and "SSL_CA_LOCATION" in caught.value.message


def _worker_runs_preflight() -> bool:
    source = (REPO / "pipeline" / "worker.py").read_text()
    return "check_kafka(" in source


@pytest.mark.skipif(not _worker_runs_preflight(), reason="pipeline/worker.py does not call pipeline.preflight.check_kafka yet")
def test_a_worker_with_a_wrong_password_exits_non_zero_naming_authentication(
    secure: SecureBroker, stack_env: dict[str, str]
) -> None:
    env = {**os.environ, **stack_env, **secure.env(password=WRONG)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--log-level", "DEBUG", "worker", "resize"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert re.search(r"authentication", output, re.IGNORECASE), output
    assert WRONG not in output and PASSWORD not in output
    assert took < 20, f"took {took:.1f} s"
