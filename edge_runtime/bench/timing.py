"""How a benchmark measures: timed loops, percentiles that refuse to guess, the harness's own cost, resources.

A percentile is reported only when enough queries ran for it (10 / (1 - p):
1,000 for p99); otherwise it is None and a note says so. Progress is reported
as the fraction of the planned work done (:class:`ProgressTracker`,
:func:`stages`): it never goes back and reaches 1.0 only when the run ends.

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

__all__ = ["HARNESS_SHARE_LIMIT", "P99_QUERIES", "Percentiles", "Progress", "ProgressTracker", "ResourceUsage",
           "ResourceWatch", "cpu_wait_s", "harness_overhead_us", "percentiles", "stages", "timed_loop", "warm_up"]

HARNESS_SHARE_LIMIT = 0.10
"""The harness's share of a measured latency above which a note warns that the numbers are upper bounds."""

Progress = Callable[[float], None]
"""Called with the completed fraction (0 to 1) of a long run."""

_PERCENTILES = (50.0, 90.0, 99.0, 99.9)

P99_QUERIES = 1000
"""The fewest queries a p99 is reported from: 10 / (1 - 0.99)."""

_BEFORE_END = 0.999  # the highest fraction reported before the run has really ended
_PROGRESS_EVERY = 256  # calls between two progress reports of a timed loop


class ProgressTracker:
    """The completed fraction of a whole run, as a progress bar shows it.

    Passes fractions on to ``report`` only when they grow, and holds them
    below 1.0 until :meth:`finish`: a bar never goes back, and never shows
    100% while work remains, whatever a stage's estimate says.

    Parameters
    ----------
    report : callable or None
        Called with each new fraction.

    Examples
    --------
    >>> seen = []
    >>> track = ProgressTracker(seen.append)
    >>> track(0.5); track(0.4); track(1.0); track.finish()
    >>> seen
    [0.5, 0.999, 1.0]
    """

    def __init__(self, report: Progress | None) -> None:
        self._report = report
        self.fraction = 0.0

    def __call__(self, fraction: float) -> None:
        fraction = min(float(fraction), _BEFORE_END)
        if fraction > self.fraction:
            self.fraction = fraction
            if self._report is not None:
                self._report(fraction)

    def finish(self) -> None:
        """The run has ended: report 1.0."""
        self.fraction = 1.0
        if self._report is not None:
            self._report(1.0)


def stages(progress: Progress | None, weights: Sequence[float]) -> list[Progress | None]:
    """Split a progress callback into one per stage, each stage's 0 to 1 mapped onto its share of the whole.

    Parameters
    ----------
    progress : callable or None
        The whole run's callback (None: every stage gets None).
    weights : sequence of float
        Each stage's planned work, e.g. its planned seconds.

    Returns
    -------
    list
        One callback per stage, in order.

    Examples
    --------
    >>> seen = []
    >>> warm, run = stages(seen.append, [1.0, 3.0])
    >>> warm(1.0); run(0.5); run(2.0)
    >>> seen
    [0.25, 0.625, 1.0]
    """
    if progress is None:
        return [None] * len(weights)
    total = float(sum(weights)) or 1.0
    out: list[Progress | None] = []
    done = 0.0
    for weight in weights:
        out.append(_span(progress, done / total, (done + weight) / total))
        done += weight
    return out


def _span(progress: Progress, start: float, end: float) -> Progress:
    return lambda fraction: progress(start + (end - start) * min(max(fraction, 0.0), 1.0))


def cpu_wait_s() -> float | None:
    """Seconds the calling thread has spent runnable but waiting for a CPU, since it started.

    Read from ``/proc/thread-self/schedstat`` (Linux): the time other processes
    held the CPUs while this thread had work. None where the kernel does not say.

    Examples
    --------
    >>> wait = cpu_wait_s()
    >>> wait is None or wait >= 0
    True
    """
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


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
               progress: Progress | None, clock: Callable[[], int] = time.perf_counter_ns) -> list[float]:
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
        Called every 256 calls with the completed fraction: the lesser of the
        time and the count done, since the loop ends only when both are.
    clock : callable
        Nanoseconds, ``time.perf_counter_ns`` unless a test drives the loop.

    Returns
    -------
    list of float
        The latency of each call, in microseconds.

    Examples
    --------
    >>> ticks = iter(range(0, 10**9, 1000))  # a clock that moves 1 us per reading
    >>> seen = []
    >>> len(timed_loop(lambda row: None, [0], duration_s=0.002, min_queries=300, progress=seen.append,
    ...                clock=lambda: next(ticks)))
    1000
    >>> seen  # by time: 1,000 calls of 2 us make up the 2 ms planned
    [0.256, 0.512, 0.768]
    """
    start = clock()
    deadline = start + int(duration_s * 1e9)
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
        if progress is not None and i % _PROGRESS_EVERY == 0:
            # The lesser of the two: the loop ends only when both the time and the count are done.
            progress(min(i / min_queries, (t1 - start) / (duration_s * 1e9)))
    return latencies


def warm_up(call: Callable[[Any], Any], rows: Sequence[Any], seconds: float,
            progress: Progress | None = None) -> None:
    """Call on rows in turn, unmeasured, for ``seconds`` and at least 100 times."""
    begin = time.perf_counter()
    end = begin + seconds
    i = 0
    while True:
        now = time.perf_counter()
        if now >= end and i >= 100:
            break
        call(rows[i % len(rows)])
        i += 1
        if progress is not None and i % _PROGRESS_EVERY == 0 and seconds > 0:
            progress(min(i / 100, (now - begin) / seconds))


def harness_overhead_us(rows: Sequence[Any]) -> float:
    """Median per-query cost of the measuring loop itself, around a model that does nothing.

    Examples
    --------
    >>> 0 < harness_overhead_us([0]) < 1e6
    True
    """
    return float(np.median(timed_loop(lambda row: None, rows, duration_s=0.05, min_queries=20_000, progress=None)))
