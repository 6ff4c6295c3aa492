"""The dev-stack mail server: Mailpit (SMTP, a web UI and an API), built with ``go install`` like versitygw.

Every mail the business flow sends lands in Mailpit; people read it in the web UI, and `darkroom
mail list`, the demo and the tests read its API (`orchestration/mailbox.py`). Mailpit keeps every
delivery, so a resent mail shows twice with the same Message-ID (receivers deduplicate by it).
Both ports default to free ones, published once listening in ``run/smtp.port`` and
``run/mail-ui.port``, so parallel stacks never collide. Layout under the data dir: ``bin/mailpit`` +
``bin/mailpit.version``, ``mail/mailpit.db``.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from operations.devstack.gobinary import GoBinary
from operations.devstack.processes import (
    ServiceProcess,
    check_port_free,
    spawn,
    stop,
    wait_healthy,
)
from pipeline.settings import Settings

log = logging.getLogger(__name__)

MODULE = "github.com/axllent/mailpit"
READY_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MailServer:
    """One Mailpit process: SMTP for the workers, HTTP for the web UI and the API."""

    name = "smtp"

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.build = GoBinary("mailpit", MODULE, data_dir / "bin", "settings.dev.mailpit_version")
        self.bin_dir, self.binary, self.stamp = self.build.bin_dir, self.build.binary, self.build.stamp
        self.mail_dir = data_dir / "mail"
        self.database = self.mail_dir / "mailpit.db"
        self.port_file = data_dir / "run" / "smtp.port"
        self.ui_port_file = data_dir / "run" / "mail-ui.port"
        self.process = ServiceProcess(
            name=self.name, pidfile=data_dir / "run" / "smtp.pid", logfile=data_dir / "logs" / "smtp.log",
            marker=str(self.database),  # an argv element unique to this data dir's Mailpit
        )

    # --- where ---------------------------------------------------------------------------------

    @staticmethod
    def _published(path: Path, default: int) -> int:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return default

    @property
    def port(self) -> int:
        """The SMTP port (published by the running server), else the configured one (0 = any)."""
        return self._published(self.port_file, self.settings.orchestration.smtp_port)

    @property
    def ui_port(self) -> int:
        """The web UI and API port (published by the running server), else the configured one."""
        return self._published(self.ui_port_file, self.settings.dev.mail_ui_port)

    @property
    def ui_url(self) -> str:
        """The web UI (and API base) address."""
        return f"http://127.0.0.1:{self.ui_port}"

    # --- build -----------------------------------------------------------------------------------

    def installed_version(self) -> str | None:
        """Version recorded when the binary was built, or None if binary or stamp is missing."""
        return self.build.installed_version()

    def install(self) -> bool:
        """``go install`` the pinned version unless it is already built; True if it was built now."""
        return self.build.install(self.settings.dev.mailpit_version)

    def check_tools(self) -> None:
        """Raise StackError if Go is needed (binary missing or of another version) but not installed."""
        self.build.check_tools(self.settings.dev.mailpit_version)

    def check_ports(self) -> None:
        if self.settings.orchestration.smtp_port:
            check_port_free(self.settings.orchestration.smtp_port, "SMTP",
                            "DARKROOM_ORCHESTRATION__SMTP_PORT=<free port> (or 0: any free port)")
        if self.settings.dev.mail_ui_port:
            check_port_free(self.settings.dev.mail_ui_port, "Mailpit web UI",
                            "DARKROOM_DEV__MAIL_UI_PORT=<free port> (or 0: any free port)")

    # --- run -------------------------------------------------------------------------------------

    def pid(self) -> int | None:
        return self.process.pid()

    def start(self) -> int:
        """Start Mailpit unless it runs; returns its pid. Does not wait for health."""
        pid = self.pid()
        if pid is not None:
            return pid
        if self.installed_version() != self.settings.dev.mailpit_version:
            self.install()
        self.check_ports()
        smtp_port = self.settings.orchestration.smtp_port or _free_port()
        ui_port = self.settings.dev.mail_ui_port or _free_port()
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        for path, port in ((self.port_file, smtp_port), (self.ui_port_file, ui_port)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{port}\n")
        return spawn(self.process, self.argv(smtp_port, ui_port), env=dict(os.environ), cwd=self.mail_dir)

    def argv(self, smtp_port: int, ui_port: int) -> list[str]:
        """Mailpit's command line; it holds `process.marker` as one element, which is how `pid()` knows it."""
        return [
            str(self.binary),
            "--smtp", f"127.0.0.1:{smtp_port}",
            "--listen", f"127.0.0.1:{ui_port}",
            "--database", str(self.database),
            # The workers may be configured with a login (DARKROOM_ORCHESTRATION__SMTP_USERNAME): accept
            # any, over plain SMTP, as a real server's stand-in on the loopback.
            "--smtp-auth-accept-any", "--smtp-auth-allow-insecure",
            "--max", "0",  # keep every mail: tests count deliveries
        ]  # fmt: skip

    def healthy(self) -> bool:
        """True if Mailpit's HTTP side answers /livez and its SMTP port accepts connections."""
        try:
            with urllib.request.urlopen(f"{self.ui_url}/livez", timeout=2.0) as resp:
                if resp.status != 200:
                    return False
            with socket.create_connection(("127.0.0.1", self.port), timeout=2.0):
                return True
        except (OSError, urllib.error.URLError):
            return False

    def wait_healthy(self, pid: int, timeout_s: float = READY_TIMEOUT_S) -> float:
        return wait_healthy(self.process, pid, self.healthy, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> bool:
        stopped = stop(self.process, timeout_s)
        self.port_file.unlink(missing_ok=True)
        self.ui_port_file.unlink(missing_ok=True)
        return stopped
