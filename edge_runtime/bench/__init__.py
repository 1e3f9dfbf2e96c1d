"""Benchmarks modeled on MLPerf LoadGen: single-stream, server, offline and cold-start.

Method, for every scenario: varied input rows (a CSV, or rows drawn from the
bundle's reference profile; never one repeated row), a warm-up, then a run
that lasts at least ``duration_s`` AND at least ``min_queries`` queries. A
percentile is reported only when enough queries ran for it (10 / (1 - p):
1,000 for p99); otherwise it is None and a note says so. The process's CPU
share and peak RSS are measured around the run, and a self-check times the
harness on a no-op model and warns when it costs more than 10% of the
measured latency.

Examples
--------
>>> import tempfile, numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from converters import export
>>> from edge_runtime.bench import BenchSettings, run_benchmark
>>> X = np.random.default_rng(0).normal(size=(300, 4)); y = (X[:, 0] > 0).astype(int)
>>> path = export(LogisticRegression().fit(X, y), X, y, name="b", version="1",
...               out_dir=tempfile.mkdtemp() + "/b").path
>>> report = run_benchmark(path, BenchSettings(scenario="single-stream", duration_s=0.2, min_queries=200))
>>> report["scenario"], report["results"]["queries"] >= 200, report["results"]["p50_us"] > 0
('single-stream', True, True)
"""

from __future__ import annotations

import dataclasses
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edge_runtime
from edge_runtime.config import RuntimeConfig, load_config
from edge_runtime.errors import ConfigError, OverloadError
from edge_runtime.monitoring.data_profile import Profile, load_reference
from edge_runtime.budgets.resources import ProcessMeter, machine_info
from edge_runtime.serving.session import onnxruntime_version
from edge_runtime.runtime import Runtime
from edge_runtime.serving.schema import FeatureKind, InputLayout, InputSchema
from edge_runtime.monitoring.sketches import CategoricalSketch, NumericSketch

__all__ = ["SCENARIOS", "BenchSettings", "percentiles", "reference_rows", "run_benchmark"]

SCENARIOS = ("single-stream", "server", "offline", "cold-start")
_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_HARNESS_SHARE_LIMIT = 0.10
Progress = Callable[[float], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchSettings:
    """What to run.

    Parameters
    ----------
    scenario : str
        One of :data:`SCENARIOS`.
    duration_s : float
        Minimum measured time (per batch size for offline, per probe for a max-QPS search).
    min_queries : int
        Minimum measured queries (single-stream, server).
    warmup_s : float
        Unmeasured run before measuring.
    qps : float
        Server scenario: mean Poisson arrival rate.
    find_max_qps : bool
        Server scenario: search the highest rate whose p99 holds the latency budget.
    budget_ms : float or None
        Server scenario latency bound (default: the config's latency budget).
    compare_raw : bool
        Also run raw onnxruntime on the same rows, alternating, and the runtime
        without monitoring; report ratios.
    batch_sizes : tuple of int
        Offline scenario sweep.
    seed : int
        Seed of the rows drawn from the profile and of the arrival times.
    """

    scenario: str = "single-stream"
    duration_s: float = 10.0
    min_queries: int = 1024
    warmup_s: float = 1.0
    qps: float = 100.0
    find_max_qps: bool = False
    budget_ms: float | None = None
    compare_raw: bool = False
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128, 512)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"The 'scenario' parameter must be one of {', '.join(SCENARIOS)}. "
                              f"Got {self.scenario!r} instead.")
        if not self.duration_s > 0 or self.min_queries < 1 or not self.qps > 0 or self.warmup_s < 0:
            raise ConfigError("duration, queries and qps must be positive")


