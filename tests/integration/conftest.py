"""The real local stack for integration tests: Apache Kafka (KRaft) and versitygw, on free ports.

The stack starts once per test session with `DevStack.up()`, the same code as `darkroom dev up`,
and stops at the end. Workers run as real `darkroom worker` processes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from operations.devstack import DevStack, client_env
from operations.samples import sample_jpeg
from pipeline.settings import Settings
from pipeline.watch import TopicWatcher
from storage import ObjectStore, open_store

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of every process of the session: where the stack listens, fast test retries."""
    kafka, controller, s3 = _free_port(), _free_port(), _free_port()
    env = {
        "DARKROOM_DEV__DATA_DIR": str(tmp_path_factory.mktemp("stack")),
        "DARKROOM_DEV__KAFKA_PORT": str(kafka),
        "DARKROOM_DEV__KAFKA_CONTROLLER_PORT": str(controller),
        "DARKROOM_DEV__S3_PORT": str(s3),
        "DARKROOM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}",
        "DARKROOM_STORAGE__ENDPOINT_URL": f"http://127.0.0.1:{s3}",
        # The dev stack's keys and topic management, as `darkroom dev env` gives them.
        **client_env(Settings()),
        # Retries fast enough for a test, patient enough to ride out a short storage outage.
        "DARKROOM_WORKER__RETRY_INITIAL_BACKOFF_S": "0.2",
        "DARKROOM_WORKER__RETRY_MAX_BACKOFF_S": "2",
        "DARKROOM_WORKER__RETRY_MAX_ATTEMPTS": "40",
        "DARKROOM_WORKER__COMMIT_INTERVAL_S": "0.5",
        "DARKROOM_WORKER__SESSION_TIMEOUT_MS": "6000",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> Iterator[DevStack]:
    """The running local stack."""
    dev = DevStack(Settings())
    dev.up()
    yield dev
    dev.down()


@pytest.fixture(scope="session")
def settings(stack: DevStack) -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def store(settings: Settings) -> ObjectStore:
    return open_store(settings.storage)


@pytest.fixture
def shoot_id() -> str:
    """A shoot of its own for each test, so tests never see each other's photos."""
    return f"shoot-{uuid.uuid4().hex[:10]}"


class WorkerProcess:
    """A real `darkroom worker STAGE` process whose log lines can be awaited."""

    def __init__(self, stage: str, env: dict[str, str | None]) -> None:
        """`env` adds to this process's environment; a None value removes the variable."""
        self.stage = stage
        full = {**os.environ, **env}
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--log-level", "INFO", "worker", stage],
            cwd=REPO, env={k: v for k, v in full.items() if v is not None}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip())
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, pattern: str, timeout_s: float = 60.0) -> str:
        """Block until a log line matches `pattern`; fails with the log if the process dies first."""
        regex = re.compile(pattern)

        def found() -> str | None:
            return next((line for line in self.lines if regex.search(line)), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self.proc.poll() is not None, timeout_s)
            line = found()
        if line is None:
            raise AssertionError(f"{self.stage}: no log line matching {pattern!r}; log:\n" + "\n".join(self.lines[-40:]))
        return line

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 60.0) -> int:
        code = self.proc.wait(timeout_s)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def workers(stack_env: dict[str, str], stack: DevStack) -> Iterator[list[WorkerProcess]]:
    """Start workers with `start(stage)`; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture
def start_worker(workers: list[WorkerProcess], stack_env: dict[str, str]):
    def start(stage: str, **env: str | None) -> WorkerProcess:
        worker = WorkerProcess(stage, {**stack_env, **env})
        workers.append(worker)
        return worker

    return start


@pytest.fixture
def watch(settings: Settings) -> Iterator[Callable[[str], TopicWatcher]]:
    """`watch(topic)` reads `topic` from its current end; every watcher is closed after the test."""
    opened: list[TopicWatcher] = []

    def open_watcher(topic: str) -> TopicWatcher:
        opened.append(TopicWatcher(settings, topic))
        return opened[-1]

    yield open_watcher
    for watcher in opened:
        watcher.close()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("photos")


def make_photos(folder: Path, count: int, seed: int, sizes: list[tuple[int, int]]) -> list[Path]:
    """Distinct JPEGs (distinct content, so distinct file ids) of the given sizes, cycled."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        path = folder / f"p{seed}-{i:03d}.jpg"
        path.write_bytes(sample_jpeg(w, h, seed * 10_000 + i))
        paths.append(path)
    return paths
