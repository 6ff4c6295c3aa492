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
    # Production connections (see pipeline/kafka_config.py): SASL_SSL with SCRAM or OAUTHBEARER, a private CA.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"] = "SCRAM-SHA-512"
    # OAUTHBEARER with OIDC (client credentials): librdkafka fetches and refreshes the token itself.
    oauth_token_endpoint_url: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_scope: str | None = None
    # SASL extensions some clusters need, e.g. "logicalCluster=lkc-abc,identityPoolId=pool-xyz" (Confluent Cloud).
    oauth_extensions: str | None = None
    sasl_username: str | None = None
    # SecretStr: repr/str/logging show '**********'; only kafka_config reads the value.
    sasl_password: SecretStr | None = None
    # PEM file of the CA(s) that signed the brokers' certificates; unset = the system trust store.
    ssl_ca_location: Path | None = None
    # Extra librdkafka properties, applied last (they win), e.g. {"ssl.endpoint.identification.algorithm": "none"}.
    extra: dict[str, str] = Field(default_factory=dict)


class TopicSettings(BaseModel):
    """How the topics are named and created (see `darkroom topics ensure` and README, "Production")."""

    # Put before every topic name, e.g. "studio-prod." -> "studio-prod.files": two deployments share
    # a cluster, and prefixed ACLs (CreateTopics/Read/Write on `studio-prod.*`) can be used.
    prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    # Replicas of a created topic; -1 = the broker's default.replication.factor.
    replication_factor: int = Field(default=-1, ge=-1)
    # min.insync.replicas of a created topic; unset = the broker's default.
    min_insync_replicas: int | None = Field(default=None, ge=1)
    # Partitions of a created topic (never shrunk).
    partitions: int = Field(default=6, ge=1)
    # Workers create missing topics and grow partitions at start-up only when true (the dev stack and
    # fleet set it); on a real cluster topics are the operator's: `darkroom topics ensure --apply`.
    manage: bool = False


class StorageSettings(BaseModel):
    """How to reach the S3-compatible object store."""

    endpoint_url: str = "http://127.0.0.1:17070"
    # Unset = the standard AWS credential chain (AWS_* variables, profile, web identity, instance role);
    # no default secret: `darkroom dev env` prints the dev stack's keys (storage/credentials.py).
    access_key: str | None = None
    secret_key: SecretStr | None = None
    # AWS profile of ~/.aws/credentials or ~/.aws/config for the chain; unset = AWS_PROFILE or "default".
    profile: str | None = None
    region: str = "us-east-1"
    bucket: str = "darkroom"
    # Which client library the S3 adapter uses: minio measured faster on get and put against the
    # local server (bench/RESULTS.md, "Storage client"); boto3 stays available for AWS specifics.
    client: Literal["boto3", "minio"] = "minio"
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0
    # PEM bundle of the CA(s) that signed an https endpoint's certificate (a private CA); unset = certifi's.
    ca_bundle: Path | None = None
    # How the store writes object keys into its event records: `raw` = the key itself (versitygw,
    # Ceph RGW), `url` = URL-encoded with '+' for a space (AWS S3, MinIO). Ingest decodes accordingly.
    event_key_encoding: Literal["raw", "url"] = "raw"


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
    # /health/live answers 503 when the poll loop, the stage's work, the publisher or an outbox relay
    # has had work and no outcome for this long (pipeline/progress.py); the supervisor then restarts
    # the worker. Above every bounded call (delivery, transactions: 30 s) with a margin.
    liveness_timeout_s: float = Field(default=120.0, gt=0)
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
    # /health/ready turns 503 only after this many failed runs of a check in a row (one slow S3 answer
    # must not take every worker out of service at once); /health/<check> reports every single run.
    failures_before_unready: int = Field(default=3, ge=1)


class OrchestrationSettings(BaseModel):
    """The business consumers (users, invites, invite-sender, notifier, gallery): state and mail."""

    # Their embedded database (SQLite); unset = `<dev.data_dir>/orchestration.sqlite`.
    db_path: Path | None = None
    # Where mail goes. Port 0 = the dev stack's Mailpit, found through `<dev.data_dir>/run/smtp.port`
    # (it gets a free port, so parallel stacks never collide).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=0, ge=0, le=65535)
    # A real mail server: "starttls" upgrades a plain connection (port 587), "tls" is TLS from the first
    # byte (port 465); the server's certificate is verified (smtp_ca_bundle for a private CA).
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_bundle: Path | None = None
    # Mailpit's API, read by `darkroom mail list`; unset = the dev stack's, through `<dev.data_dir>/run/mail-ui.port`.
    mail_api_url: str | None = None
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
    # Mailpit (SMTP + web UI + API), built with `go install github.com/axllent/mailpit@<version>`.
    mailpit_version: str = "v1.27.11"
    # Its web UI and API port; 0 = any free port, published in `<data_dir>/run/mail-ui.port` (`dev status` shows it).
    mail_ui_port: int = Field(default=0, ge=0, le=65535)
    s3_port: int = 17070
    # The dev stack's S3 root credentials: the only default secret, used by the dev stack, the demo and
    # tests (`darkroom dev env` exports them); a worker elsewhere never falls back to them.
    s3_access_key: str = "darkroom"
    s3_secret_key: SecretStr = SecretStr("darkroom-secret")
    # Optional second Kafka listener, SASL_SSL with SCRAM-SHA-256/512 (tests of production connections).
    # It needs a PEM file holding the broker's PKCS#8 private key and certificate chain, and users that
    # are created when the log dir is formatted (a running broker must be re-formatted to add users).
    kafka_sasl_ssl_port: int | None = None
    kafka_ssl_keystore_pem: Path | None = None
    kafka_scram_users: dict[str, SecretStr] = Field(default_factory=dict)


class WebSettings(BaseModel):
    """`darkroom web`: the studio, the client's gallery and the operations page."""

    host: str = "127.0.0.1"
    port: int = Field(default=8077, ge=0, le=65535)
    # Public base URL of the pages, used in the invite mail's gallery link; unset = http://HOST:PORT.
    base_url: str | None = None
    # Token of the studio and operations pages (login form, `?token=`, or `Authorization: Bearer`);
    # unset = a random one kept in `<dev.data_dir>/run/web.token` and printed by `darkroom web`.
    token: SecretStr | None = None
    # Key that signs gallery links (HMAC of the invite id), shared by invite-sender and web;
    # unset = a random one kept in `<dev.data_dir>/run/web.secret`.
    link_secret: SecretStr | None = None
    # Lifetime of the presigned GET links of gallery and studio pages (short: the page re-signs on load).
    link_expiry_s: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    # Lifetime of a shoot's presigned upload policy (one per page load of a shoot).
    upload_expiry_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)


class Settings(BaseSettings):
    """Every setting of darkroom, read from ``DARKROOM_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="DARKROOM_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    dev: DevStackSettings = Field(default_factory=DevStackSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    # The rendition graph (YAML, see pipeline/contracts/renditions.py); unset = the built-in `web` rendition only.
    pipeline_file: Path | None = None
    # Name written in the `producer` field of every event this process publishes.
    producer_name: str = "darkroom"
    log_level: str = "WARNING"
    # "text" for people; "json": one object per line with trace_id/span_id (pipeline/logs.py), for a log pipeline.
    log_format: Literal["text", "json"] = "text"
