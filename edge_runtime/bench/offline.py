"""The offline scenario: batches back to back, rows per second for each batch size of a sweep.

Each batch size is timed for ``duration_s`` (and at least five calls), and
raw onnxruntime as long again with ``compare_raw``: a sweep of five sizes at
``duration_s=10`` takes at least 50 s, or 100 s compared.

Examples
--------
>>> from edge_runtime.bench.offline import OfflineEntry
>>> OfflineEntry(batch=8, runtime_rows_per_s=4000.0).to_dict()
{'batch': 8, 'runtime_rows_per_s': 4000.0}
>>> OfflineEntry(batch=8, runtime_rows_per_s=4000.0, raw_rows_per_s=5000.0).to_dict()
{'batch': 8, 'runtime_rows_per_s': 4000.0, 'raw_rows_per_s': 5000.0, 'runtime_vs_raw': 0.8}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.bench.rows import raw_feeds
from edge_runtime.bench.settings import BenchSettings
from edge_runtime.bench.timing import Progress, ResourceUsage, ResourceWatch, stages
from edge_runtime.runtime import Runtime

__all__ = ["OfflineEntry", "OfflineResult", "run_offline"]

_BATCHES_PER_SIZE = 8  # distinct batches cycled through, so that no batch is timed over and over alone
_MIN_CALLS = 5
_REPORT_EVERY_S = 0.25  # seconds between two progress reports within a timed stretch


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineEntry:
    """The throughput at one batch size.

    Parameters
    ----------
    batch : int
        Rows per call.
    runtime_rows_per_s : float
        Through ``Runtime.predict_batch``.
    raw_rows_per_s : float or None
        Through the bare onnxruntime call on feeds prepared in advance (with ``compare_raw``).
    runtime_s : float or None
        Seconds ``Runtime.predict_batch`` was timed for at this size.
    """

    batch: int
    runtime_rows_per_s: float
    raw_rows_per_s: float | None = None
    runtime_s: float | None = None

    @property
    def runtime_vs_raw(self) -> float | None:
        """The runtime's throughput over the bare call's, when compared."""
        return None if self.raw_rows_per_s is None else self.runtime_rows_per_s / self.raw_rows_per_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the raw keys only when compared."""
        out: dict[str, Any] = {"batch": self.batch, "runtime_rows_per_s": self.runtime_rows_per_s}
        if self.runtime_s is not None:
            out["runtime_s"] = self.runtime_s
        if self.raw_rows_per_s is not None:
            out["raw_rows_per_s"] = self.raw_rows_per_s
            out["runtime_vs_raw"] = self.runtime_vs_raw
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineResult:
    """What an offline sweep measured.

    Parameters
    ----------
    sweep : tuple of OfflineEntry
        One per batch size, in the order of the settings.
    usage : ResourceUsage
        The process's CPU share and memory over the whole sweep.
    """

    sweep: tuple[OfflineEntry, ...]
    usage: ResourceUsage

    @property
    def best(self) -> OfflineEntry:
        """The entry with the highest runtime throughput (the first of equals)."""
        return max(self.sweep, key=lambda entry: entry.runtime_rows_per_s)

    @property
    def best_batch(self) -> int:
        """The batch size of :attr:`best`."""
        return self.best.batch

    @property
    def best_rows_per_s(self) -> float:
        """The runtime throughput of :attr:`best`."""
        return self.best.runtime_rows_per_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, flat as ``edge-runtime bench --json`` prints it."""
        return {"sweep": [entry.to_dict() for entry in self.sweep], "best_batch": self.best_batch,
                "best_rows_per_s": self.best_rows_per_s, **self.usage.to_dict()}


def run_offline(runtime: Runtime, rows: list[Any], settings: BenchSettings, progress: Progress | None,
                raw: Callable[[Any], Any] | None, clock: Callable[[], float] = time.perf_counter) -> OfflineResult:
    """Time ``Runtime.predict_batch`` (and ``raw`` on the same batches) at every batch size of the sweep.

    Parameters
    ----------
    runtime : Runtime
    rows : list
        Varied input rows, stacked into batches.
    settings : BenchSettings
        ``duration_s`` is spent on each batch size, and again on ``raw`` there.
    progress : callable or None
        Called with the fraction of the planned time done.
    raw : callable or None
        The bare model call, taking feeds.
    clock : callable
        Seconds, ``time.perf_counter`` unless a test drives the sweep.

    Returns
    -------
    OfflineResult
    """
    watch = ResourceWatch()
    sweep = []
    paths = 2 if raw is not None else 1
    parts = iter(stages(progress, [settings.duration_s] * len(settings.batch_sizes) * paths))
    for size in settings.batch_sizes:
        batches = [_stack(rows, (j * size) % len(rows), size) for j in range(_BATCHES_PER_SIZE)]
        runtime_rate, runtime_s = _rows_per_s(runtime.predict_batch, batches, size, settings.duration_s,
                                              next(parts), clock)
        raw_rate = None
        if raw is not None:
            raw_rate, _ = _rows_per_s(raw, [raw_feeds(b, runtime) for b in batches], size, settings.duration_s,
                                      next(parts), clock)
        sweep.append(OfflineEntry(batch=size, runtime_rows_per_s=runtime_rate, raw_rows_per_s=raw_rate,
                                  runtime_s=runtime_s))
    return OfflineResult(sweep=tuple(sweep), usage=watch.done())


def _rows_per_s(call: Callable[[Any], Any], inputs: Sequence[Any], size: int, seconds: float,
                progress: Progress | None, clock: Callable[[], float]) -> tuple[float, float]:
    """Rows per second of ``call`` cycling through ``inputs`` for ``seconds`` and at least five calls, and the time."""
    call(inputs[0])  # unmeasured: onnxruntime plans its memory for a new input shape on the first run
    done, t0 = 0, clock()
    next_report = t0 + _REPORT_EVERY_S
    while True:
        call(inputs[done % len(inputs)])
        done += 1
        now = clock()
        if now - t0 >= seconds and done >= _MIN_CALLS:
            break
        if progress is not None and now >= next_report:
            progress(min((now - t0) / seconds, done / _MIN_CALLS))
            next_report = now + _REPORT_EVERY_S
    return done * size / (now - t0), now - t0


def _stack(rows: list[Any], start: int, size: int) -> Any:
    chosen = [rows[(start + i) % len(rows)] for i in range(size)]
    return np.vstack(chosen) if isinstance(chosen[0], np.ndarray) else chosen
