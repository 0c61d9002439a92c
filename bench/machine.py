"""The machine a benchmark ran on: cores, memory, CPU model, load, software versions."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    host: str
    nproc: int
    ram_gb: float
    cpu: str
    load: tuple[float, float, float]
    python: str
    when: datetime

    def line(self) -> str:
        return (f"{self.host}: {self.nproc} cores ({self.cpu}), {self.ram_gb:.0f} GB RAM, "
                f"Python {self.python}; load average at start "
                f"{self.load[0]:.1f} / {self.load[1]:.1f} / {self.load[2]:.1f}")


def _proc(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.lower().startswith(key.lower()):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def this_machine() -> Machine:
    """What /proc and the os module say about this machine, now."""
    ram_kb = _proc("/proc/meminfo", "MemTotal").split()[0]
    return Machine(
        host=socket.gethostname(),
        nproc=len(os.sched_getaffinity(0)),
        ram_gb=int(ram_kb) / 1024 / 1024 if ram_kb.isdigit() else 0.0,
        cpu=_proc("/proc/cpuinfo", "model name"),
        load=os.getloadavg(),
        python=platform.python_version(),
        when=datetime.now(UTC),
    )
