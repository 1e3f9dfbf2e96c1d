"""The offline scenario: batches back to back, rows per second for each batch size of a sweep.

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
from edge_runtime.bench.timing import Progress, ResourceUsage, ResourceWatch
from edge_runtime.runtime import Runtime

__all__ = ["OfflineEntry", "OfflineResult", "run_offline"]

_BATCHES_PER_SIZE = 8  # distinct batches cycled through, so that no batch is timed over and over alone
_MIN_CALLS = 5


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
    """

    batch: int
    runtime_rows_per_s: float
    raw_rows_per_s: float | None = None

    @property
    def runtime_vs_raw(self) -> float | None:
        """The runtime's throughput over the bare call's, when compared."""
        return None if self.raw_rows_per_s is None else self.runtime_rows_per_s / self.raw_rows_per_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the raw keys only when compared."""
        out: dict[str, Any] = {"batch": self.batch, "runtime_rows_per_s": self.runtime_rows_per_s}
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
                raw: Callable[[Any], Any] | None) -> OfflineResult:
    """Time ``Runtime.predict_batch`` (and ``raw`` on the same batches) at every batch size of the sweep.

    Parameters
    ----------
    runtime : Runtime
    rows : list
        Varied input rows, stacked into batches.
    settings : BenchSettings
        ``duration_s`` is shared out evenly between the batch sizes.
    progress : callable or None
        Called after each batch size.
    raw : callable or None
        The bare model call, taking feeds.

    Returns
    -------
    OfflineResult
    """
    watch = ResourceWatch()
    sweep = []
    seconds = settings.duration_s / len(settings.batch_sizes)
    for k, size in enumerate(settings.batch_sizes):
        batches = [_stack(rows, (j * size) % len(rows), size) for j in range(_BATCHES_PER_SIZE)]
        runtime_rate = _rows_per_s(runtime.predict_batch, batches, size, seconds)
        raw_rate = (_rows_per_s(raw, [raw_feeds(b, runtime) for b in batches], size, seconds)
                    if raw is not None else None)
        sweep.append(OfflineEntry(batch=size, runtime_rows_per_s=runtime_rate, raw_rows_per_s=raw_rate))
        if progress is not None:
            progress((k + 1) / len(settings.batch_sizes))
    return OfflineResult(sweep=tuple(sweep), usage=watch.done())


def _rows_per_s(call: Callable[[Any], Any], inputs: Sequence[Any], size: int, seconds: float) -> float:
    """Rows per second of ``call`` cycling through ``inputs`` for ``seconds`` and at least five calls."""
    call(inputs[0])  # unmeasured: onnxruntime plans its memory for a new input shape on the first run
    done, t0 = 0, time.perf_counter()
    while True:
        call(inputs[done % len(inputs)])
        done += 1
        if time.perf_counter() - t0 >= seconds and done >= _MIN_CALLS:
            break
    return done * size / (time.perf_counter() - t0)


def _stack(rows: list[Any], start: int, size: int) -> Any:
    chosen = [rows[(start + i) % len(rows)] for i in range(size)]
    return np.vstack(chosen) if isinstance(chosen[0], np.ndarray) else chosen
