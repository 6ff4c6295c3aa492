"""`darkroom web` as a detached service of the dev stack: started by `darkroom demo`, stopped by `dev down`.

Process entry: `python -m web --data-dir DIR` (the data dir's path is the marker that tells our web
server from any other: see `processes.ServiceProcess`).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from operations.devstack.processes import ServiceProcess, check_port_free, spawn, stop, wait_healthy
from pipeline.settings import Settings

READY_TIMEOUT_S = 30.0


class WebServer:
    """The web server of one data dir."""

    name = "web"

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.process = ServiceProcess(name=self.name, pidfile=data_dir / "run" / "web.pid",
                                      logfile=data_dir / "logs" / "web.log", marker=str(data_dir))

    @property
    def port(self) -> int:
        return self.settings.web.port

    def pid(self) -> int | None:
        return self.process.pid()

    def start(self, env: dict[str, str] | None = None) -> int:
        """Start the server unless it runs; returns its pid."""
        pid = self.pid()
        if pid is not None:
            return pid
        check_port_free(self.port, "web", "DARKROOM_WEB__PORT=<free port>")
        argv = [sys.executable, "-m", "web", "--data-dir", str(self.data_dir),
                "--host", self.settings.web.host, "--port", str(self.port)]
        return spawn(self.process, argv, env=env if env is not None else dict(os.environ))

    def healthy(self) -> bool:
        """True once the server answers (401 on / without a token is an answer)."""
        try:
            with urllib.request.urlopen(f"http://{self.settings.web.host}:{self.port}/", timeout=2.0):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False

    def wait_healthy(self, pid: int, timeout_s: float = READY_TIMEOUT_S) -> float:
        return wait_healthy(self.process, pid, self.healthy, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> bool:
        return stop(self.process, timeout_s)
