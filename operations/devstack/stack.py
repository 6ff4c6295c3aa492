"""DevStack: the local Kafka + S3 stack without Docker, as one object (see docs/ARCHITECTURE.md).

``up()`` is idempotent: services already running are left alone, topics and the bucket are ensured
every time (both operations are idempotent). Everything derives from ``Settings().dev`` (ports,
versions, data dir) plus ``Settings().storage`` (credentials, bucket).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from operations.devstack.kafka_broker import KafkaBroker
from operations.devstack.mailpit import MailServer
from operations.devstack.processes import StackError, kill, port_in_use, port_owner, tail
from operations.devstack.versitygw import VersityGateway
from operations.devstack.web import WebServer
from orchestration.gallery_links import web_base_url
from pipeline.contracts.topics import STORAGE_EVENTS
from pipeline.settings import DevStackSettings, Settings, StorageSettings
from pipeline.topics import TopicNames, ensure_topics, installed_topic_specs

log = logging.getLogger(__name__)

ServiceName = Literal["kafka", "s3", "smtp"]
SERVICES: tuple[ServiceName, ...] = ("kafka", "s3", "smtp")

KAFKA_HEALTH_TIMEOUT_S = 60.0
S3_HEALTH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServiceStatus:
    """State of one service of the stack."""

    name: str
    state: Literal["running", "stopped"]
    pid: int | None
    port: int
    healthy: bool
    # Extra information for humans, e.g. "port taken by pid 123 (java)" or the endpoint.
    detail: str = ""


@dataclass
class UpReport:
    """What ``DevStack.up()`` did; an empty ``started`` means it was a no-op for the processes."""

    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    topics_created: list[str] = field(default_factory=list)
    bucket_created: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)


def client_env(settings: Settings) -> dict[str, str]:
    """What a darkroom process needs in its environment to use this stack: its S3 keys, and topic management on.

    The dev stack's keys are the only default secret; they reach a process only through here
    (`darkroom dev env`, the demo, the tests), never as a fallback of the settings.
    """
    return {
        "DARKROOM_STORAGE__ACCESS_KEY": settings.dev.s3_access_key,
        "DARKROOM_STORAGE__SECRET_KEY": settings.dev.s3_secret_key.get_secret_value(),
        "DARKROOM_TOPICS__MANAGE": "true",
    }


def ensure_bucket(endpoint_url: str, storage: StorageSettings, dev: DevStackSettings) -> bool:
    """Create ``storage.bucket`` at ``endpoint_url``; True if created, False if it already existed.

    Deliberately plain boto3 (not the storage package): the dev stack must come up before, and
    independently of, the code it serves.
    """
    s3 = _s3_client(endpoint_url, storage, dev)
    try:
        if storage.region == "us-east-1":
            s3.create_bucket(Bucket=storage.bucket)
        else:
            s3.create_bucket(
                Bucket=storage.bucket, CreateBucketConfiguration={"LocationConstraint": storage.region}
            )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise StackError(f"could not create bucket {storage.bucket!r} at {endpoint_url}: {exc}") from exc
    except BotoCoreError as exc:
        raise StackError(f"could not reach S3 at {endpoint_url} to create bucket {storage.bucket!r}: {exc}") from exc
    return True


def _s3_client(endpoint_url: str, storage: StorageSettings, dev: DevStackSettings):  # type: ignore[no-untyped-def]
    # The dev stack's own root keys (versitygw's), whatever the workers are configured with.
    return boto3.client(
        "s3", endpoint_url=endpoint_url, aws_access_key_id=dev.s3_access_key,
        aws_secret_access_key=dev.s3_secret_key.get_secret_value(), region_name=storage.region,
        # Path style: bucket DNS names do not resolve to 127.0.0.1.
        config=Config(s3={"addressing_style": "path"}, connect_timeout=storage.connect_timeout_s,
                      read_timeout=storage.read_timeout_s, retries={"max_attempts": 3, "mode": "standard"}),
    )


def web_origin(settings: Settings) -> str:
    """The origin (scheme://host:port) of the web pages, which upload straight to the bucket."""
    parts = urlsplit(web_base_url(settings))
    return f"{parts.scheme}://{parts.netloc}"


def ensure_bucket_cors(endpoint_url: str, storage: StorageSettings, dev: DevStackSettings, origins: list[str]) -> None:
    """Let the studio page of `origins` POST uploads to the bucket and read the answer (PutBucketCors).

    Replaces the bucket's CORS rules with one rule (idempotent). The presigned POST policy is what
    limits uploads; CORS only lets the page see the store's answer and the upload's progress.
    """
    rule = {"AllowedOrigins": sorted(set(origins)), "AllowedMethods": ["GET", "HEAD", "POST", "PUT"],
            "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag", "Location"], "MaxAgeSeconds": 3600}
    try:
        _s3_client(endpoint_url, storage, dev).put_bucket_cors(Bucket=storage.bucket, CORSConfiguration={"CORSRules": [rule]})
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"could not set CORS on bucket {storage.bucket!r} at {endpoint_url} (browser uploads from "
                         f"{', '.join(origins)} would fail): {exc}") from exc


