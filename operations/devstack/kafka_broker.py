"""The dev-stack Kafka broker: real Apache Kafka in KRaft combined mode, jars from Maven Central.

Layout under ``<data_dir>/kafka``: ``pom.xml`` (copy of the packaged kafka-pom.xml),
``classpath-<version>.txt`` (resolved once per Kafka version), ``server.properties``,
``log4j2.properties`` and ``data/`` (the log dirs, formatted once).
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import subprocess
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from operations.devstack.processes import (
    ServiceProcess,
    StackError,
    check_port_free,
    require_tool,
    spawn,
    stop,
    wait_healthy,
)
from pipeline.settings import DevStackSettings

log = logging.getLogger(__name__)

JAVA_HINT = "install a Java 17+ runtime, e.g. `apt-get install openjdk-17-jre-headless` (or `brew install openjdk@17`)."
MVN_HINT = "install Maven, e.g. `apt-get install maven` (or `brew install maven`); it resolves the Kafka jars."

# librdkafka reports every refused connection while the broker boots; route it to a logger with a
# NullHandler so it is silent unless the application configured logging (then it shows at DEBUG/ERROR).
_client_log = logging.getLogger(f"{__name__}.client")
_client_log.addHandler(logging.NullHandler())


def _kafka_uuid() -> str:
    """A random Kafka cluster id, as ``kafka-storage random-uuid`` makes it (saves one JVM start).

    Kafka's Uuid is 16 random bytes in URL-safe base64 without padding; Kafka itself re-draws ids
    that start with "-" (they read as CLI flags), so do we.
    """
    while True:
        value = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not value.startswith("-"):
            return value


class KafkaBroker:
    """One single-node KRaft broker+controller for local development."""

    name = "kafka"

    def __init__(self, dev: DevStackSettings, data_dir: Path) -> None:
        self.dev = dev
        self.dir = data_dir / "kafka"
        self.log_dirs = self.dir / "data"
        self.server_properties = self.dir / "server.properties"
        self.log4j_properties = self.dir / "log4j2.properties"
        self.classpath_file = self.dir / f"classpath-{dev.kafka_version}.txt"
        self.process = ServiceProcess(
            name=self.name,
            pidfile=data_dir / "run" / "kafka.pid",
            logfile=data_dir / "logs" / "kafka.log",
            # The absolute path of our server.properties is in argv of our broker only (not in that
            # of another broker on the same machine, started from another data dir).
            marker=str(self.server_properties),
        )

    @property
    def port(self) -> int:
        """The PLAINTEXT port clients use."""
        return self.dev.kafka_port

    @property
    def bootstrap(self) -> str:
        """Bootstrap address of this broker."""
        return f"127.0.0.1:{self.dev.kafka_port}"

    # --- install ------------------------------------------------------------------------------

    def install(self) -> bool:
        """Resolve the broker's classpath with Maven unless cached for this version; True if resolved now."""
        require_tool("java", JAVA_HINT)
        if self.cached_classpath() is not None:
            return False
        mvn = require_tool("mvn", MVN_HINT)
        self.dir.mkdir(parents=True, exist_ok=True)
        pom = self.dir / "pom.xml"
        # A copy, so Maven writes nothing into the installed package (which may be read-only).
        pom.write_text(resources.files(__package__).joinpath("kafka-pom.xml").read_text())
        tmp = self.classpath_file.with_suffix(".tmp")
        cmd = [
            mvn, "-B", "-q", "-f", str(pom), "-Dstyle.color=never",
            f"-Dkafka.version={self.dev.kafka_version}",
            "dependency:build-classpath", f"-Dmdep.outputFile={tmp}",
        ]  # fmt: skip
        log.info("resolving Kafka %s jars with Maven", self.dev.kafka_version)
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
        if result.returncode != 0 or not tmp.exists():
            output = (result.stdout + result.stderr).strip().splitlines()[-20:]
            raise StackError(
                f"Maven could not resolve Kafka {self.dev.kafka_version} (is Maven Central reachable? is "
                f"settings.dev.kafka_version right?). Command: {' '.join(cmd)}\n" + "\n".join(output)
            )
        tmp.replace(self.classpath_file)
        return True

    def cached_classpath(self) -> str | None:
        """The cached classpath if every jar in it still exists (~/.m2 may have been cleaned)."""
        try:
            classpath = self.classpath_file.read_text().strip()
        except OSError:
            return None
        jars = [p for p in classpath.split(os.pathsep) if p]
        if not jars or not all(Path(j).exists() for j in jars):
            return None
        return classpath

    def check_tools(self) -> None:
        """Raise StackError if a tool needed to install or run the broker is missing."""
        require_tool("java", JAVA_HINT)
        if self.cached_classpath() is None:
            require_tool("mvn", MVN_HINT)

    def check_ports(self) -> None:
        """Raise StackError (naming the owner and the variable to change) if a broker port is taken."""
        check_port_free(
            self.dev.kafka_port, "Kafka",
            "DARKROOM_DEV__KAFKA_PORT=<free port> together with "
            "DARKROOM_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:<same port>",
        )  # fmt: skip
        check_port_free(
            self.dev.kafka_controller_port, "Kafka controller", "DARKROOM_DEV__KAFKA_CONTROLLER_PORT=<free port>"
        )
        if self.dev.kafka_sasl_ssl_port is not None:
            check_port_free(self.dev.kafka_sasl_ssl_port, "Kafka SASL_SSL", "DARKROOM_DEV__KAFKA_SASL_SSL_PORT=<free port>")

    # --- configure and format -----------------------------------------------------------------

    def _write_config(self) -> None:
        """(Re)write server.properties and log4j2.properties from the current settings."""
        self.dir.mkdir(parents=True, exist_ok=True)
        dev = self.dev
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{dev.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{dev.kafka_port},CONTROLLER://127.0.0.1:{dev.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{dev.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            # One node: internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            **self._sasl_ssl_props(),
            # Tests and `dev up` want consumers assigned at once, not after the 3 s default delay.
            "group.initial.rebalance.delay.ms": "0",
            # Topics come from pipeline/topics.py only; a typo must fail, not create a topic.
            "auto.create.topics.enable": "false",
            "num.partitions": "6",
            # Small-machine settings: a laptop runs this next to the workers.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.check.interval.ms": "60000",
        }
        text = "# Written by `darkroom dev up` from settings.dev; edits are overwritten.\n"
        text += "".join(f"{k}={v}\n" for k, v in props.items())
        self.server_properties.write_text(text)
        self.log4j_properties.write_text(resources.files(__package__).joinpath("log4j2.properties").read_text())

    def _sasl_ssl_props(self) -> dict[str, str]:
        """An extra SASL_SSL listener (SCRAM-SHA-256/512, PEM keystore) if settings.dev asks for one.

        Brokers and the controller keep talking PLAINTEXT to each other; only clients use this listener.
        """
        dev = self.dev
        if dev.kafka_sasl_ssl_port is None:
            return {}
        if dev.kafka_ssl_keystore_pem is None:
            raise StackError("DARKROOM_DEV__KAFKA_SASL_SSL_PORT needs DARKROOM_DEV__KAFKA_SSL_KEYSTORE_PEM (key + certificate chain)")
        plain, controller = f"127.0.0.1:{dev.kafka_port}", f"127.0.0.1:{dev.kafka_controller_port}"
        sasl = f"127.0.0.1:{dev.kafka_sasl_ssl_port}"
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return {
            "listeners": f"PLAINTEXT://{plain},CONTROLLER://{controller},SASL_SSL://{sasl}",
            "advertised.listeners": f"PLAINTEXT://{plain},SASL_SSL://{sasl}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            # PEM keystore: one file with the PKCS#8 key and the certificate chain, no JKS/keytool step.
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(dev.kafka_ssl_keystore_pem.resolve()),
        }

    def _scram_args(self) -> list[str]:
        """``--add-scram`` arguments: SCRAM users live in the cluster metadata, written at format time.

        The passwords are in this one short-lived process's argv (the format step of a dev broker);
        they are never written to server.properties or a log.
        """
        args: list[str] = []
        for name, password in sorted(self.dev.kafka_scram_users.items()):
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                args += ["--add-scram", f"{mechanism}=[name={name},password={password.get_secret_value()}]"]
        return args

    def _format_once(self, java: str, classpath: str) -> None:
        """Format the KRaft log dir unless it already carries meta.properties."""
        if (self.log_dirs / "meta.properties").exists():
            return
        cmd = [
            java, *self._jvm_log_flags(), "-cp", classpath, "kafka.tools.StorageTool", "format",
            "-t", _kafka_uuid(), "-c", str(self.server_properties), *self._scram_args(),
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise StackError(
                f"formatting the Kafka log dir {self.log_dirs} failed; if it holds a broken earlier run, "
                f"remove it (`darkroom dev down` then delete {self.log_dirs}).\n"
                + (result.stdout + result.stderr).strip()[-3000:]
            )

    def _jvm_log_flags(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={self.log4j_properties}",
            f"-Ddarkroom.log.file={self.process.logfile}",
        ]

    # --- run ----------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """Pid of our running broker, or None."""
        return self.process.pid()

    def start(self) -> int:
        """Start the broker if it is not running; returns its pid. Does not wait for health."""
        pid = self.pid()
        if pid is not None:
            return pid
        java = require_tool("java", JAVA_HINT)
        classpath = self.cached_classpath()
        if classpath is None:
            self.install()
            classpath = self.cached_classpath()
            assert classpath is not None
        self.check_ports()
        self._write_config()
        self._format_once(java, classpath)
        heap = self.dev.kafka_heap
        argv = [
            java, f"-Xmx{heap}", f"-Xms{heap}",
            # Serial GC: a single-node dev broker gains nothing from G1's threads on a small machine.
            "-XX:+UseSerialGC", "-Djava.awt.headless=true", *self._jvm_log_flags(),
            "-cp", classpath, "kafka.Kafka", str(self.server_properties),
        ]  # fmt: skip
        return spawn(self.process, argv, cwd=self.dir)

    def healthy(self) -> bool:
        """True if the broker answers a metadata request (AdminClient.list_topics)."""
        # A plain TCP probe first: it fails fast while the JVM boots, without librdkafka's retries.
        try:
            socket.create_connection(("127.0.0.1", self.dev.kafka_port), timeout=0.5).close()
        except OSError:
            return False
        return self.admin_client(timeout_s=5.0) is not None

    def admin_client(self, timeout_s: float = 10.0) -> AdminClient | None:
        """An AdminClient on this broker if it answers within ``timeout_s``, else None."""
        admin = AdminClient(
            {
                "bootstrap.servers": self.bootstrap,
                "client.id": "darkroom-devstack",
                "socket.connection.setup.timeout.ms": 2000,
                "reconnect.backoff.max.ms": 500,
                "logger": _client_log,
            }
        )
        try:
            admin.list_topics(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - KafkaException or timeout: either way not healthy yet
            return None
        return admin

    def wait_healthy(self, pid: int, timeout_s: float = 60.0) -> float:
        """Poll health until the broker answers; raises StackError (with log tail) on death or timeout."""
        return wait_healthy(self.process, pid, self.healthy, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker (controlled shutdown on SIGTERM); True if it was running."""
        return stop(self.process, timeout_s)
