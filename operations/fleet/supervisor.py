"""The fleet supervisor: keeps N worker processes per stage running on one machine.

- A worker that exits on its own is restarted after a backoff that doubles with each short-lived
  run (1 s, 2 s, 4 s… up to 30 s) and starts over once a worker has run long enough to be stable.
- A stage with bounds `MIN..MAX` scales on its consumer group's lag: one worker more while the lag
  exceeds `lag_per_worker` × workers (never more workers than partitions: extras would idle), one
  fewer after the group has had no lag for `idle_s`; one step per `cooldown_s`.
- A worker that runs but is not live (its `/health/live` answers 503 or nothing for
  `unhealthy_after` probes in a row: some part of it is stuck, see pipeline/progress.py) is
  killed with SIGKILL and restarted like one that exited. A worker not yet serving HTTP (starting)
  does not count against it.
- Stopping sends SIGTERM to every worker (they drain and commit) and SIGKILL to those still alive
  after `stop_timeout_s`.

Everything happens on the thread that calls `tick()`; lag and liveness are probed on threads of
their own (`LagMonitor`, `LivenessMonitor`) because a broker or a worker that does not answer must
not delay restarts.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from operations.fleet.lag import GroupLag, LagProbe, rate
from operations.fleet.spec import StageSpec
from operations.fleet.state import (
    FleetState,
    LiveAnswer,
    StageState,
    WorkerState,
    pid_alive,
    write_state,
)
from pipeline.worker import group_id

log = logging.getLogger(__name__)


class ProcessLike(Protocol):
    """The part of subprocess.Popen the supervisor uses."""

    pid: int

    def poll(self) -> int | None: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...


Launcher = Callable[[str, int, Path], ProcessLike]
"""Starts a worker of a stage serving health/metrics on a port, logging to a file."""


def launch_worker(stage: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """A real `darkroom worker STAGE` process with its HTTP port set.

    In a session of its own, so a Ctrl-C in the terminal reaches only the supervisor, which then
    stops the workers in order.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Two malloc arenas: glibc's default (8 per core) lets libvips' threads each keep freed
    # image buffers, which took a resize worker's peak from ~240 to ~390 MiB (bench/RESULTS.md).
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, "DARKROOM_WORKER__HTTP_PORT": str(port)}
    with log_path.open("ab") as logfile:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--log-level", "INFO", "worker", stage],
            stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (a worker that loses the race fails and is restarted on another)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ScalePolicy:
    """When a stage with MIN < MAX gains or loses a worker."""

    lag_per_worker: int = 50
    idle_s: float = 30.0
    cooldown_s: float = 10.0
    probe_interval_s: float = 2.0


@dataclass(frozen=True)
class RestartPolicy:
    """How crashed workers come back and how long stopping workers may drain."""

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_after_s: float = 30.0
    stop_timeout_s: float = 45.0  # the worker's drain timeout (30 s by default) plus a margin
    unhealthy_after: int = 3  # consecutive failed liveness probes before a running worker is killed


@dataclass
class _Slot:
    stage: str
    index: int
    log: Path
    proc: ProcessLike | None = None
    port: int | None = None
    started: float = 0.0  # monotonic
    started_wall: float | None = None
    restarts: int = 0
    failures: int = 0  # consecutive runs shorter than stable_after_s
    restart_at: float | None = None
    retiring_since: float | None = None  # when SIGTERM was sent
    not_live: int = 0  # consecutive liveness probes of the current process that failed
    not_live_reason: str = ""
    killed_not_live: bool = False

    @property
    def name(self) -> str:
        return f"{self.stage}#{self.index}"

    @property
    def state(self) -> str:
        if self.retiring_since is not None:
            return "stopping"
        return "running" if self.proc is not None else "backoff"