# ------------------------------------------------------------------ inputs
def reference_rows(schema: InputSchema, profile: Profile | None, n: int, seed: int) -> list[Any]:
    """Draw ``n`` varied rows from the reference profile, each feature from its own distribution.

    Numeric features by inverse-CDF sampling of their quantile sketch, categorical
    ones by their training frequencies. Without a profile, uniform within the
    schema's training range.
    """
    rng = np.random.default_rng(seed)
    columns: list[np.ndarray] = []
    for spec in schema.features:
        sketch = profile.features.get(spec.name) if profile is not None else None
        if spec.kind is FeatureKind.CATEGORICAL:
            if isinstance(sketch, CategoricalSketch) and sketch.counts:
                keys = list(sketch.counts)
                weights = np.array([sketch.counts[k] for k in keys], dtype=float)
                columns.append(rng.choice(np.array(keys, dtype=object), size=n, p=weights / weights.sum()))
            else:
                columns.append(rng.choice(np.array(spec.categories or ("",), dtype=object), size=n))
        elif isinstance(sketch, NumericSketch) and sketch.count:
            columns.append(sketch.quantiles(np.sort(rng.random(n)))[rng.permutation(n)])
        else:
            low = spec.minimum if spec.minimum is not None else 0.0
            high = spec.maximum if spec.maximum is not None else 1.0
            columns.append(rng.uniform(low, high, n))
    if schema.layout is InputLayout.TENSOR:
        matrix = np.column_stack(columns).astype(np.float64)
        return [matrix[i] for i in range(n)]
    return [dict(zip(schema.names, (_plain(c[i]) for c in columns))) for i in range(n)]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# -------------------------------------------------------------- statistics
def percentiles(latencies_us: Sequence[float]) -> tuple[dict[str, float | None], list[str]]:
    """p50/p90/p99/p99.9/max in microseconds, None where too few queries ran, and notes saying so.

    >>> values, notes = percentiles(list(range(1, 201)))
    >>> values["p50_us"], values["p99_us"], notes
    (100.5, None, ['p99 needs at least 1000 queries, 200 ran', 'p99.9 needs at least 10000 queries, 200 ran'])
    """
    data = np.asarray(latencies_us, dtype=np.float64)
    out: dict[str, float | None] = {}
    notes = []
    for p in _PERCENTILES:
        key = f"p{p:g}_us"
        needed = round(10 / (1 - p / 100))  # 100 for p90, 1000 for p99, 10000 for p99.9
        if data.size >= needed:
            out[key] = float(np.percentile(data, p))
        else:
            out[key] = None
            if p > 50:
                notes.append(f"p{p:g} needs at least {needed} queries, {data.size} ran")
    out["max_us"] = float(data.max()) if data.size else None
    out["mean_us"] = float(data.mean()) if data.size else None
    return out, notes


class _Resources:
    """CPU share and peak RSS of this process around a measured run."""

    def __init__(self) -> None:
        self._meter = ProcessMeter()
        self._wall = time.perf_counter()
        self._cpu = self._meter.cpu_seconds()

    def done(self) -> dict[str, float]:
        wall = time.perf_counter() - self._wall
        cpu = self._meter.cpu_seconds() - self._cpu
        # ru_maxrss is in KiB on Linux: the peak over the process's life.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"cpu_share": cpu / wall if wall > 0 else 0.0, "peak_rss_mb": peak / 1e6,
                "rss_mb": self._meter.rss_bytes() / 1e6}


def _timed_loop(call: Callable[[Any], Any], rows: Sequence[Any], settings: BenchSettings,
                progress: Progress | None) -> list[float]:
    """Call on rows in turn until both the minimum time and the minimum count are reached."""
    clock = time.perf_counter_ns
    deadline = clock() + int(settings.duration_s * 1e9)
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
        if i >= settings.min_queries and t1 >= deadline:
            break
        if progress is not None and i % 1024 == 0:
            progress(min(1.0, max(i / settings.min_queries, 1 - (deadline - t1) / (settings.duration_s * 1e9))))
    return latencies


def _warm(call: Callable[[Any], Any], rows: Sequence[Any], seconds: float) -> None:
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or i < 100:
        call(rows[i % len(rows)])
        i += 1


def _harness_overhead_us(rows: Sequence[Any]) -> float:
    """Median per-query cost of the measuring loop itself, around a model that does nothing."""
    settings = BenchSettings(duration_s=0.05, min_queries=20_000, warmup_s=0)
    return float(np.median(_timed_loop(lambda row: None, rows, settings, None)))


