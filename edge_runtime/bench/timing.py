"""How a benchmark measures: timed loops, percentiles that refuse to guess, the harness's own cost, resources.

A percentile is reported only when enough queries ran for it (10 / (1 - p):
1,000 for p99); otherwise it is None and a note says so.

Examples
--------
>>> from edge_runtime.bench.timing import percentiles, timed_loop
>>> latencies = timed_loop(lambda row: None, [0, 1, 2], duration_s=1e-6, min_queries=150, progress=None)
>>> len(latencies), min(latencies) >= 0
(150, True)
>>> stats, notes = percentiles(latencies)
>>> stats.p90_us is not None, stats.p99_us, notes
(True, None, ['p99 needs at least 1000 queries, 150 ran', 'p99.9 needs at least 10000 queries, 150 ran'])
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.budgets.resources import ProcessMeter

__all__ = ["HARNESS_SHARE_LIMIT", "Percentiles", "Progress", "ResourceUsage", "ResourceWatch",
           "harness_overhead_us", "percentiles", "timed_loop", "warm_up"]

HARNESS_SHARE_LIMIT = 0.10
"""The harness's share of a measured latency above which a note warns that the numbers are upper bounds."""

Progress = Callable[[float], None]
"""Called with the completed fraction (0 to 1) of a long run."""

_PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True, slots=True, kw_only=True)
class Percentiles:
    """Latency percentiles, maximum and mean in microseconds; None where too few queries ran.

    Parameters
    ----------
    p50_us, p90_us, p99_us, p99_9_us : float or None
        The percentiles; each needs 10 / (1 - p) queries (20 for the median, 100 for p90).
    max_us, mean_us : float or None
        None only when no query ran.

    Examples
    --------
    >>> Percentiles(p50_us=2.0, p90_us=None, p99_us=None, p99_9_us=None, max_us=3.0, mean_us=2.1).to_dict()
    {'p50_us': 2.0, 'p90_us': None, 'p99_us': None, 'p99.9_us': None, 'max_us': 3.0, 'mean_us': 2.1}
    """

    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    p99_9_us: float | None
    max_us: float | None
    mean_us: float | None

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form; p99.9 keeps its dotted key ``p99.9_us``."""
        return {"p50_us": self.p50_us, "p90_us": self.p90_us, "p99_us": self.p99_us, "p99.9_us": self.p99_9_us,
                "max_us": self.max_us, "mean_us": self.mean_us}


def percentiles(latencies_us: Sequence[float]) -> tuple[Percentiles, list[str]]:
    """p50/p90/p99/p99.9/max in microseconds, None where too few queries ran, and notes saying so.

    Parameters
    ----------
    latencies_us : sequence of float
        One latency per query, in microseconds.

    Returns
    -------
    Percentiles
        The statistics.
    list of str
        One note per percentile above the median left out for want of queries.

    Examples
    --------
    >>> values, notes = percentiles(list(range(1, 201)))
    >>> values.p50_us, values.p99_us, notes
    (100.5, None, ['p99 needs at least 1000 queries, 200 ran', 'p99.9 needs at least 10000 queries, 200 ran'])
    """
    data = np.asarray(latencies_us, dtype=np.float64)
    values: list[float | None] = []
    notes = []
    for p in _PERCENTILES:
        needed = round(10 / (1 - p / 100))  # 20 for p50, 100 for p90, 1000 for p99, 10000 for p99.9
        if data.size >= needed:
            values.append(float(np.percentile(data, p)))
        else:
            values.append(None)
            if p > 50:
                notes.append(f"p{p:g} needs at least {needed} queries, {data.size} ran")
    p50, p90, p99, p99_9 = values
    return Percentiles(p50_us=p50, p90_us=p90, p99_us=p99, p99_9_us=p99_9,
                       max_us=float(data.max()) if data.size else None,
                       mean_us=float(data.mean()) if data.size else None), notes


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceUsage:
    """CPU share and memory of this process over a measured run.

    Parameters
    ----------
    cpu_share : float
        CPU seconds of the whole process (every thread) per wall-clock second.
    peak_rss_mb : float
        Peak resident memory over the process's life, MB.
    rss_mb : float
        Resident memory at the end of the run, MB.

    Examples
    --------
    >>> ResourceUsage(cpu_share=0.5, peak_rss_mb=80.0, rss_mb=75.0).to_dict()
    {'cpu_share': 0.5, 'peak_rss_mb': 80.0, 'rss_mb': 75.0}
    """

    cpu_share: float
    peak_rss_mb: float
    rss_mb: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {"cpu_share": self.cpu_share, "peak_rss_mb": self.peak_rss_mb, "rss_mb": self.rss_mb}


class ResourceWatch:
    """CPU share and peak RSS of this process from construction to :meth:`done`.

    Examples
    --------
    >>> usage = ResourceWatch().done()
    >>> usage.cpu_share >= 0 and usage.peak_rss_mb > 0 and usage.rss_mb > 0
    True
    """

    def __init__(self) -> None:
        self._meter = ProcessMeter()
        self._wall = time.perf_counter()
        self._cpu = self._meter.cpu_seconds()

    def done(self) -> ResourceUsage:
        """The usage since construction."""
        wall = time.perf_counter() - self._wall
        cpu = self._meter.cpu_seconds() - self._cpu
        # ru_maxrss is in KiB on Linux: the peak over the process's life. The kernel updates
        # it lazily, so it can read a little below the current RSS.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return ResourceUsage(cpu_share=cpu / wall if wall > 0 else 0.0, peak_rss_mb=peak / 1e6,
                             rss_mb=self._meter.rss_bytes() / 1e6)


def timed_loop(call: Callable[[Any], Any], rows: Sequence[Any], *, duration_s: float, min_queries: int,
               progress: Progress | None) -> list[float]:
    """Call on rows in turn until both the minimum time and the minimum count are reached.

    Parameters
    ----------
    call : callable
        Takes one row.
    rows : sequence
        Used in turn, wrapping around.
    duration_s : float
        Minimum measured seconds.
    min_queries : int
        Minimum number of calls.
    progress : callable or None
        Called every 1,024 calls with the completed fraction.

    Returns
    -------
    list of float
        The latency of each call, in microseconds.
    """
    clock = time.perf_counter_ns
    deadline = clock() + int(duration_s * 1e9)
    latencies: list[float] = []
    n = len(rows)
    i = 0
    while True:
        row = rows[i % n]
        t0 = clock()
        call(row)
        t1 = clock()
        latencies.append((t1 - t0) / 1e3)
        i += 1
        if i >= min_queries and t1 >= deadline:
            break
        if progress is not None and i % 1024 == 0:
            progress(min(1.0, max(i / min_queries, 1 - (deadline - t1) / (duration_s * 1e9))))
    return latencies


def warm_up(call: Callable[[Any], Any], rows: Sequence[Any], seconds: float) -> None:
    """Call on rows in turn, unmeasured, for ``seconds`` and at least 100 times."""
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or i < 100:
        call(rows[i % len(rows)])
        i += 1


def harness_overhead_us(rows: Sequence[Any]) -> float:
    """Median per-query cost of the measuring loop itself, around a model that does nothing.

    Examples
    --------
    >>> 0 < harness_overhead_us([0]) < 1e6
    True
    """
    return float(np.median(timed_loop(lambda row: None, rows, duration_s=0.05, min_queries=20_000, progress=None)))
