"""librdkafka configurations derived from the settings object, in one place."""

from __future__ import annotations

from pipeline.settings import Settings

Config = dict[str, str | int | bool]


def _common(settings: Settings) -> Config:
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "client.id": settings.kafka.client_id,
        **settings.kafka.extra,
    }


def admin_config(settings: Settings) -> Config:
    """For AdminClient."""
    return _common(settings)


def producer_config(settings: Settings) -> Config:
    """Idempotent, acks=all: an acknowledged event is durable and never duplicated by producer retries."""
    return {
        **_common(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "delivery.timeout.ms": int(settings.worker.delivery_timeout_s * 1000),
        **settings.kafka.extra,
    }


def consumer_config(settings: Settings, group_id: str) -> Config:
    """Manual offsets (we commit what is finished, never what is merely received), cooperative rebalancing."""
    return {
        **_common(settings),
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