# --------------------------------------------------------------- scenarios
def _single_stream(runtime: Runtime, rows: list[Any], settings: BenchSettings, progress: Progress | None,
                   layers: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    _warm(runtime.predict, rows, settings.warmup_s)
    usage = _Resources()
    latencies = _timed_loop(runtime.predict, rows, settings, progress)
    results: dict[str, Any] = {"queries": len(latencies), **usage.done()}
    stats, notes = percentiles(latencies)
    results.update(stats)
    overhead = _harness_overhead_us(rows)
    results["harness_overhead_us"] = overhead
    if stats["p50_us"] and overhead > _HARNESS_SHARE_LIMIT * stats["p50_us"]:
        notes.append(f"the harness itself costs {overhead:.2f} us per query, more than 10% of the "
                     f"measured p50 ({stats['p50_us']:.2f} us): treat the numbers as upper bounds")
    results["notes"] = notes
    if layers:
        results["layers"] = _compare_layers(layers, rows, settings)
    return results


def _compare_layers(layers: dict[str, Callable[[Any], Any]], rows: list[Any],
                    settings: BenchSettings) -> dict[str, Any]:
    """Alternate the layers block by block on the same rows; medians and ratios to the first (raw)."""
    blocks = 10
    per_block = max(200, settings.min_queries // blocks)
    timings: dict[str, list[float]] = {name: [] for name in layers}
    block_settings = BenchSettings(duration_s=settings.duration_s / blocks / max(len(layers), 1),
                                   min_queries=per_block, warmup_s=0)
    for call in layers.values():
        _warm(call, rows, min(settings.warmup_s, 0.5))
    for _ in range(blocks):
        for name, call in layers.items():
            timings[name] += _timed_loop(call, rows, block_settings, None)
    base = float(np.median(timings[next(iter(layers))]))
    out = {}
    for name, values in timings.items():
        stats, _ = percentiles(values)
        stats["queries"] = len(values)
        stats["p50_vs_raw"] = (stats["p50_us"] or 0.0) / base if base else None
        out[name] = stats
    return out


def _server_run(runtime: Runtime, rows: list[Any], qps: float, settings: BenchSettings,
                progress: Progress | None) -> dict[str, Any]:
    """Poisson arrivals at ``qps``, one query at a time; latency counts from the scheduled arrival."""
    rng = np.random.default_rng(settings.seed)
    count = max(settings.min_queries, int(math.ceil(qps * settings.duration_s)))
    arrivals = np.cumsum(rng.exponential(1.0 / qps, count))
    latencies, service, refused, late = [], [], 0, []
    usage = _Resources()
    start = time.perf_counter()
    idle = True
    for i, due in enumerate(arrivals):
        wait = start + due - time.perf_counter()
        if wait > 0:
            # Sleep, never spin: a spinning harness would burn the CPU share that
            # the budgets measure. Late wake-ups are reported as harness_late_p99_us.
            time.sleep(wait)
        issued = time.perf_counter()
        if idle:  # the runtime was waiting: any delay now is the harness's
            late.append((issued - (start + due)) * 1e6)
        try:
            result = runtime.predict(rows[i % len(rows)])
        except OverloadError:
            refused += 1
            continue
        if getattr(result, "deferred", False):
            refused += 1
            continue
        finished = time.perf_counter()
        latencies.append((finished - (start + due)) * 1e6)
        service.append((finished - issued) * 1e6)
        idle = i + 1 >= len(arrivals) or finished <= start + arrivals[i + 1]
        if progress is not None and i % 256 == 0:
            progress(i / count)
    elapsed = time.perf_counter() - start
    stats, notes = percentiles(latencies)
    harness_late = float(np.percentile(late, 99)) if late else 0.0
    p99 = stats.get("p99_us")
    if p99 and harness_late > _HARNESS_SHARE_LIMIT * p99:
        notes.append(f"the harness issued queries up to {harness_late:.1f} us late (p99) while the runtime was "
                     f"idle, more than 10% of the measured p99")
    return {"target_qps": qps, "achieved_qps": len(latencies) / elapsed, "queries": int(count),
            "answered": len(latencies), "refused": refused, **stats, "harness_late_p99_us": harness_late,
            "service_p99_us": float(np.percentile(service, 99)) if service else None,
            **usage.done(), "notes": notes}


def _server(runtime: Runtime, rows: list[Any], settings: BenchSettings, progress: Progress | None,
            budget_ms: float | None) -> dict[str, Any]:
    _warm(runtime.predict, rows, settings.warmup_s)
    if not settings.find_max_qps:
        result = _server_run(runtime, rows, settings.qps, settings, progress)
        return _judge(result, budget_ms)
    if budget_ms is None:
        raise ConfigError("--find-max-qps needs a latency budget: --budget-ms or [budgets] latency_ms")
    # Bracket then bisect on the rate whose p99 still holds the budget.
    low, high, best = 0.0, settings.qps, None
    probes = []
    for _ in range(12):
        result = _judge(_server_run(runtime, rows, high, settings, None), budget_ms)
        probes.append({k: result[k] for k in ("target_qps", "p99_us", "met_budget", "refused")})
        if not result["met_budget"]:
            break
        low, best, high = high, result, high * 2
    for _ in range(6):
        if high - low <= max(1.0, 0.05 * high):
            break
        mid = (low + high) / 2
        result = _judge(_server_run(runtime, rows, mid, settings, None), budget_ms)
        probes.append({k: result[k] for k in ("target_qps", "p99_us", "met_budget", "refused")})
        if result["met_budget"]:
            low, best = mid, result
        else:
            high = mid
        if progress is not None:
            progress(0.5)
    return {"max_qps": low if best else None, "at_max_qps": best, "probes": probes, "budget_ms": budget_ms}


def _judge(result: dict[str, Any], budget_ms: float | None) -> dict[str, Any]:
    result["budget_ms"] = budget_ms
    p99 = result.get("p99_us")
    result["met_budget"] = None if budget_ms is None or p99 is None else bool(p99 <= budget_ms * 1000)
    return result


def _offline(runtime: Runtime, rows: list[Any], settings: BenchSettings, progress: Progress | None,
             raw: Callable[[Any], Any] | None) -> dict[str, Any]:
    usage = _Resources()
    sweep = []
    for k, size in enumerate(settings.batch_sizes):
        batches = [_stack(rows, (j * size) % len(rows), size, runtime) for j in range(8)]
        measured = {"runtime": lambda b: runtime.predict_batch(b)}
        if raw is not None:
            measured["raw"] = raw
        entry: dict[str, Any] = {"batch": size}
        for name, call in measured.items():
            inputs = batches if name == "runtime" else [_raw_feeds(b, runtime) for b in batches]
            call(inputs[0])
            done, t0 = 0, time.perf_counter()
            while True:
                call(inputs[done % len(inputs)])
                done += 1
                if time.perf_counter() - t0 >= settings.duration_s / len(settings.batch_sizes) and done >= 5:
                    break
            entry[f"{name}_rows_per_s"] = done * size / (time.perf_counter() - t0)
        if raw is not None:
            entry["runtime_vs_raw"] = entry["runtime_rows_per_s"] / entry["raw_rows_per_s"]
        sweep.append(entry)
        if progress is not None:
            progress((k + 1) / len(settings.batch_sizes))
    best = max(sweep, key=lambda e: e["runtime_rows_per_s"])
    return {"sweep": sweep, "best_batch": best["batch"], "best_rows_per_s": best["runtime_rows_per_s"],
            **usage.done()}


def _stack(rows: list[Any], start: int, size: int, runtime: Runtime) -> Any:
    chosen = [rows[(start + i) % len(rows)] for i in range(size)]
    return np.vstack(chosen) if isinstance(chosen[0], np.ndarray) else chosen


def _raw_feeds(batch: Any, runtime: Runtime) -> dict[str, np.ndarray]:
    """What a hand-written onnxruntime caller would feed: float32 arrays, prepared in advance."""
    return runtime.encode(batch).feeds  # the same layout the runtime builds


_COLD_START = """
import json, sys, time
start = time.perf_counter()
from edge_runtime import Runtime
import_done = time.perf_counter()
runtime = Runtime(sys.argv[1], config=sys.argv[2] or None)
row = json.loads(sys.argv[3])
runtime.predict(row)
answer = time.perf_counter()
from edge_runtime.budgets.resources import ProcessMeter
print(json.dumps({"import_ms": (import_done - start) * 1e3, "load_and_answer_ms": (answer - import_done) * 1e3,
                  "rss_mb": ProcessMeter().rss_bytes() / 1e6}), flush=True)
"""


def _cold_start(bundle: Path, config: Path | None, row: Any, runs: int = 5) -> dict[str, Any]:
    """From process launch to the first answer, in fresh interpreters."""
    payload = json.dumps(row.tolist() if isinstance(row, np.ndarray) else row)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", _COLD_START, str(bundle), str(config or ""), payload],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        line = child.stdout.readline()
        first = (time.perf_counter() - t0) * 1e3
        child.wait(timeout=120)
        if child.returncode != 0 or not line:
            raise ConfigError(f"the cold-start child failed: {child.stderr.read() if child.stderr else ''}")
        samples.append({"first_answer_ms": first, **json.loads(line)})
    keys = samples[0].keys()
    median = {k: float(np.median([s[k] for s in samples])) for k in keys}
    return {"runs": runs, **median, "max_first_answer_ms": max(s["first_answer_ms"] for s in samples)}


# ------------------------------------------------------------------- entry
def run_benchmark(bundle: str | Path, settings: BenchSettings, *, config: RuntimeConfig | str | Path | None = None,
                  rows: list[Any] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run one scenario on a bundle and return a JSON-ready report.

    Parameters
    ----------
    bundle : str or Path
    settings : BenchSettings
    config : RuntimeConfig, str or Path, optional
        The device config (budgets, monitoring). With ``compare_raw`` and no
        monitoring database configured, the monitored layer uses a temporary one.
    rows : list, optional
        Input rows (arrays in schema order or dicts); default: drawn from the reference profile.
    progress : callable, optional
        Called with the completed fraction on long runs.
    """
    config_path = Path(config) if isinstance(config, (str, Path)) else None
    runtime_config = load_config(config) if isinstance(config, (str, Path)) else (config or RuntimeConfig())
    with tempfile.TemporaryDirectory() as tmp:
        if settings.compare_raw and runtime_config.monitoring.db is None:
            runtime_config = dataclasses.replace(runtime_config, monitoring=dataclasses.replace(
                runtime_config.monitoring, db=Path(tmp) / "bench.db"))
        with Runtime(bundle, config=runtime_config) as runtime:
            if rows is None:
                rows = reference_rows(runtime.manifest.input_schema, load_reference(runtime.bundle), 4096,
                                      settings.seed)
            report: dict[str, Any] = {
                "scenario": settings.scenario,
                "settings": {k: v for k, v in dataclasses.asdict(settings).items()},
                "model": {"name": runtime.info.name, "version": runtime.info.version,
                          "sha256": runtime.model_sha256},
                "machine": machine_info(),
                "versions": {"edge_runtime": edge_runtime.__version__, "onnxruntime": onnxruntime_version(),
                             "numpy": np.__version__},
                "monitoring": runtime.monitor is not None,
                "rows": len(rows),
            }
            budget_ms = settings.budget_ms or (runtime_config.budgets.latency_ms or None)
            if settings.scenario == "single-stream":
                plain = _plain_runtime(runtime, bundle) if settings.compare_raw else None
                layers = _layers(runtime, plain, rows) if plain is not None else {}
                try:
                    report["results"] = _single_stream(runtime, rows, settings, progress, layers)
                finally:
                    if plain is not None:
                        plain.close()
            elif settings.scenario == "server":
                report["results"] = _server(runtime, rows, settings, progress, budget_ms)
            elif settings.scenario == "offline":
                raw = _raw_call(runtime) if settings.compare_raw else None
                report["results"] = _offline(runtime, rows, settings, progress, raw)
            else:
                report["results"] = _cold_start(Path(bundle), config_path, rows[0])
            if runtime.governor is not None:
                report["budget"] = runtime.governor.state().to_dict()
    return report


def _raw_call(runtime: Runtime) -> Callable[[Any], Any]:
    return runtime.session.raw_run


def _plain_runtime(runtime: Runtime, bundle: str | Path) -> Runtime:
    """The same bundle and session options, without monitoring or budgets."""
    return Runtime(bundle, config=dataclasses.replace(runtime.config, monitoring=dataclasses.replace(
        runtime.config.monitoring, db=None), budgets=dataclasses.replace(runtime.config.budgets, latency_ms=0.0,
                                                                          cpu_share=0.0, rss_mb=0.0)))


def _layers(runtime: Runtime, plain: Runtime, rows: list[Any]) -> dict[str, Callable[[Any], Any]]:
    """The bare model call, the runtime without monitoring, and the full decision path."""
    session = plain.session
    feeds = {id(row): _raw_feeds([row], plain) for row in rows}
    return {
        "raw onnxruntime InferenceSession.run": lambda row: session.raw_run(feeds[id(row)]),
        "Runtime.predict (no monitoring)": plain.predict,
        "Runtime.predict (monitoring + log)": runtime.predict,
    }
