"""Production connection settings: SASL_SSL/SCRAM and a CA from DARKROOM_* variables, secrets never shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.kafka_config import (
    KafkaConfigError,
    admin_config,
    consumer_config,
    producer_config,
    redacted,
)
from pipeline.settings import Settings

PASSWORD = "hunter2-very-secret"


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n")
    return path


@pytest.fixture
def sasl_env(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    for name, value in {
        "DARKROOM_KAFKA__BOOTSTRAP_SERVERS": "b-1.example:9096",
        "DARKROOM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "DARKROOM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
        "DARKROOM_KAFKA__SASL_USERNAME": "darkroom",
        "DARKROOM_KAFKA__SASL_PASSWORD": PASSWORD,
        "DARKROOM_KAFKA__SSL_CA_LOCATION": str(ca_file),
    }.items():
        monkeypatch.setenv(name, value)


def test_plaintext_by_default_with_no_sasl_properties() -> None:
    config = admin_config(Settings())
    assert config["security.protocol"] == "PLAINTEXT"
    assert not [k for k in config if k.startswith(("sasl.", "ssl."))]


@pytest.mark.usefixtures("sasl_env")
def test_sasl_ssl_scram_from_environment_reaches_every_client(ca_file: Path) -> None:
    settings = Settings()
    for config in (admin_config(settings), producer_config(settings), consumer_config(settings, "darkroom.resize")):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == "SCRAM-SHA-256"
        assert config["sasl.username"] == "darkroom"
        assert config["sasl.password"] == PASSWORD
        assert config["ssl.ca.location"] == str(ca_file)


@pytest.mark.usefixtures("sasl_env")
def test_scram_sha_512_and_extra_properties_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DARKROOM_KAFKA__EXTRA", '{"ssl.endpoint.identification.algorithm": "none"}')
    config = consumer_config(Settings(), "g")
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["ssl.endpoint.identification.algorithm"] == "none"


@pytest.mark.usefixtures("sasl_env")
def test_the_password_never_shows_in_repr_str_dumps_or_redacted_configs(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings()
    shown = [repr(settings), str(settings), repr(settings.kafka), settings.model_dump_json(), str(settings.model_dump())]
    assert not [text for text in shown if PASSWORD in text]
    assert "**********" in repr(settings.kafka)
    safe = redacted(consumer_config(settings, "g"))
    assert PASSWORD not in str(safe) and safe["sasl.password"] == "**********"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings: %s", settings)
    assert PASSWORD not in caplog.text


@pytest.mark.usefixtures("sasl_env")
def test_sasl_without_credentials_is_refused_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DARKROOM_KAFKA__SASL_PASSWORD")
    with pytest.raises(KafkaConfigError, match="DARKROOM_KAFKA__SASL_PASSWORD"):
        admin_config(Settings())


@pytest.mark.usefixtures("sasl_env")
def test_a_missing_ca_file_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DARKROOM_KAFKA__SSL_CA_LOCATION", str(tmp_path / "nope.pem"))
    with pytest.raises(KafkaConfigError, match="SSL_CA_LOCATION"):
        producer_config(Settings())