class Supervisor:
    """Starts, restarts, scales and stops the workers of a fleet. Call `tick()` often (e.g. 4×/s)."""

    def __init__(
        self,
        specs: list[StageSpec],
        *,
        log_dir: Path,
        launcher: Launcher = launch_worker,
        port_picker: Callable[[], int] = free_port,
        state_file: Path | None = None,
        scale: ScalePolicy = ScalePolicy(),
        restart: RestartPolicy = RestartPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.specs = {s.stage: s for s in specs}
        self.scale = scale
        self.restart = restart
        self._log_dir = log_dir
        self._launch = launcher
        self._pick_port = port_picker
        self._state_file = state_file
        self._clock = clock
        self._slots: dict[str, list[_Slot]] = {s.stage: [] for s in specs}
        self._next_index = {s.stage: 1 for s in specs}
        self._lag: dict[str, GroupLag] = {}
        self._throughput: dict[str, float | None] = {}
        self._idle_since: dict[str, float] = {}
        self._last_scale: dict[str, float] = {}
        self._stopping = False
        self._started_wall = time.time()
        self.history: deque[str] = deque(maxlen=50)
        # (pid, port) of running workers, rebuilt each tick, read by the LivenessMonitor's thread.
        self.live_targets: list[tuple[int, int]] = []

    # -- queries ----------------------------------------------------------------------------------

    def workers(self, stage: str) -> int:
        """Workers of `stage` that are meant to run (running or in backoff; not stopping)."""
        return sum(1 for s in self._slots[stage] if s.retiring_since is None)

    def pids(self, stage: str) -> list[int]:
        return [s.proc.pid for s in self._slots[stage] if s.proc is not None and s.retiring_since is None]

    @property
    def stopped(self) -> bool:
        return self._stopping and not any(self._slots.values())

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every stage's minimum."""
        for spec in self.specs.values():
            for _ in range(spec.minimum):
                self._add(spec.stage)
        self.write_state()

    def tick(self) -> None:
        """Reap exited workers, restart those due, kill those past their drain bound, write the state."""
        now = self._clock()
        for stage, slots in self._slots.items():
            for slot in list(slots):
                self._check(slot, slots, now)
        self.write_state()

    def stop(self) -> None:
        """Ask every worker to drain and exit (SIGTERM); `tick()` until `stopped`."""
        if self._stopping:
            return
        self._stopping = True
        self._note("stopping: SIGTERM to every worker")
        for slots in self._slots.values():
            for slot in list(slots):
                if slot.proc is None:
                    slots.remove(slot)
                else:
                    self._retire(slot)
        self.write_state()

    def run(self, stop: threading.Event, monitor: LagMonitor | None = None, tick_s: float = 0.25,
            liveness: LivenessMonitor | None = None) -> None:
        """Start, then tick until `stop` is set, then stop the workers and wait for them."""
        self.start()
        try:
            while not stop.is_set():
                if monitor is not None:
                    for lag in monitor.take():
                        self.observe(lag)
                if liveness is not None:
                    for answer in liveness.take():
                        self.observe_live(answer)
                self.tick()
                stop.wait(tick_s)
        finally:
            self.stop()
            while not self.stopped:
                self.tick()
                time.sleep(0.1)  # child exit has no portable event to wait on; 100 ms bounds the delay
            self.write_state(final=True)

    # -- liveness ---------------------------------------------------------------------------------

    def observe_live(self, answer: LiveAnswer) -> None:
        """Take a liveness probe of a worker into account (applied to its process only, by pid)."""
        slot = next((s for slots in self._slots.values() for s in slots
                     if s.proc is not None and s.proc.pid == answer.pid and s.retiring_since is None), None)
        if slot is None or answer.live is None:
            return  # gone, stopping, or not serving yet: the exit check handles it
        if answer.live:
            slot.not_live = 0
        else:
            slot.not_live += 1
            slot.not_live_reason = answer.reason

    # -- scaling ----------------------------------------------------------------------------------

    def observe(self, lag: GroupLag) -> None:
        """Take a lag probe of a stage's group into account, and scale that stage if its policy says so."""
        stage = lag.group.removeprefix("darkroom.")
        spec = self.specs.get(stage)
        if spec is None or self._stopping:
            return
        previous = self._lag.get(stage)
        self._lag[stage] = lag
        if lag.error is not None:
            return
        self._throughput[stage] = rate(previous, lag)
        now = self._clock()
        if lag.total > 0:
            self._idle_since.pop(stage, None)
        else:
            self._idle_since.setdefault(stage, now)
        if not spec.scales or now - self._last_scale.get(stage, -1e18) < self.scale.cooldown_s:
            return
        n = self.workers(stage)
        below_partitions = lag.partitions == 0 or n < lag.partitions
        if n < spec.maximum and below_partitions and lag.total > self.scale.lag_per_worker * n:
            self._last_scale[stage] = now
            self._note(f"scaled {stage} up to {n + 1}: lag {lag.total} > {self.scale.lag_per_worker} per worker")
            self._add(stage)
        elif n > spec.minimum and now - self._idle_since.get(stage, now) >= self.scale.idle_s:
            self._last_scale[stage] = now
            self._idle_since[stage] = now  # the next step down waits a full idle period again
            victim = max((s for s in self._slots[stage] if s.retiring_since is None), key=lambda s: s.index)
            self._note(f"scaled {stage} down to {n - 1}: no lag for {self.scale.idle_s:g}s")
            if victim.proc is None:
                self._slots[stage].remove(victim)
            else:
                self._retire(victim)

    # -- internals --------------------------------------------------------------------------------

    def _add(self, stage: str) -> None:
        index = self._next_index[stage]
        self._next_index[stage] += 1
        slot = _Slot(stage, index, self._log_dir / f"{stage}-{index}.log")
        self._slots[stage].append(slot)
        self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        slot.port = self._pick_port()
        try:
            slot.proc = self._launch(slot.stage, slot.port, slot.log)
        except OSError as exc:  # e.g. fork failed: treat as a crash, try again after the backoff
            self._schedule_restart(slot, self._clock(), f"could not start: {exc}")
            return
        slot.started = self._clock()
        slot.started_wall = time.time()
        slot.restart_at = None
        slot.not_live, slot.killed_not_live = 0, False
        log.info("started %s pid %d, http port %d, log %s", slot.name, slot.proc.pid, slot.port, slot.log)

    def _check(self, slot: _Slot, slots: list[_Slot], now: float) -> None:
        if slot.proc is None:
            if slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                slot.restarts += 1
                self._spawn(slot)
            return
        code = slot.proc.poll()
        if code is None:
            if slot.retiring_since is not None and now - slot.retiring_since > self.restart.stop_timeout_s:
                self._note(f"{slot.name} pid {slot.proc.pid} still draining after {self.restart.stop_timeout_s:g}s: SIGKILL")
                slot.proc.kill()
                slot.retiring_since = now  # and wait for the kill to be reaped
            elif (slot.retiring_since is None and not slot.killed_not_live
                  and slot.not_live >= self.restart.unhealthy_after):
                self._note(f"{slot.name} pid {slot.proc.pid} not live for {slot.not_live} probes "
                           f"({slot.not_live_reason}): SIGKILL", logging.WARNING)
                slot.killed_not_live = True
                slot.proc.kill()  # reaped by a next tick, then restarted with the usual backoff
            return
        if slot.retiring_since is not None:
            log.info("%s pid %d stopped (exit %s)", slot.name, slot.proc.pid, code)
            slots.remove(slot)
            return
        ran = now - slot.started
        slot.failures = 1 if ran >= self.restart.stable_after_s else slot.failures + 1
        pid = slot.proc.pid
        slot.proc = None
        self._schedule_restart(slot, now, f"pid {pid} exited with {code} after {ran:.0f}s")

    def _schedule_restart(self, slot: _Slot, now: float, why: str) -> None:
        slot.failures = max(1, slot.failures)
        delay = min(self.restart.max_backoff_s, self.restart.initial_backoff_s * 2 ** (slot.failures - 1))
        slot.restart_at = now + delay
        self._note(f"{slot.name} {why}; restarting in {delay:g}s", logging.WARNING)

    def _retire(self, slot: _Slot) -> None:
        assert slot.proc is not None
        slot.retiring_since = self._clock()
        try:
            slot.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass  # exited meanwhile: the next tick reaps it

    def _note(self, message: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", message)
        self.history.append(f"{time.strftime('%H:%M:%S')} {message}")

    def snapshot(self, final: bool = False) -> FleetState:
        """The fleet as `darkroom fleet status` shows it."""
        stages: dict[str, StageState] = {}
        for stage, spec in self.specs.items():
            lag = self._lag.get(stage)
            stages[stage] = StageState(
                minimum=spec.minimum, maximum=spec.maximum,
                workers=[
                    WorkerState(
                        slot=s.index, pid=s.proc.pid if s.proc else None, port=s.port if s.proc else None,
                        started_at=s.started_wall if s.proc else None, restarts=s.restarts, state=s.state,
                        log=str(s.log),
                    )
                    for s in self._slots[stage]
                ],
                lag=lag.total if lag is not None and lag.error is None else None,
                lag_partitions={f"{t}/{p}": v for (t, p), v in lag.lag.items()} if lag is not None else {},
                throughput=self._throughput.get(stage),
                lag_error=lag.error if lag is not None else None,
            )
        state = "stopped" if final else ("stopping" if self._stopping else "running")
        return FleetState(
            supervisor_pid=os.getpid(), state=state, started_at=self._started_wall, updated_at=time.time(),
            stages=stages, history=list(self.history),
        )

    def write_state(self, final: bool = False) -> None:
        self.live_targets = [(s.proc.pid, s.port) for slots in self._slots.values() for s in slots
                             if s.proc is not None and s.port is not None and s.retiring_since is None]
        if self._state_file is not None:
            write_state(self._state_file, self.snapshot(final))


class LagMonitor:
    """Probes the lag of each stage's group every `interval_s` on a daemon thread; `take()` collects results."""

    def __init__(self, probe: LagProbe, stages: list[str], interval_s: float) -> None:
        self._probe = probe
        self._groups = [group_id(s) for s in stages]
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._fresh: list[GroupLag] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fleet-lag", daemon=True)

    def start(self) -> LagMonitor:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            for group in self._groups:
                lag = self._probe.group_lag(group)
                with self._lock:
                    self._fresh.append(lag)
            self._stop.wait(self._interval_s)

    def take(self) -> list[GroupLag]:
        with self._lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop probing; waits for a probe in progress (bounded by the probe's own timeouts)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)


class LivenessMonitor:
    """Probes every running worker's `/health/live` every `interval_s` on a daemon thread; `take()` collects."""

    def __init__(self, targets: Callable[[], list[tuple[int, int]]], probe: Callable[[int], tuple[bool | None, str]],
                 interval_s: float) -> None:
        self._targets = targets  # (pid, port) of the workers to probe, as of now
        self._probe = probe  # port -> (live: True / False / None = not serving, reason)
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._fresh: list[LiveAnswer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fleet-liveness", daemon=True)

    def start(self) -> LivenessMonitor:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            for pid, port in self._targets():
                live, reason = self._probe(port)
                with self._lock:
                    self._fresh.append(LiveAnswer(pid, live, reason))

    def take(self) -> list[LiveAnswer]:
        with self._lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)


def terminate_orphans(previous: FleetState | None) -> list[int]:
    """SIGTERM workers left running by a supervisor that died (from its last state file); returns their pids.

    Only processes that still look like darkroom workers are signalled, so a reused pid is left alone.
    """
    if previous is None or pid_alive(previous.supervisor_pid):
        return []
    signalled = []
    for stage in previous.stages.values():
        for worker in stage.workers:
            if worker.pid and pid_alive(worker.pid) and _is_worker(worker.pid):
                os.kill(worker.pid, signal.SIGTERM)
                signalled.append(worker.pid)
    return signalled


def _is_worker(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"pipeline" in argv and b"worker" in argv
