"""The dev-stack object store: versitygw (S3 gateway on a local folder) built with ``go install``.

It publishes an AWS-style S3 event record to Kafka for every object written. Layout under the data
dir: ``bin/versitygw`` + ``bin/versitygw.version`` (the version stamp: ``go install`` builds carry no
usable ``--version``), ``s3/`` (the posix backend's root; one folder per bucket).
"""

from __future__ import annotations

import http.client
import logging
import os
from pathlib import Path

from operations.devstack.gobinary import GoBinary
from operations.devstack.processes import (
    ServiceProcess,
    check_port_free,
    spawn,
    stop,
    wait_healthy,
)
from pipeline.contracts.topics import STORAGE_EVENTS
from pipeline.settings import DevStackSettings, StorageSettings

log = logging.getLogger(__name__)

MODULE = "github.com/versity/versitygw/cmd/versitygw"


class VersityGateway:
    """One versitygw process serving S3 from ``<data_dir>/s3`` and notifying Kafka."""

    name = "s3"

    def __init__(self, dev: DevStackSettings, storage: StorageSettings, data_dir: Path) -> None:
        self.dev = dev
        self.storage = storage
        self.build = GoBinary("versitygw", MODULE, data_dir / "bin", "settings.dev.versitygw_version")
        self.bin_dir, self.binary, self.stamp = self.build.bin_dir, self.build.binary, self.build.stamp
        self.root = data_dir / "s3"
        self.process = ServiceProcess(
            name=self.name,
            pidfile=data_dir / "run" / "s3.pid",
            logfile=data_dir / "logs" / "s3.log",
            # The backend root of this data dir is unique to our gateway's argv.
            marker=str(self.root),
        )

    @property
    def port(self) -> int:
        """The S3 HTTP port."""
        return self.dev.s3_port

    @property
    def endpoint_url(self) -> str:
        """S3 endpoint of this gateway."""
        return f"http://127.0.0.1:{self.dev.s3_port}"

    def installed_version(self) -> str | None:
        """Version recorded when the binary was built, or None if binary or stamp is missing."""
        return self.build.installed_version()

    def install(self) -> bool:
        """``go install`` the pinned version unless it is already built; True if it was built now."""
        return self.build.install(self.dev.versitygw_version)

    def check_tools(self) -> None:
        """Raise StackError if Go is needed (binary missing or of another version) but not installed."""
        self.build.check_tools(self.dev.versitygw_version)

    def check_ports(self) -> None:
        """Raise StackError (naming the owner and the variable to change) if the S3 port is taken."""
        check_port_free(
            self.dev.s3_port, "S3",
            "DARKROOM_DEV__S3_PORT=<free port> together with DARKROOM_STORAGE__ENDPOINT_URL=http://127.0.0.1:<same port>",
        )  # fmt: skip

    def pid(self) -> int | None:
        """Pid of our running gateway, or None."""
        return self.process.pid()

    def start(self, kafka_bootstrap: str, topic: str = STORAGE_EVENTS) -> int:
        """Start the gateway if it is not running; returns its pid. Does not wait for health.

        The topic ``storage.events`` must exist first: versitygw sends a test event at start-up and
        exits if it cannot.
        """
        pid = self.pid()
        if pid is not None:
            return pid
        if self.installed_version() != self.dev.versitygw_version:
            self.install()
        self.check_ports()
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "--port", f"127.0.0.1:{self.dev.s3_port}",
            "--event-kafka-url", kafka_bootstrap,
            "--event-kafka-topic", topic,
            "--event-kafka-key", "s3",
            "posix", str(self.root),
        ]  # fmt: skip
        # Credentials via the environment, not argv: argv is world-readable in `ps`.
        env = {
            **os.environ,
            "ROOT_ACCESS_KEY": self.dev.s3_access_key,
            "ROOT_SECRET_KEY": self.dev.s3_secret_key.get_secret_value(),
        }
        return spawn(self.process, argv, env=env, cwd=self.root.parent)

    def healthy(self) -> bool:
        """True if the gateway answers HTTP on its port (any status: an anonymous request gets 403)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.dev.s3_port, timeout=2.0)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        except http.client.HTTPException:
            return False
        finally:
            conn.close()

    def wait_healthy(self, pid: int, timeout_s: float = 30.0) -> float:
        """Poll health until the gateway answers; raises StackError (with log tail) on death or timeout."""
        return wait_healthy(self.process, pid, self.healthy, timeout_s)

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the gateway; True if it was running."""
        return stop(self.process, timeout_s)
