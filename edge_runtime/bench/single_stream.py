"""The single-stream scenario: one query at a time, back to back, latency per query.

With ``compare_raw`` the same rows also go, block by block in turn, through the
bare onnxruntime call and the runtime without monitoring, so that the cost of
each layer shows as a ratio to the bare call.

Examples
--------
>>> from edge_runtime.bench.single_stream import LayerTiming
>>> from edge_runtime.bench.timing import percentiles
>>> stats, _ = percentiles([10.0] * 100)
>>> layer = LayerTiming(name="raw", latency=stats, queries=100, p50_vs_raw=1.0)
>>> layer.to_dict()["p50_us"], layer.to_dict()["p50_vs_raw"]
(10.0, 1.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bench.rows import raw_feeds
from edge_runtime.bench.settings import BenchSettings
from edge_runtime.bench.timing import (
    HARNESS_SHARE_LIMIT,
    Percentiles,
    Progress,
    ResourceUsage,
    ResourceWatch,
    harness_overhead_us,
    percentiles,
    stages,
    timed_loop,
    warm_up,
)
from edge_runtime.runtime import Runtime

__all__ = ["LayerTiming", "SingleStreamResult", "run_single_stream"]

_BLOCKS = 10
_SELF_CHECK_S = 0.1  # about what harness_overhead_us takes: its share of the progress bar


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerTiming:
    """The latency of one layer of the decision path, timed on the same rows as the others.

    Parameters
    ----------
    name : str
        What was called, e.g. ``"Runtime.predict (no monitoring)"``.
    latency : Percentiles
    queries : int
        Calls measured, over every block.
    p50_vs_raw : float or None
        Median latency over the bare onnxruntime call's (1.0 for the bare call itself).
    """

    name: str
    latency: Percentiles
    queries: int
    p50_vs_raw: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the name, which is its key in the report)."""
        return {**self.latency.to_dict(), "queries": self.queries, "p50_vs_raw": self.p50_vs_raw}


