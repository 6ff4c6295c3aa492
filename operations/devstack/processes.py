"""Detached service processes: spawn, pidfiles, liveness, stop, ports and log tails.

The dev stack outlives the ``darkroom dev up`` command that starts it, so services run in their own
session (no terminal signals reach them) and are found again through pidfiles. A pidfile alone is
never trusted: pids are reused, so a pid counts as ours only if its command line still carries the
service's marker argument (a path unique to the data dir).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """A dev-stack failure whose message tells the user what happened and what to do."""


# Popen objects of the processes this Python process spawned. Kept so they can be reaped: a
# finished child stays a zombie (and keeps its pid) until its parent waits for it, which matters
# when the same process runs up() and down(), e.g. in tests.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ServiceProcess:
    """Where one service keeps its pidfile and log, and how its process is recognised."""

    name: str
    pidfile: Path
    logfile: Path
    # An argv element only this service (of this data dir) has, e.g. its config file's absolute path.
    marker: str

    def pid(self) -> int | None:
        """The pid of the running service, or None if it is not running (stale pidfiles are ignored)."""
        pid = read_pidfile(self.pidfile)
        if pid is None or not is_alive(pid, self.marker):
            return None
        return pid


def require_tool(executable: str, hint: str) -> str:
    """Return the absolute path of ``executable`` or raise a StackError saying how to install it."""
    found = shutil.which(executable)
    if found is None:
        raise StackError(f"`{executable}` was not found on PATH: {hint}")
    return found


def spawn(
    service: ServiceProcess,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` detached from this terminal, stdout/stderr appended to the service's log.

    Writes the pidfile and returns the pid. The log is opened in append mode so earlier runs stay
    readable; a separator line marks where this start begins.
    """
    service.logfile.parent.mkdir(parents=True, exist_ok=True)
    service.pidfile.parent.mkdir(parents=True, exist_ok=True)
    with service.logfile.open("ab") as log:
        log.write(f"\n===== darkroom dev: starting {service.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        log.flush()
        proc = subprocess.Popen(  # noqa: S603 - argv is built by us, never by a shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            # Own session: Ctrl-C in the terminal that ran `dev up` must not kill the stack, and
            # the pid doubles as the process group id, so stop() can signal the whole group.
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    # Write-then-rename so a concurrent reader never sees a half-written pidfile.
    tmp = service.pidfile.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(service.pidfile)
    return proc.pid


def read_pidfile(path: Path) -> int | None:
    """The pid in ``path``, or None if the file is missing or garbage."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our finished child, so it stops being a zombie."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its own parent (or init) reaps it


def cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid`` or None if there is no such (live, non-zombie) process."""
    proc_dir = Path(f"/proc/{pid}")
    if proc_dir.is_dir():
        try:
            stat = (proc_dir / "stat").read_text()
            # Field 3 (after the parenthesised command name, which may contain spaces) is the state.
            if stat[stat.rindex(")") + 2 :].startswith(("Z", "X")):
                return None
            raw = (proc_dir / "cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None
    if not Path("/proc/self").exists():
        # No procfs (macOS): ask ps. Splitting on spaces is good enough to find a path marker.
        out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False)
        return out.stdout.split() or None
    return None


def is_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and its argv contains ``marker``, i.e. it is still the process we started."""
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child: its exit status is the truth. Reading /proc right after the exec can catch
        # an empty cmdline and would call a starting service dead.
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    _reap(pid)
    argv = cmdline(pid)
    return argv is not None and marker in argv


def wait_until_dead(pid: int, marker: str, timeout_s: float) -> bool:
    """Poll until ``pid`` is gone (or no longer ours); True if it went within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid, marker):
            return True
        time.sleep(0.1)
    return not is_alive(pid, marker)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        # The pid is its own process group (start_new_session), so helpers it forked go too.
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def stop(service: ServiceProcess, timeout_s: float = 30.0) -> bool:
    """Stop the service: SIGTERM, then SIGKILL if it is still there after ``timeout_s``.

    Returns True if a running process was stopped, False if it was not running. The pidfile is
    removed either way.
    """
    pid = service.pid()
    if pid is None:
        service.pidfile.unlink(missing_ok=True)
        return False
    _signal(pid, signal.SIGTERM)
    if not wait_until_dead(pid, service.marker, timeout_s):
        _signal(pid, signal.SIGKILL)
        if not wait_until_dead(pid, service.marker, 10.0):
            raise StackError(f"{service.name} (pid {pid}) survived SIGKILL; check `ps -p {pid}`")
    service.pidfile.unlink(missing_ok=True)
    return True


def kill(service: ServiceProcess, timeout_s: float = 10.0) -> int | None:
    """SIGKILL the service's process group at once (a crash, for fault tests); returns the pid, None if not running."""
    pid = service.pid()
    if pid is None:
        return None
    _signal(pid, signal.SIGKILL)
    if not wait_until_dead(pid, service.marker, timeout_s):
        raise StackError(f"{service.name} (pid {pid}) survived SIGKILL; check `ps -p {pid}`")
    service.pidfile.unlink(missing_ok=True)
    return pid


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on ``host:port`` (a bind attempt is the only reliable test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so sockets lingering in TIME_WAIT from our own last run do not count as "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def port_owner(port: int) -> str | None:
    """Best-effort description of who listens on ``port`` (e.g. "pid 5812 (java)"), from ``ss``."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False)
    match = re.search(r'\("([^"]+)",pid=(\d+)', out.stdout)
    return f"pid {match.group(2)} ({match.group(1)})" if match else None


def check_port_free(port: int, what: str, env_hint: str) -> None:
    """Raise a StackError naming the port, its owner and the variable to change if ``port`` is taken."""
    if not port_in_use(port):
        return
    owner = port_owner(port)
    by = f" by {owner}" if owner else " by another process"
    raise StackError(
        f"port {port} ({what}) is already in use{by}. Stop that process, or choose another port, e.g. "
        f"{env_hint}"
    )


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (empty if it does not exist)."""
    if lines <= 0 or not path.exists():
        return []
    with path.open("r", errors="replace") as fh:
        return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]


def wait_healthy(
    service: ServiceProcess,
    pid: int,
    check: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.25,
) -> float:
    """Poll ``check`` until it passes; fail early, with the log tail, if the process dies meanwhile.

    Returns the seconds it took. Raises StackError on death or timeout.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if not is_alive(pid, service.marker):
            raise StackError(
                f"{service.name} exited during start-up. Last lines of {service.logfile}:\n"
                + "\n".join(tail(service.logfile, 25))
            )
        if check():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise StackError(
                f"{service.name} (pid {pid}) did not become healthy within {timeout_s:.0f} s; it is still "
                f"running (stop it with `darkroom dev down`). Last lines of {service.logfile}:\n"
                + "\n".join(tail(service.logfile, 25))
            )
        time.sleep(interval_s)
