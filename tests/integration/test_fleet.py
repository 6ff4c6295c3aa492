"""`darkroom fleet up` on the real stack: a killed worker comes back, lag scales a stage within its
bounds, SIGTERM drains everything, and `darkroom fleet status` reports it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from operations.devstack import DevStack
from operations.fleet.state import FleetState, pid_alive, read_state, state_path
from pipeline.contracts.topics import FILES
from storage import ObjectStore
from storage.upload import upload_files
from tests.integration.conftest import REPO, make_photos
from tests.integration.helpers import await_processed

pytestmark = pytest.mark.integration


class Fleet:
    """A real `darkroom fleet up` process with a data dir of its own (state file, worker logs)."""

    def __init__(self, env: dict[str, str], data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, **env, "DARKROOM_DEV__DATA_DIR": str(data_dir)}
        self.log = data_dir / "fleet.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "--log-level", "INFO", "fleet", "up", *args],
                cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def state(self) -> FleetState | None:
        return read_state(state_path(self.data_dir))

    def wait(self, done: Callable[[FleetState], bool], timeout_s: float, what: str) -> FleetState:
        """Poll the state file (rewritten every 250 ms) until `done`; fails with the fleet's log."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state()
            if state is not None and done(state):
                return state
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what}: not reached in {timeout_s:.0f}s (fleet exit {self.proc.poll()}); state={state}\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def running(self, state: FleetState, stage: str) -> list[int]:
        return [w.pid for w in state.stages[stage].workers if w.state == "running" and w.pid and pid_alive(w.pid)]

    def status(self) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "pipeline", "fleet", "status", "--json"],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60, check=True,
        )
        return json.loads(out.stdout)

    def stop(self) -> int:
        """SIGTERM, as a service manager would; falls back to killing everything it started."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        state = self.state()
        for stage in state.stages.values() if state else []:
            for w in stage.workers:
                if w.pid and pid_alive(w.pid):
                    os.kill(w.pid, signal.SIGKILL)
        return self.proc.wait()


@pytest.fixture
def fleet(stack: DevStack, stack_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    started: list[Fleet] = []

    def start(*args: str) -> Fleet:
        started.append(Fleet(stack_env, tmp_path / f"fleet{len(started)}", *args))
        return started[-1]

    yield start
    for f in started:
        f.stop()


def test_killed_worker_comes_back_and_sigterm_drains_the_fleet(fleet) -> None:
    f = fleet("--workers", "ingest=1,resize=2", "--restart-backoff", "0.5")
    state = f.wait(lambda s: len(f.running(s, "resize")) == 2 and len(f.running(s, "ingest")) == 1, 60, "fleet up")
    victim = f.running(state, "resize")[0]
    os.kill(victim, signal.SIGKILL)

    def replaced(s: FleetState) -> bool:
        pids = f.running(s, "resize")
        return len(pids) == 2 and victim not in pids

    state = f.wait(replaced, 30, "killed worker replaced")
    assert any("exited with -9" in line for line in state.history)
    assert sum(w.restarts for w in state.stages["resize"].workers) == 1
    [newcomer] = [w for w in state.stages["resize"].workers if w.restarts == 1]
    # The replacement serves its endpoints on the port the supervisor gave it.
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{newcomer.port}/health/live", timeout=2) as resp:
                assert resp.status == 200
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the new process is importing: poll its port with a deadline

    status = f.status()
    assert status["supervisor"]["running"] is True
    assert status["stages"]["resize"]["running"] == 2 and status["stages"]["ingest"]["running"] == 1
    assert isinstance(status["stages"]["resize"]["lag"], int)
    assert isinstance(status["stages"]["resize"]["dead_letters"], int)

    workers = [w.pid for st in state.stages.values() for w in st.workers if w.pid]
    assert f.stop() == 0
    assert not [p for p in workers if pid_alive(p)]  # every worker drained and exited
    final = f.state()
    assert final is not None and final.state == "stopped"
    assert "fleet stopped" in f.log.read_text()


def test_lag_adds_a_worker_within_bounds_and_idle_removes_it(
    fleet, store: ObjectStore, watch, photo_dir: Path, shoot_id: str
) -> None:
    files = watch(FILES)
    # Uploaded before the fleet starts: the backlog is there when the first lag probe runs.
    photos = make_photos(photo_dir / "fleet", 16, seed=71, sizes=[(2400, 1800)])
    results = upload_files(store, photos, shoot_id)
    f = fleet("--workers", "ingest=1,resize=1..2", "--lag-per-worker", "1", "--idle", "3", "--cooldown", "1",
              "--probe-interval", "0.5")
    max_seen = {"resize": 0, "ingest": 0}

    def track(s: FleetState) -> None:
        for stage in max_seen:
            max_seen[stage] = max(max_seen[stage], sum(1 for w in s.stages[stage].workers if w.state != "stopping"))

    def scaled_up(s: FleetState) -> bool:
        track(s)
        return any("scaled resize up to 2" in line for line in s.history)

    f.wait(scaled_up, 90, "resize scaled up on lag")
    await_processed(files, {r.file_id for r in results}, timeout_s=180)

    def scaled_down(s: FleetState) -> bool:
        track(s)
        return any("scaled resize down to 1" in line for line in s.history) and len(f.running(s, "resize")) == 1

    state = f.wait(scaled_down, 90, "resize back to its minimum when idle")
    assert max_seen == {"resize": 2, "ingest": 1}  # never above the maximum; the fixed stage never moved
    assert not any("scaled ingest" in line for line in state.history)