@dataclass(frozen=True, slots=True, kw_only=True)
class SingleStreamResult:
    """What a single-stream run measured.

    Parameters
    ----------
    queries : int
        Queries measured.
    usage : ResourceUsage
        The process's CPU share and memory over the measured run.
    latency : Percentiles
    harness_overhead_us : float
        Median cost of the measuring loop itself per query.
    notes : tuple of str
        Percentiles left out, and a warning when the harness costs more than 10% of the median.
    layers : tuple of LayerTiming
        With ``compare_raw``: the bare call, the runtime without monitoring and the full path, in that order.
    """

    queries: int
    usage: ResourceUsage
    latency: Percentiles
    harness_overhead_us: float
    notes: tuple[str, ...] = ()
    layers: tuple[LayerTiming, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, flat as ``edge-runtime bench --json`` prints it; ``layers`` only when compared."""
        out: dict[str, Any] = {"queries": self.queries, **self.usage.to_dict(), **self.latency.to_dict(),
                               "harness_overhead_us": self.harness_overhead_us, "notes": list(self.notes)}
        if self.layers:
            out["layers"] = {layer.name: layer.to_dict() for layer in self.layers}
        return out


def run_single_stream(runtime: Runtime, bundle: str | Path, rows: list[Any], settings: BenchSettings,
                      progress: Progress | None) -> SingleStreamResult:
    """Warm up, then time ``runtime.predict`` on one row after another.

    Parameters
    ----------
    runtime : Runtime
        The runtime measured, as configured for the device.
    bundle : str or Path
        Its bundle, opened a second time without monitoring when ``settings.compare_raw``.
    rows : list
        Varied input rows, used in turn.
    settings : BenchSettings
    progress : callable or None
        Called with the fraction of the planned time done: warm-up, measured
        run, the harness's self-check, and the layers compared.

    Returns
    -------
    SingleStreamResult
    """
    plain = _plain_runtime(runtime, bundle) if settings.compare_raw else None
    try:
        layers = _layers(runtime, plain, rows) if plain is not None else {}
        return _measure(runtime, rows, settings, progress, layers)
    finally:
        if plain is not None:
            plain.close()


def _measure(runtime: Runtime, rows: list[Any], settings: BenchSettings, progress: Progress | None,
             layers: dict[str, Callable[[Any], Any]]) -> SingleStreamResult:
    compare_s = len(layers) * min(settings.warmup_s, 0.5) + settings.duration_s if layers else 0.0
    warming, measuring, checking, comparing = stages(
        progress, [settings.warmup_s, settings.duration_s, _SELF_CHECK_S, compare_s])
    warm_up(runtime.predict, rows, settings.warmup_s, warming)
    watch = ResourceWatch()
    latencies = timed_loop(runtime.predict, rows, duration_s=settings.duration_s,
                           min_queries=settings.min_queries, progress=measuring)
    usage = watch.done()
    stats, notes = percentiles(latencies)
    # Measured after the usage is read, so that its 20,000 no-op calls stay out of the run's CPU share.
    overhead = harness_overhead_us(rows)
    if checking is not None:
        checking(1.0)
    if stats.p50_us and overhead > HARNESS_SHARE_LIMIT * stats.p50_us:
        notes.append(f"the harness itself costs {overhead:.2f} us per query, more than 10% of the "
                     f"measured p50 ({stats.p50_us:.2f} us): treat the numbers as upper bounds")
    compared = _compare_layers(layers, rows, settings, comparing) if layers else ()
    return SingleStreamResult(queries=len(latencies), usage=usage, latency=stats, harness_overhead_us=overhead,
                              notes=tuple(notes), layers=compared)


def _compare_layers(layers: dict[str, Callable[[Any], Any]], rows: list[Any], settings: BenchSettings,
                    progress: Progress | None) -> tuple[LayerTiming, ...]:
    """Alternate the layers block by block on the same rows; medians and ratios to the first (raw)."""
    # Alternating blocks rather than one run per layer, so that a slow phase of
    # the machine (another process, thermal throttling) hits every layer alike.
    per_block = max(200, settings.min_queries // _BLOCKS)
    block_s = settings.duration_s / _BLOCKS / max(len(layers), 1)
    timings: dict[str, list[float]] = {name: [] for name in layers}
    warm_s = min(settings.warmup_s, 0.5)
    parts = iter(stages(progress, [warm_s] * len(layers) + [block_s] * _BLOCKS * len(layers)))
    for call in layers.values():
        warm_up(call, rows, warm_s, next(parts))
    for _ in range(_BLOCKS):
        for name, call in layers.items():
            timings[name] += timed_loop(call, rows, duration_s=block_s, min_queries=per_block, progress=next(parts))
    base = float(np.median(timings[next(iter(layers))]))
    out = []
    for name, values in timings.items():
        stats, _ = percentiles(values)
        out.append(LayerTiming(name=name, latency=stats, queries=len(values),
                               p50_vs_raw=(stats.p50_us or 0.0) / base if base else None))
    return tuple(out)


def _plain_runtime(runtime: Runtime, bundle: str | Path) -> Runtime:
    """The same bundle and session options, without monitoring or budgets."""
    config = runtime.config
    return Runtime(bundle, config=dataclasses.replace(
        config, monitoring=dataclasses.replace(config.monitoring, db=None),
        budgets=dataclasses.replace(config.budgets, latency_ms=0.0, cpu_share=0.0, rss_mb=0.0)))


def _layers(runtime: Runtime, plain: Runtime, rows: list[Any]) -> dict[str, Callable[[Any], Any]]:
    """The bare model call, the runtime without monitoring, and the full decision path."""
    session = plain.session
    # Feeds prepared in advance: a hand-written caller would not encode per call either.
    feeds = {id(row): raw_feeds([row], plain) for row in rows}
    return {
        "raw onnxruntime InferenceSession.run": lambda row: session.raw_run(feeds[id(row)]),
        "Runtime.predict (no monitoring)": plain.predict,
        "Runtime.predict (monitoring + log)": runtime.predict,
    }