class DevStack:
    """The local stack: a Kafka broker and a versitygw S3 server, managed as detached processes."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        # Absolute, so pidfile markers and configs stay valid whatever the cwd of later commands.
        self.data_dir: Path = self.settings.dev.data_dir.expanduser().resolve()
        self.kafka = KafkaBroker(self.settings.dev, self.data_dir)
        self.s3 = VersityGateway(self.settings.dev, self.settings.storage, self.data_dir)
        self.smtp = MailServer(self.settings, self.data_dir)
        self.web = WebServer(self.settings, self.data_dir)

    # --- lifecycle ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise up/down of one data dir: two concurrent `dev up` would both start a broker."""
        (self.data_dir / "run").mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "run" / "stack.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def preflight(self) -> None:
        """Fail fast, before any download or start: missing tools and taken ports of services to start."""
        kafka_running = self.kafka.pid() is not None
        s3_running = self.s3.pid() is not None
        if not kafka_running:
            self.kafka.check_tools()
        if not s3_running:
            self.s3.check_tools()
        if not kafka_running:
            self.kafka.check_ports()
        if not s3_running:
            self.s3.check_ports()
        if self.smtp.pid() is None:
            self.smtp.check_tools()
            self.smtp.check_ports()

    def install(self, echo: Callable[[str], None] = lambda _msg: None) -> list[str]:
        """Fetch/build what the services need (Kafka jars, versitygw binary); returns what was installed."""
        installed: list[str] = []
        if self.kafka.cached_classpath() is None:
            echo(f"resolving Kafka {self.settings.dev.kafka_version} jars with Maven (first run only)...")
        if self.kafka.install():
            installed.append("kafka")
        if self.s3.installed_version() != self.settings.dev.versitygw_version:
            echo(f"building versitygw {self.settings.dev.versitygw_version} with go install (first run only)...")
        if self.s3.install():
            installed.append("s3")
        if self.smtp.installed_version() != self.settings.dev.mailpit_version:
            echo(f"building Mailpit {self.settings.dev.mailpit_version} with go install (first run only)...")
        if self.smtp.install():
            installed.append("smtp")
        return installed

    def up(self, echo: Callable[[str], None] = lambda _msg: None) -> UpReport:
        """Bring the stack up; idempotent. ``echo`` receives one-line progress messages.

        Order: install → Kafka → wait healthy → topics → versitygw (needs storage.events) → wait
        healthy → bucket. Raises StackError with an actionable message on failure.
        """
        report = UpReport()
        with self._lock():
            self.preflight()
            t0 = time.monotonic()
            report.installed = self.install(echo)
            report.timings_s["install"] = time.monotonic() - t0

            t0 = time.monotonic()
            pid = self.kafka.pid()
            if pid is None:
                echo(f"starting Kafka on {self.kafka.bootstrap}...")
                pid = self.kafka.start()
                report.started.append("kafka")
            else:
                report.already_running.append("kafka")
            self.kafka.wait_healthy(pid, KAFKA_HEALTH_TIMEOUT_S)
            report.timings_s["kafka"] = time.monotonic() - t0

            t0 = time.monotonic()
            admin = self.kafka.admin_client()
            if admin is None:
                raise StackError(f"Kafka at {self.kafka.bootstrap} stopped answering right after start-up")
            ensure = ensure_topics(admin, installed_topic_specs(self.settings.topics))
            report.topics_created = list(ensure.created)
            self._wait_topic_leaders(TopicNames(self.settings.topics.prefix)(STORAGE_EVENTS))
            report.timings_s["topics"] = time.monotonic() - t0

            t0 = time.monotonic()
            pid = self.s3.pid()
            if pid is None:
                echo(f"starting versitygw on {self.s3.endpoint_url}...")
                pid = self.s3.start(self.kafka.bootstrap, TopicNames(self.settings.topics.prefix)(STORAGE_EVENTS))
                report.started.append("s3")
            else:
                report.already_running.append("s3")
            self.s3.wait_healthy(pid, S3_HEALTH_TIMEOUT_S)
            report.bucket_created = ensure_bucket(self.s3.endpoint_url, self.settings.storage, self.settings.dev)
            ensure_bucket_cors(self.s3.endpoint_url, self.settings.storage, self.settings.dev,
                               [web_origin(self.settings)])
            report.timings_s["s3"] = time.monotonic() - t0

            t0 = time.monotonic()
            pid = self.smtp.pid()
            if pid is None:
                echo("starting Mailpit (SMTP, web UI)...")
                pid = self.smtp.start()
                report.started.append("smtp")
            else:
                report.already_running.append("smtp")
            self.smtp.wait_healthy(pid)
            report.timings_s["smtp"] = time.monotonic() - t0
        return report

    def _wait_topic_leaders(self, topic: str, timeout_s: float = 30.0) -> None:
        """Wait until every partition of ``topic`` has a leader.

        versitygw sends a test event at start-up and exits if that fails, and a just-created
        topic may not have leaders yet.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            admin = self.kafka.admin_client(timeout_s=5.0)
            if admin is not None:
                meta = admin.list_topics(topic=topic, timeout=5.0).topics.get(topic)
                if meta is not None and meta.error is None and meta.partitions:
                    if all(p.leader >= 0 for p in meta.partitions.values()):
                        return
            time.sleep(0.2)
        raise StackError(f"topic {topic} has partitions without a leader after {timeout_s:.0f} s; see `darkroom dev logs kafka`")

    def down(self) -> list[str]:
        """Stop the stack (versitygw first: it produces to Kafka); returns the services that were stopped."""
        stopped: list[str] = []
        with self._lock():
            if self.web.stop():
                stopped.append("web")
            if self.smtp.stop():
                stopped.append("smtp")
            if self.s3.stop():
                stopped.append("s3")
            if self.kafka.stop():
                stopped.append("kafka")
        return stopped

    def kill(self, service: ServiceName) -> int | None:
        """SIGKILL one service, as a crash would (no controlled shutdown); returns its pid, None if it was down.

        For fault tests and drills. `up()` brings it back: it starts only what is not running.
        """
        if service not in SERVICES:
            raise StackError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
        target = {"kafka": self.kafka, "s3": self.s3, "smtp": self.smtp}[service]
        with self._lock():
            return kill(target.process)

    # --- inspection ---------------------------------------------------------------------------

    def status(self) -> dict[str, ServiceStatus]:
        """Per-service state: running/stopped (pid verified), pid, port and a live health check."""
        result: dict[str, ServiceStatus] = {}
        services: tuple[tuple[str, KafkaBroker | VersityGateway | MailServer], ...] = (
            ("kafka", self.kafka), ("s3", self.s3), ("smtp", self.smtp))
        for name, service in services:
            pid = service.pid()
            if pid is not None:
                healthy = service.healthy()
                where = {"kafka": self.kafka.bootstrap, "s3": self.s3.endpoint_url}.get(
                    name, f"smtp://127.0.0.1:{self.smtp.port}, Mailpit web UI {self.smtp.ui_url}")
                result[name] = ServiceStatus(name, "running", pid, service.port, healthy, where)
            else:
                detail = ""
                if port_in_use(service.port):
                    owner = port_owner(service.port) or "another process"
                    detail = f"port {service.port} is taken by {owner}"
                result[name] = ServiceStatus(name, "stopped", None, service.port, False, detail)
        return result

    def logs(self, service: ServiceName, lines: int = 50) -> list[str]:
        """The last ``lines`` lines of a service's log file."""
        if service not in SERVICES:
            raise StackError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
        return tail(self.log_path(service), lines)

    def log_path(self, service: ServiceName) -> Path:
        """Where a service's stdout/stderr (and, for Kafka, log4j) go."""
        return {"kafka": self.kafka, "s3": self.s3, "smtp": self.smtp}[service].process.logfile

    def settings_warnings(self) -> list[str]:
        """Client settings that do not point at this stack (the stack would run, but nothing would use it)."""
        warnings: list[str] = []
        if self.settings.kafka.bootstrap_servers != self.kafka.bootstrap:
            warnings.append(
                f"DARKROOM_KAFKA__BOOTSTRAP_SERVERS is {self.settings.kafka.bootstrap_servers!r} but the dev broker "
                f"listens on {self.kafka.bootstrap}"
            )
        if (self.settings.storage.endpoint_url or "").rstrip("/") != self.s3.endpoint_url:
            warnings.append(
                f"DARKROOM_STORAGE__ENDPOINT_URL is {self.settings.storage.endpoint_url!r} but the dev S3 server "
                f"listens on {self.s3.endpoint_url}"
            )
        return warnings
