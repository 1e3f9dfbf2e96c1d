"""Process CPU time and memory: the only module that imports psutil.

psutil calls cost 12-25 µs each here, so callers sample on a timer or every N
calls, never per prediction.

Examples
--------
>>> from edge_runtime.budgets.resources import ProcessMeter
>>> meter = ProcessMeter()
>>> meter.cpu_seconds() >= 0.0, meter.rss_bytes() > 0
(True, True)
"""

from __future__ import annotations

import os
import platform
from typing import Protocol

import psutil

__all__ = ["ProcessMeter", "ResourceMeter", "machine_info"]


class ResourceMeter(Protocol):
    """What the budget governor and the benchmark read about the process."""

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process so far."""
        ...

    def rss_bytes(self) -> int:
        """Resident memory of the process."""
        ...


class ProcessMeter:
    """The current process, measured with psutil."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process so far."""
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def rss_bytes(self) -> int:
        """Resident memory of the process."""
        return int(self._process.memory_info().rss)


def machine_info() -> dict[str, object]:
    """CPU model, core count and architecture of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("model name", "Model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "logical_cores": psutil.cpu_count(), "arch": platform.machine(),
            "memory_bytes": int(psutil.virtual_memory().total), "python": platform.python_version()}
