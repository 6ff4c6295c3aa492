"""The dev-stack mail server: an SMTP sink (aiosmtpd) that stores every mail as an .eml file.

Run as a detached service by `darkroom dev up`, like Kafka and versitygw. Mails land in
`<data_dir>/mail/`, one file per Message-ID (a resent mail replaces its copy, as receivers that
deduplicate by Message-ID do), and every SMTP delivery is appended to `mail/received.log`, so
tests can tell a resend from a single delivery. The port is published in `<data_dir>/run/smtp.port`
once the server listens; that file is also the health signal's first half.

Process entry: `python -m operations.devstack.smtp --port N --dir MAILDIR --port-file FILE`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import smtplib
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from operations.devstack.processes import (
    ServiceProcess,
    check_port_free,
    spawn,
    stop,
    wait_healthy,
)
from pipeline.settings import Settings

READY_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eml_name(message_id: str | None) -> str:
    """The file a mail is stored in: a hash of its Message-ID (or a fresh name without one)."""
    if not message_id:
        return f"no-id-{time.time_ns()}.eml"
    return hashlib.sha256(message_id.strip().encode()).hexdigest()[:32] + ".eml"


class SmtpSink:
    """The sink as a dev-stack service: start, health, stop, status."""

    name = "smtp"

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.mail_dir = data_dir / "mail"
        self.port_file = data_dir / "run" / "smtp.port"
        self.process = ServiceProcess(
            name=self.name, pidfile=data_dir / "run" / "smtp.pid", logfile=data_dir / "logs" / "smtp.log",
            marker=str(self.mail_dir),  # unique to this data dir's sink
        )

    @property
    def port(self) -> int:
        """The port it listens on (published by the running sink), else the configured one (0 = any)."""
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return self.settings.orchestration.smtp_port

    def pid(self) -> int | None:
        return self.process.pid()

    def check_ports(self) -> None:
        if self.settings.orchestration.smtp_port:
            check_port_free(self.settings.orchestration.smtp_port, "SMTP",
                            "DARKROOM_ORCHESTRATION__SMTP_PORT=<free port> (or 0: any free port)")

    def start(self) -> int:
        """Start the sink unless it runs; returns its pid. Port 0 = a free port, published when listening."""
        pid = self.pid()
        if pid is not None:
            return pid
        self.check_ports()
        port = self.settings.orchestration.smtp_port or _free_port()
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "operations.devstack.smtp", "--port", str(port),
                "--dir", str(self.mail_dir), "--port-file", str(self.port_file)]
        return spawn(self.process, argv, env=dict(os.environ))

    def healthy(self) -> bool:
        """True if the sink answers an SMTP NOOP on its published port."""
        if not self.port_file.exists():
            return False
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=2.0) as smtp:
                return smtp.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def wait_healthy(self, pid: int, timeout_s: float = READY_TIMEOUT_S) -> float:
        return wait_healthy(self.process, pid, self.healthy, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> bool:
        stopped = stop(self.process, timeout_s)
        self.port_file.unlink(missing_ok=True)
        return stopped


class _StoreHandler:
    """aiosmtpd handler: store the mail, log the delivery, answer 250."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        from email import policy
        from email.parser import BytesParser

        content: bytes = envelope.original_content or envelope.content
        msg = BytesParser(policy=policy.default).parsebytes(content, headersonly=True)
        message_id = msg.get("Message-ID")
        name = eml_name(message_id)
        with self._lock:
            tmp = self.folder / f".{name}.tmp"
            tmp.write_bytes(content)
            tmp.replace(self.folder / name)  # atomic: readers never see half a mail
            with (self.folder / "received.log").open("a") as log:
                log.write(json.dumps({"messageId": message_id, "to": envelope.rcpt_tos, "file": name,
                                      "at": time.time()}) + "\n")
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description="darkroom dev SMTP sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(_StoreHandler(args.dir), hostname=args.host, port=args.port, ready_timeout=READY_TIMEOUT_S)
    controller.start()
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(f"{args.port}\n")
    tmp.replace(args.port_file)
    print(f"smtp sink listening on {args.host}:{args.port}, mail in {args.dir}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
