"""Sampling a worker with py-spy while the benchmark runs, and saying where its time goes.

`py-spy record --format raw` writes collapsed stacks ("frame;frame;frame count" per line). Only
active samples are kept (py-spy drops idle threads by default), so the shares below are shares of
the worker's CPU time, with libvips calls showing as the Python frame that called into them.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.report import ProfileResult


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")  # installed in the venv by `pip install py-spy`
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy recording one process from `start()` to `stop()`."""

    def __init__(self, pid: int, out: Path, rate_hz: int = 100) -> None:
        self.pid = pid
        self.out = out
        self._rate = rate_hz
        self._proc: subprocess.Popen[bytes] | None = None
        self._began = 0.0
        self.error: str | None = None

    def start(self) -> None:
        exe = _py_spy()
        if exe is None:
            self.error = "py-spy is not installed (pip install py-spy)"
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.out.with_suffix(".log").open("wb")
        self._proc = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--rate", str(self._rate), "--format", "raw",
             "--output", str(self.out)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._began = time.monotonic()

    def stop(self) -> ProfileResult:
        seconds = time.monotonic() - self._began
        if self._proc is not None:
            self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._log.close()
            if not self.out.exists():
                self.error = f"py-spy wrote nothing (exit {self._proc.returncode}); see {self.out.with_suffix('.log')}"
        if self.error:
            return ProfileResult(pid=self.pid, seconds=seconds, samples=0, top_self=[], top_total=[],
                                 raw_file=str(self.out), error=self.error)
        return summarise_collapsed(self.out, self.pid, seconds)


_REPO = str(Path(__file__).resolve().parents[1]) + "/"
# Innermost frames that are a thread blocked in C, which py-spy (without --native) cannot tell from
# work: the idle handler pool, the health server's select, librdkafka polls. Counted as waiting.
_WAITS = ("_worker (concurrent/futures/thread.py)", "_PollLikeSelector.select (selectors.py)", "wait (threading.py)",
          "Publisher._poll_forever (pipeline/publisher.py)", "StageRunner._step (pipeline/runner.py)",
          "StageRunner._collect (pipeline/runner.py)",  # blocked on the done queue (its work shows deeper frames)
          "run_framework (bench/event_throughput.py)")  # bench.event_throughput's clock, sleeping between looks
_PLUMBING = ("(threading.py)", "(concurrent/futures/thread.py)", "(runpy.py)", "(pipeline/__main__.py)")


def _short(frame: str) -> str:
    """`resize (stages/resize/transform.py:42)` → `resize (stages/resize/transform.py)`: functions, not lines."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    path = re.sub(r"^.*?(site-packages/|/lib/python3\.\d+/)", "", path).removeprefix(_REPO)
    return f"{name} ({path})" if path else name


def summarise_collapsed(path: Path, pid: int, seconds: float, top: int = 12) -> ProfileResult:
    """Top functions by self and by total share of the busy samples in a collapsed-stack file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1] in _WAITS:
            waiting += count
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not frame.endswith(_PLUMBING):  # thread start-up frames are on every stack: no information
                total[frame] += count
    share = (lambda n: n / samples) if samples else (lambda n: 0.0)
    return ProfileResult(
        pid=pid, seconds=seconds, samples=samples, waiting_samples=waiting,
        top_self=[(f, share(n)) for f, n in own.most_common(top)],
        top_total=[(f, share(n)) for f, n in total.most_common(top)],
        raw_file=str(path),
    )
