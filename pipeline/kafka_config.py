"""librdkafka configurations derived from the settings object, in one place.

Security (SASL_SSL with SCRAM and a private CA) is built here from typed settings, so every client
of the process (consumer, producer, admin, watchers, CLI tools) connects the same way. The SASL
password is read from its SecretStr only into the dict handed to librdkafka; never log a config
returned by these functions (use :func:`redacted` for that).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from pipeline.errors import ConfigError
from pipeline.kafka_logs import client_callbacks
from pipeline.settings import KafkaSettings, Settings

Config = dict[str, str | int | bool]

# librdkafka properties whose values must never reach a log line.
SECRET_PROPERTIES = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret"})


class KafkaConfigError(ConfigError):
    """The Kafka security settings are incomplete or contradictory (raised before any connection)."""


def security_config(kafka: KafkaSettings) -> Config:
    """The librdkafka security properties of ``kafka``; empty for PLAINTEXT.

    Raises KafkaConfigError when a SASL protocol lacks a username or password, or a CA file is
    missing: better a clear message at start-up than a retried handshake in the logs.
    """
    protocol = kafka.security_protocol
    config: Config = {"security.protocol": protocol}
    if protocol.startswith("SASL_") and kafka.sasl_mechanism == "OAUTHBEARER":
        config.update(_oauthbearer(kafka))
    elif protocol.startswith("SASL_"):
        if not kafka.sasl_username or kafka.sasl_password is None:
            raise KafkaConfigError(
                f"DARKROOM_KAFKA__SECURITY_PROTOCOL={protocol} needs DARKROOM_KAFKA__SASL_USERNAME and "
                "DARKROOM_KAFKA__SASL_PASSWORD"
            )
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    if protocol.endswith("SSL") and kafka.ssl_ca_location is not None:
        if not kafka.ssl_ca_location.is_file():
            raise KafkaConfigError(f"DARKROOM_KAFKA__SSL_CA_LOCATION {str(kafka.ssl_ca_location)!r} is not a file")
        config["ssl.ca.location"] = str(kafka.ssl_ca_location)
    return config


# Reconnect backoff. With librdkafka's defaults (100 ms, up to 10 s) a consumer whose only broker is
# down tried 385 connections in 20 s (19/s, each one log line and one error); with 1 s up to 5 s it
# tried 40 (2/s: librdkafka's "connect to any broker" for metadata runs every backoff/2 however far
# the per-broker backoff has grown), and a returning broker is found within a few seconds. Measured
# with confluent-kafka 2.16 against a closed port. Logs of failed attempts are throttled per client
# (pipeline/kafka_logs.py).
RECONNECT_BACKOFF = {"reconnect.backoff.ms": 1000, "reconnect.backoff.max.ms": 5000}


def _oauthbearer(kafka: KafkaSettings) -> Config:
    """OAUTHBEARER through OIDC client credentials: librdkafka fetches and refreshes the token (KIP-768)."""
    missing = [var for var, value in (("DARKROOM_KAFKA__OAUTH_TOKEN_ENDPOINT_URL", kafka.oauth_token_endpoint_url),
                                      ("DARKROOM_KAFKA__OAUTH_CLIENT_ID", kafka.oauth_client_id),
                                      ("DARKROOM_KAFKA__OAUTH_CLIENT_SECRET", kafka.oauth_client_secret)) if not value]
    if missing:
        raise KafkaConfigError(f"DARKROOM_KAFKA__SASL_MECHANISM=OAUTHBEARER needs {', '.join(missing)}")
    assert kafka.oauth_client_secret is not None and kafka.oauth_client_id and kafka.oauth_token_endpoint_url
    config: Config = {
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": kafka.oauth_token_endpoint_url,
        "sasl.oauthbearer.client.id": kafka.oauth_client_id,
        "sasl.oauthbearer.client.secret": kafka.oauth_client_secret.get_secret_value(),
    }
    if kafka.oauth_scope:
        config["sasl.oauthbearer.scope"] = kafka.oauth_scope
    if kafka.oauth_extensions:
        config["sasl.oauthbearer.extensions"] = kafka.oauth_extensions
    return config


def client_id(settings: Settings, stage: str) -> str:
    """`client.id` of a worker's clients: the stage and the worker (host name, which is the pod's, and pid).

    Broker logs, quotas and metrics then tell stages and workers apart.
    """
    return f"{settings.kafka.client_id}.{stage}.{socket.gethostname()}.{os.getpid()}"


def _common(settings: Settings, role: str, client: str | None = None) -> Config:
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "client.id": client or settings.kafka.client_id,
        **RECONNECT_BACKOFF,
        **client_callbacks(role),  # type: ignore[dict-item]  # callables, for librdkafka's logger and error_cb
        **security_config(settings.kafka),
        **settings.kafka.extra,
    }


def admin_config(settings: Settings) -> Config:
    """For AdminClient."""
    return _common(settings, "admin")


def producer_config(settings: Settings, client: str | None = None) -> Config:
    """Idempotent, acks=all: an acknowledged event is durable and never duplicated by producer retries."""
    return {
        **_common(settings, "producer", client),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "delivery.timeout.ms": int(settings.worker.delivery_timeout_s * 1000),
        **settings.kafka.extra,
    }


def consumer_config(settings: Settings, group_id: str, client: str | None = None) -> Config:
    """Manual offsets (we commit what is finished, never what is merely received), cooperative rebalancing."""
    return {
        **_common(settings, f"consumer {group_id}", client),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
        "session.timeout.ms": settings.worker.session_timeout_ms,
        "max.poll.interval.ms": settings.worker.max_poll_interval_ms,
        **settings.kafka.extra,
    }


def redacted(config: Mapping[str, object]) -> dict[str, object]:
    """A copy of a librdkafka config that is safe to log: secret values replaced by '**********'."""
    return {k: ("**********" if k in SECRET_PROPERTIES else v) for k, v in config.items() if not callable(v)
            and k != "logger"}
