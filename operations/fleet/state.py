"""The state file of a running fleet: written by the supervisor, read by `darkroom fleet status`."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

STATE_FILE = "state.json"


class WorkerState(BaseModel):
    """One worker slot: its current process (if any) and how it has fared."""

    slot: int
    pid: int | None
    port: int | None
    started_at: float | None  # wall clock (time.time())
    restarts: int = 0
    state: str  # running | backoff | stopping
    log: str


class StageState(BaseModel):
    """One stage of the fleet."""

    minimum: int
    maximum: int
    workers: list[WorkerState] = Field(default_factory=list)
    lag: int | None = None  # messages behind, over every partition of the group
    lag_partitions: dict[str, int] = Field(default_factory=dict)  # "topic/partition" -> lag
    throughput: float | None = None  # messages per second committed by the group, last probe interval
    lag_error: str | None = None


class FleetState(BaseModel):
    """The whole fleet, as of `updated_at`."""

    supervisor_pid: int
    state: str  # running | stopping | stopped
    started_at: float
    updated_at: float
    stages: dict[str, StageState] = Field(default_factory=dict)
    history: list[str] = Field(default_factory=list)  # last supervisor actions, newest last


def state_path(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve() / "fleet" / STATE_FILE


def write_state(path: Path, state: FleetState) -> None:
    """Replace the file atomically, so a reader never sees half a state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=1))
    os.replace(tmp, path)


def read_state(path: Path) -> FleetState | None:
    """The last state written, or None when there is no fleet state file."""
    try:
        return FleetState.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None


def pid_alive(pid: int | None) -> bool:
    """True if a process with `pid` exists (and is not a zombie)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def age(ts: float | None) -> str:
    """`3m12s` since wall-clock `ts`."""
    if ts is None:
        return "-"
    seconds = int(max(0.0, time.time() - ts))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def worker_ready(host: str, port: int) -> bool:
    """True if the worker on `port` answers 200 on /health/ready (assigned, not draining, checks pass)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health/ready", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class LiveAnswer:
    """One liveness probe of a worker process: live True/False, or None when it does not serve HTTP (yet)."""

    pid: int
    live: bool | None
    reason: str = ""


def worker_live(host: str, port: int, timeout_s: float = 2.0) -> tuple[bool | None, str]:
    """Probe `/health/live`: (True, "ok"); (False, reason) on a 503 or no answer in time; (None, why)
    when nothing listens (a worker still starting, or one that just exited: neither is "stuck")."""
    url = f"http://{host}:{port}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status == 200, "ok"
    except urllib.error.HTTPError as exc:
        try:
            reason = str(json.loads(exc.read() or b"{}").get("reason", exc.reason))
        except ValueError:
            reason = str(exc.reason)
        return False, reason
    except (TimeoutError, socket.timeout):
        return False, f"no answer within {timeout_s:g}s"
    except (urllib.error.URLError, OSError) as exc:
        cause = getattr(exc, "reason", exc)
        if isinstance(cause, (TimeoutError, socket.timeout)):
            return False, f"no answer within {timeout_s:g}s"
        return None, str(cause)
