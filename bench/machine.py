"""What the benchmark ran on: cores, memory, CPU model, versions, date. Recorded in every report."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

import PIL
import pyvips
from pydantic import BaseModel


class Machine(BaseModel):
    """The host of a benchmark run."""

    cores: int
    memory_gib: float
    cpu_model: str
    os: str
    python: str
    libvips: str
    pyvips: str
    pillow: str
    date: str  # UTC, ISO 8601


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def describe_machine() -> Machine:
    """This machine, now."""
    return Machine(
        cores=os.cpu_count() or 1,
        memory_gib=_memory_gib(),
        cpu_model=_cpu_model(),
        os=f"{platform.system()} {platform.release()} {platform.machine()}",
        python=platform.python_version(),
        libvips=f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        pyvips=pyvips.__version__,
        pillow=PIL.__version__,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
    )
