"""Start-up check of the Kafka connection: fail in seconds with a message a human can act on.

Without it a wrong SASL password or an untrusted broker certificate is not an error to librdkafka
but a condition it retries forever: the worker would hang in its first metadata request and report
"timed out" after 30 s, naming neither authentication nor TLS. Here one metadata request runs with
an ``error_cb`` that sees the real cause (``_AUTHENTICATION``, ``_SSL``), and that cause becomes
the message.

It raises :class:`PreflightError`, a ``click.ClickException``: any command that calls it prints
``Error: <message>`` and exits 1 without a traceback (the worker's container then restarts with
the reason in its log). No message contains the password: it is only ever read into the config.
"""

from __future__ import annotations

import logging
import time

import click
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from pipeline.kafka_config import admin_config
from pipeline.settings import Settings

log = logging.getLogger(__name__)

# librdkafka logs every failed handshake while we wait; keep them at the application's log level.
_client_log = logging.getLogger(f"{__name__}.librdkafka")


class PreflightError(click.ClickException):
    """Kafka cannot be used with these settings (authentication, TLS, address); the message says which."""


def check_kafka(settings: Settings, timeout_s: float = 10.0) -> None:
    """Fetch cluster metadata once; raise PreflightError naming the cause if that fails within ``timeout_s``.

    Authentication and TLS failures are reported as soon as librdkafka sees them (usually well
    under a second), unreachable brokers after ``timeout_s``.
    """
    kafka = settings.kafka
    base = admin_config(settings)  # KafkaConfigError (a ConfigError) before any connection
    errors: list[KafkaError] = []
    admin = AdminClient({**base, "error_cb": errors.append, "logger": _client_log})
    deadline = time.monotonic() + timeout_s
    last: KafkaException | None = None
    while True:
        try:
            admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            log.info("preflight: Kafka at %s answers (%s)", kafka.bootstrap_servers, kafka.security_protocol)
            return
        except KafkaException as exc:
            last = exc
        admin.poll(0)  # serve error_cb
        fatal = _explain(settings, errors)
        if fatal is not None:
            raise PreflightError(fatal)
        if time.monotonic() >= deadline:
            detail = errors[-1].str() if errors else str(last)
            raise PreflightError(
                f"Kafka at {kafka.bootstrap_servers} did not answer within {timeout_s:.0f} s ({detail}). "
                "Is DARKROOM_KAFKA__BOOTSTRAP_SERVERS right and the broker reachable?"
            )


def _explain(settings: Settings, errors: list[KafkaError]) -> str | None:
    """A message for the first error no retry will fix, or None while waiting may still help."""
    kafka = settings.kafka
    for err in errors:
        if err.code() == KafkaError._AUTHENTICATION and kafka.sasl_mechanism == "OAUTHBEARER":
            return (
                f"Kafka OAUTHBEARER authentication failed at {kafka.bootstrap_servers} for client "
                f"{kafka.oauth_client_id!r}: {err.str()}. Check DARKROOM_KAFKA__OAUTH_TOKEN_ENDPOINT_URL, "
                "DARKROOM_KAFKA__OAUTH_CLIENT_ID, DARKROOM_KAFKA__OAUTH_CLIENT_SECRET and DARKROOM_KAFKA__OAUTH_SCOPE."
            )
        if err.code() == KafkaError._AUTHENTICATION:
            return (
                f"Kafka authentication failed at {kafka.bootstrap_servers} for user {kafka.sasl_username!r} "
                f"with {kafka.security_protocol}/{kafka.sasl_mechanism}: {err.str()}. Check "
                "DARKROOM_KAFKA__SASL_USERNAME, DARKROOM_KAFKA__SASL_PASSWORD and DARKROOM_KAFKA__SASL_MECHANISM."
            )
        if err.code() == KafkaError._SSL:
            return (
                f"TLS handshake with Kafka at {kafka.bootstrap_servers} failed: {err.str()}. Check "
                "DARKROOM_KAFKA__SSL_CA_LOCATION (the CA that signed the broker certificate) and that the "
                "listener speaks TLS (DARKROOM_KAFKA__SECURITY_PROTOCOL)."
            )
    return None
