"""CPU time of processes, from /proc/PID/stat (Linux): where a run's core-seconds went.

On a machine where Kafka, the S3 server, the workers and the benchmark share the cores, the
end-to-end rate is bounded by the CPU that *all* of them use per photo, not only by libvips. A
snapshot before and after a run gives each process's share.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of `pid` (all its threads) so far; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": fields 3.. of proc(5)
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each labelled process that is still alive."""
    out = {}
    for label, pid in pids.items():
        seconds = cpu_seconds(pid)
        if seconds is not None:
            out[label] = seconds
    return out


def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used between two snapshots (processes present in both)."""
    return {label: round(after[label] - before[label], 3) for label in before if label in after}
