"""The one settings object: every knob, its default and its environment variable.

Variables are prefixed ``DARKROOM_`` and nested with ``__``, e.g.
``DARKROOM_KAFKA__BOOTSTRAP_SERVERS`` or ``DARKROOM_WORKER__MAX_IN_FLIGHT``. The defaults point at
the local stack started by ``darkroom dev up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    """How to reach the broker."""

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "darkroom"
    # Production connections (see pipeline/kafka_config.py): SASL_SSL with SCRAM and a private CA.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    # SecretStr: repr/str/logging show '**********'; only kafka_config reads the value.
    sasl_password: SecretStr | None = None
    # PEM file of the CA(s) that signed the brokers' certificates; unset = the system trust store.
    ssl_ca_location: Path | None = None
    # Extra librdkafka properties, applied last (they win), e.g. {"ssl.endpoint.identification.algorithm": "none"}.
    extra: dict[str, str] = Field(default_factory=dict)


class StorageSettings(BaseModel):
    """How to reach the S3-compatible object store."""

    endpoint_url: str = "http://127.0.0.1:17070"
    access_key: str = "darkroom"
    secret_key: SecretStr = SecretStr("darkroom-secret")
    region: str = "us-east-1"
    bucket: str = "darkroom"
    # Which client library the S3 adapter uses: minio measured faster on get and put against the
    # local server (bench/RESULTS.md, "Storage client"); boto3 stays available for AWS specifics.
    client: Literal["boto3", "minio"] = "minio"
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0
    # PEM bundle of the CA(s) that signed an https endpoint's certificate (a private CA); unset = certifi's.
    ca_bundle: Path | None = None


class WorkerSettings(BaseModel):
    """Limits of one stage worker process."""

    # Events held at once (received, not yet finished); at the limit the worker pauses its partitions
    # until half are done. Events are small (photos are fetched only when processed), so this bounds
    # drain time on SIGTERM more than memory.
    max_in_flight: int = Field(default=64, ge=2)
    # A full window stops reading; if it stays full this long, every partition is paused so the
    # worker can keep polling (and stay in its group, see max_poll_interval_ms) until half is free.
    pause_after_full_s: float = Field(default=5.0, gt=0)
    # Threads for the CPU work of handlers; libvips releases the GIL, so threads scale on cores.
    # 0 runs handlers on the polling thread: best for cheap stages (business consumers, pass-through).
    threads: int = Field(default=2, ge=0)
    # Transient errors: attempts before an event is dead-lettered (0 = retry forever).
    retry_max_attempts: int = Field(default=10, ge=0)
    retry_initial_backoff_s: float = Field(default=0.2, gt=0)
    retry_max_backoff_s: float = Field(default=10.0, gt=0)
    # How often finished offsets are committed while running.
    commit_interval_s: float = Field(default=1.0, gt=0)
    # On SIGTERM or revocation: how long in-flight events may take to finish before they are abandoned
    # (abandoned events are not committed, so another worker redoes them).
    drain_timeout_s: float = Field(default=30.0, gt=0)
    # How long to wait for the broker to acknowledge a produced event.
    delivery_timeout_s: float = Field(default=30.0, gt=0)
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 300_000
    # Health and metrics endpoints (/health/*, /metrics). 0 = any free port, logged at start-up;
    # the fleet supervisor assigns one per worker. Bind 0.0.0.0 in a container.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)


class ImagingSettings(BaseModel):
    """Limits checked from the image header before any pixel is decoded."""

    max_input_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_input_pixels: int = Field(default=100_000_000, ge=1)
    max_input_side: int = Field(default=30_000, ge=1)
    # Threads libvips may use inside one operation (VIPS_CONCURRENCY).
    vips_concurrency: int = Field(default=1, ge=1)


class TelemetrySettings(BaseModel):
    """Where traces go and how fresh the metrics and health answers are."""

    # OTLP/HTTP collector base URL, e.g. http://127.0.0.1:4318 (spans go to <url>/v1/traces); unset = no OTLP.
    otlp_endpoint: str | None = None
    # Append every finished span as one JSON line to this file (tests, debugging); unset = off.
    span_file: Path | None = None
    # Prefix of `service.name` of spans and metrics: a worker of stage resize reports as `darkroom-resize`.
    service_name: str = "darkroom"
    # How often librdkafka reports consumer lag per partition (the lag gauge is as old as this).
    stats_interval_ms: int = Field(default=5_000, ge=100)
    # Bound on one dependency check (Kafka metadata fetch, storage ping) of a health endpoint.
    check_timeout_s: float = Field(default=2.0, gt=0)


class OrchestrationSettings(BaseModel):
    """The business consumers (users, invites, invite-sender, notifier, gallery): state and mail."""

    # Their embedded database (SQLite); unset = `<dev.data_dir>/orchestration.sqlite`.
    db_path: Path | None = None
    # Where mail goes. Port 0 = the dev stack's SMTP sink, found through `<dev.data_dir>/run/smtp.port`
    # (the sink picks a free port, so parallel stacks never collide).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=0, ge=0, le=65535)
    mail_from: str = "darkroom <noreply@darkroom.local>"
    # Gallery notifications: at most one mail per shoot per interval, listing every photo added in it.
    notify_interval_s: float = Field(default=60.0, gt=0)
    # How often the outbox relay looks for unpublished events and due notifications when idle.
    relay_tick_s: float = Field(default=0.5, gt=0)
    # Lifetime of the presigned links that `darkroom gallery` and the mails show.
    link_expiry_s: int = Field(default=7 * 24 * 3600, ge=60, le=7 * 24 * 3600)


class ReconcileSettings(BaseModel):
    """The reconcile worker (`darkroom worker reconcile`): how often it looks for lost notifications."""

    # Seconds between two passes. A lost notification is found within interval + grace when any
    # event of its shoot passed meanwhile, else at the next full sweep (stages/ingest/reconcile_stage.py).
    interval_s: float = Field(default=60.0, gt=0)
    # Originals younger than this are left to the notification path (it usually wins by far).
    grace_s: float = Field(default=60.0, ge=0)
    # Every Nth pass lists every original and reads all of `files` (1 = always a full sweep).
    full_sweep_every: int = Field(default=10, ge=1)


class DevStackSettings(BaseModel):
    """Where the local stack lives and listens."""

    data_dir: Path = Path(".darkroom")
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "512m"
    kafka_version: str = "4.1.1"
    versitygw_version: str = "v1.8.0"
    s3_port: int = 17070
    # Optional second Kafka listener, SASL_SSL with SCRAM-SHA-256/512 (tests of production connections).
    # It needs a PEM file holding the broker's PKCS#8 private key and certificate chain, and users that
    # are created when the log dir is formatted (a running broker must be re-formatted to add users).
    kafka_sasl_ssl_port: int | None = None
    kafka_ssl_keystore_pem: Path | None = None
    kafka_scram_users: dict[str, SecretStr] = Field(default_factory=dict)


class Settings(BaseSettings):
    """Every setting of darkroom, read from ``DARKROOM_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="DARKROOM_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    dev: DevStackSettings = Field(default_factory=DevStackSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    # The rendition graph (YAML, see pipeline/contracts/renditions.py); unset = the built-in `web` rendition only.
    pipeline_file: Path | None = None
    # Name written in the `producer` field of every event this process publishes.
    producer_name: str = "darkroom"
    log_level: str = "WARNING"
