"""OAUTHBEARER (OIDC) from settings, librdkafka pass-through, and a client.id per stage and worker."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import Consumer, Producer

from pipeline.kafka_config import KafkaConfigError, admin_config, client_id, consumer_config, producer_config, redacted
from pipeline.settings import Settings

SECRET = "oidc-client-secret-value"


@pytest.fixture
def oidc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DARKROOM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "DARKROOM_KAFKA__SASL_MECHANISM": "OAUTHBEARER",
        "DARKROOM_KAFKA__OAUTH_TOKEN_ENDPOINT_URL": "https://idp.example/oauth2/token",
        "DARKROOM_KAFKA__OAUTH_CLIENT_ID": "darkroom-workers",
        "DARKROOM_KAFKA__OAUTH_CLIENT_SECRET": SECRET,
        "DARKROOM_KAFKA__OAUTH_SCOPE": "kafka",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("oidc_env")
def test_oidc_reaches_every_client_and_librdkafka_accepts_it() -> None:
    settings = Settings()
    for config in (admin_config(settings), producer_config(settings), consumer_config(settings, "darkroom.resize")):
        assert config["sasl.mechanism"] == "OAUTHBEARER"
        assert config["sasl.oauthbearer.method"] == "oidc"
        assert config["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/oauth2/token"
        assert config["sasl.oauthbearer.client.secret"] == SECRET
        assert config["sasl.oauthbearer.scope"] == "kafka"
        assert "sasl.username" not in config
        assert SECRET not in str(redacted(config))
    # librdkafka validates properties when a client is built (no connection is made before poll).
    Producer(producer_config(settings)).flush(0)
    Consumer(consumer_config(settings, "darkroom.resize")).close()


def test_oidc_without_its_client_secret_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DARKROOM_KAFKA__SASL_MECHANISM", "OAUTHBEARER")
    monkeypatch.setenv("DARKROOM_KAFKA__OAUTH_TOKEN_ENDPOINT_URL", "https://idp.example/token")
    monkeypatch.setenv("DARKROOM_KAFKA__OAUTH_CLIENT_ID", "w")
    with pytest.raises(KafkaConfigError, match="DARKROOM_KAFKA__OAUTH_CLIENT_SECRET"):
        admin_config(Settings())


def test_any_librdkafka_property_passes_through_and_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_KAFKA__EXTRA", '{"sasl.oauthbearer.method": "default", "socket.keepalive.enable": "true"}')
    config = consumer_config(Settings(), "g")
    assert config["socket.keepalive.enable"] == "true" and config["sasl.oauthbearer.method"] == "default"


def test_client_id_names_the_stage_and_the_worker() -> None:
    settings = Settings()
    ident = client_id(settings, "resize")
    assert ident.startswith("darkroom.resize.") and ident.endswith(f".{os.getpid()}")
    assert consumer_config(settings, "darkroom.resize", ident)["client.id"] == ident
    assert producer_config(settings, ident)["client.id"] == ident
