"""Benchmarks modeled on MLPerf LoadGen: single-stream, server, offline and cold-start.

Method, for every scenario: varied input rows (a CSV, or rows drawn from the
bundle's reference profile; never one repeated row), a warm-up, then a run
that lasts at least ``duration_s`` AND at least ``min_queries`` queries. A
percentile is reported only when enough queries ran for it (10 / (1 - p):
1,000 for p99); otherwise it is None and a note says so. The process's CPU
share and peak RSS are measured around the run, and a self-check times the
harness on a no-op model and warns when it costs more than 10% of the
measured latency.

Modules, lower first (imports point up this list only):

- :mod:`~edge_runtime.bench.settings`: :class:`BenchSettings`, :data:`SCENARIOS`
- :mod:`~edge_runtime.bench.rows`: the varied input rows
- :mod:`~edge_runtime.bench.timing`: timed loops, percentiles, harness overhead, resources, progress
- :mod:`~edge_runtime.bench.single_stream`, :mod:`~edge_runtime.bench.server`,
  :mod:`~edge_runtime.bench.offline`, :mod:`~edge_runtime.bench.cold_start`: one scenario each, with its result
- :mod:`~edge_runtime.bench.max_qps`: the max-QPS search over server runs (its method is in its docstring)
- :mod:`~edge_runtime.bench.report`: :class:`BenchReport`, the typed report and its JSON form
- :mod:`~edge_runtime.bench.run`: :func:`run_benchmark`

Examples
--------
>>> import tempfile, numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from converters import export
>>> from edge_runtime.bench import BenchSettings, SingleStreamResult, run_benchmark
>>> X = np.random.default_rng(0).normal(size=(300, 4)); y = (X[:, 0] > 0).astype(int)
>>> path = export(LogisticRegression().fit(X, y), X, y, name="b", version="1",
...               out_dir=tempfile.mkdtemp() + "/b").path
>>> report = run_benchmark(path, BenchSettings(scenario="single-stream", duration_s=0.2, min_queries=200))
>>> isinstance(report.results, SingleStreamResult)
True
>>> report.scenario, report.results.queries >= 200, report.results.latency.p50_us > 0
('single-stream', True, True)
>>> report.to_dict()["results"]["queries"] == report.results.queries
True
"""

from __future__ import annotations

from edge_runtime.bench.cold_start import ColdStartResult
from edge_runtime.bench.max_qps import ServerProbe, ServerSearch
from edge_runtime.bench.offline import OfflineEntry, OfflineResult
from edge_runtime.bench.report import (
    BenchReport,
    Machine,
    ModelIdentity,
    ScenarioResult,
    Versions,
)
from edge_runtime.bench.rows import reference_rows
from edge_runtime.bench.run import run_benchmark
from edge_runtime.bench.server import ServerRun
from edge_runtime.bench.settings import SCENARIOS, BenchSettings
from edge_runtime.bench.single_stream import LayerTiming, SingleStreamResult
from edge_runtime.bench.timing import Percentiles, Progress, ResourceUsage, percentiles

__all__ = [
    "SCENARIOS", "BenchReport", "BenchSettings", "ColdStartResult", "LayerTiming", "Machine", "ModelIdentity",
    "OfflineEntry", "OfflineResult", "Percentiles", "Progress", "ResourceUsage", "ScenarioResult", "ServerProbe",
    "ServerRun", "ServerSearch", "SingleStreamResult", "Versions", "percentiles", "reference_rows",
    "run_benchmark",
]
