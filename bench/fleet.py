"""The fleet under test: `python -m pipeline fleet up` as a subprocess, as `darkroom demo` runs it.

The benchmark gives the fleet a data dir of its own (state file, worker logs, and with it a fresh
gallery database), waits until every worker answers `/health/ready` on the port recorded in the
state file and the groups have no backlog, so start-up is never counted, and reads each worker's
peak RSS from /proc before stopping it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from bench.memory import peak_rss_mib
from operations.fleet.cli import planned_specs
from operations.fleet.spec import StageSpec
from operations.fleet.state import (
    FleetState,
    pid_alive,
    read_state,
    state_path,
    worker_ready,
)
from pipeline.settings import Settings


class FleetError(RuntimeError):
    """The fleet did not come up, or died, within the bound."""


class WorkerMemory(BaseModel):
    """Peak memory of one worker process."""

    stage: str
    pid: int
    peak_rss_mib: float
    restarts: int  # a restarted worker's peak covers only its latest process


def fixed_specs(text: str, fuse: bool = True) -> list[StageSpec]:
    """The stages `fleet up --workers TEXT [--no-fuse]` runs; ranges refused: a benchmark must not scale while it measures."""
    specs = planned_specs(text, fuse)
    ranged = [s.stage for s in specs if s.scales]
    if ranged:
        raise ValueError(f"fixed worker counts only (STAGE=N), not ranges: {', '.join(ranged)}")
    return specs


def fleet_env(settings: Settings, data_dir: Path, pipeline_file: Path) -> dict[str, str]:
    """The environment of the fleet and its workers: this run's stack, data dir and rendition graph.

    The connection settings are written out explicitly, so a `Settings` built in code (tests) and
    not from the environment still reaches the workers.
    """
    keys = {} if settings.storage.access_key is None or settings.storage.secret_key is None else {
        "DARKROOM_STORAGE__ACCESS_KEY": settings.storage.access_key,
        "DARKROOM_STORAGE__SECRET_KEY": settings.storage.secret_key.get_secret_value(),
    }
    return {
        **os.environ,
        **keys,
        "DARKROOM_DEV__DATA_DIR": str(data_dir),
        "DARKROOM_PIPELINE_FILE": str(pipeline_file.resolve()),
        "DARKROOM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "DARKROOM_STORAGE__ENDPOINT_URL": settings.storage.endpoint_url,
        "DARKROOM_STORAGE__BUCKET": settings.storage.bucket,
        "DARKROOM_STORAGE__CLIENT": settings.storage.client,
        "DARKROOM_WORKER__THREADS": str(settings.worker.threads),
        "DARKROOM_IMAGING__VIPS_CONCURRENCY": str(settings.imaging.vips_concurrency),
    }



class BenchFleet:
    """One `fleet up` process with fixed worker counts, for the duration of a configuration's runs."""

    def __init__(self, workers: str, env: dict[str, str], data_dir: Path, http_host: str = "127.0.0.1",
                 fuse: bool = True) -> None:
        self.specs = fixed_specs(workers, fuse)
        self.data_dir = data_dir
        self.log = data_dir / "fleet.log"
        self._host = http_host
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "--log-level", "INFO", "fleet", "up", "--workers", workers,
                 "--probe-interval", "1", "--fuse" if fuse else "--no-fuse"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            )

    def state(self) -> FleetState | None:
        return read_state(state_path(self.data_dir))

    def _check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            raise FleetError(f"{what}: the fleet exited with {self.proc.returncode}; log:\n{self.log.read_text()[-3000:]}")

    def workers(self) -> list[tuple[str, int, int | None, int]]:
        """(stage, pid, port, restarts) of every running worker."""
        state = self.state()
        if state is None:
            return []
        return [(name, w.pid, w.port, w.restarts) for name, stage in state.stages.items() for w in stage.workers
                if w.state == "running" and w.pid is not None]

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until every worker the specs ask for runs and answers /health/ready (partitions assigned)."""
        want = sum(s.minimum for s in self.specs)
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive("waiting for ready workers")
            running = self.workers()
            if len(running) == want and all(port and worker_ready(self._host, port) for _, _, port, _ in running):
                return
            if time.monotonic() > deadline:
                raise FleetError(f"{len(running)}/{want} workers running, not all ready after {timeout_s:.0f}s; "
                                 f"logs in {self.data_dir / 'logs'}")
            time.sleep(0.5)

    def wait_quiet(self, timeout_s: float = 300.0, stable_s: float = 5.0) -> int:
        """Until the groups have no backlog: total lag 0, or unchanged for `stable_s`. Returns the lag.

        "Unchanged" because a partition whose last record is a transaction marker keeps a lag of 1
        that no consumer ever commits past; waiting for 0 would wait forever. The lag comes from the
        supervisor's probe (every second, `--probe-interval 1`), through the state file.
        """
        deadline = time.monotonic() + timeout_s
        last: tuple[int, float] | None = None  # (lag, since when)
        while True:
            self._check_alive("waiting for the backlog to drain")
            state = self.state()
            lags = [s.lag for s in state.stages.values()] if state else [None]
            if all(lag is not None for lag in lags):
                total = sum(lag for lag in lags if lag is not None)
                if total == 0:
                    return 0
                now = time.monotonic()
                if last is None or last[0] != total:
                    last = (total, now)
                elif now - last[1] >= stable_s:
                    return total
            if time.monotonic() > deadline:
                raise FleetError(f"backlog not drained after {timeout_s:.0f}s: lags {lags}")
            time.sleep(0.5)

    def memory(self) -> list[WorkerMemory]:
        """Peak RSS of every running worker (read before stopping: the kernel forgets it at exit)."""
        out = []
        for stage, pid, _port, restarts in self.workers():
            peak = peak_rss_mib(pid)
            if peak is not None:
                out.append(WorkerMemory(stage=stage, pid=pid, peak_rss_mib=peak, restarts=restarts))
        return out

    def stop(self, timeout_s: float = 90.0) -> int | None:
        """SIGTERM the supervisor (workers drain and commit); SIGKILL what is left after the bound."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for _stage, pid, _port, _restarts in self.workers():  # the supervisor is gone: its workers must not stay
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        return self.proc.wait(10)
