"""Peak resident memory of a process, from /proc/PID/status (Linux).

VmHWM ("high water mark") is the peak RSS of the process's address space since it was created or
last exec'd, kept by the kernel, so one read before a worker stops gives its peak over the whole
run without sampling. (`getrusage().ru_maxrss` is no substitute: Linux carries it across exec, so a
spawned child reports its parent's peak if that was higher.)
"""

from __future__ import annotations

from pathlib import Path


def _field_kib(pid: int | str, name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone, or not Linux
        return None
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])  # "VmHWM:   123456 kB"
    return None


def peak_rss_mib(pid: int | str = "self") -> float | None:
    """Peak RSS (VmHWM) of `pid` in MiB; None if the process is gone or the field is missing."""
    kib = _field_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024

