"""The per-row cost of the multivariate drift signal, on 30 numeric features at 512-row blocks.

Breast-cancer (30 numeric features, as scikit-learn ships it): the PCA is
fitted by ``converters.multivariate.fit_multivariate`` as export does.

(a) **Errors**: ``ReconstructionModel.errors`` on a float32 block of 512 rows
    (one float32 subtraction, one product with the discarded axes, a row-wise
    sum of squares).
(b) **Window moments**: ``add_errors``, the errors' count, mean, variance and
    range folded into the window's ``multivariate`` sketch.

(c) **End to end**: ``time.process_time`` around ``predict_batch`` of 512-row
    batches of a scaled logistic regression exported with ``converters.export``,
    monitored inline (``background = false``) at 100,000-row windows, with the
    bundle's multivariate model and with it withheld, interleaved pass by pass.

(a) and (b) are the median of ``--repeats`` timings with ``time.perf_counter_ns``,
(c) the median over ``--passes``; all in µs per row.

Run: ``python benchmarks/multivariate_cost.py [--repeats 2000] [--passes 15] [--json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import edge_runtime.monitoring.multivariate as multivariate
from converters import export
from converters.multivariate import fit_multivariate
from edge_runtime import Runtime, RuntimeConfig
from edge_runtime.config import MonitoringConfig
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task

BLOCK = 512


def _median_us_per_row(work: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        work()
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e3 / BLOCK


def end_to_end(passes: int) -> dict[str, float]:
    """CPU µs per row of monitored 512-row batches, with and without the multivariate model."""
    X, y = load_breast_cancer(return_X_y=True)
    work = Path(tempfile.mkdtemp())
    bundle = export(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y), X, y,
                    name="cancer", version="1", out_dir=work / "b").path
    rng = np.random.default_rng(1)
    batches = [X[rng.integers(0, len(X), BLOCK)].astype(np.float32) for _ in range(20)]
    runtimes = {}
    load = multivariate.load_multivariate
    for key in ("with", "without"):
        if key == "without":  # the same bundle, its multivariate model withheld from the monitor
            multivariate.load_multivariate = lambda bundle: None
        try:
            runtimes[key] = Runtime(bundle, config=RuntimeConfig(monitoring=MonitoringConfig(
                db=work / f"{key}.db", window_rows=100_000, background=False)))
        finally:
            multivariate.load_multivariate = load
    cpu: dict[str, list[float]] = {key: [] for key in runtimes}
    for _ in range(passes):
        for key, rt in runtimes.items():
            t0 = time.process_time()
            for batch in batches:
                rt.predict_batch(batch)
            cpu[key].append((time.process_time() - t0) / (len(batches) * BLOCK) * 1e6)
    for rt in runtimes.values():
        rt.close()
    result = {key: float(np.median(values)) for key, values in cpu.items()}
    result["added"] = result["with"] - result["without"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    X = load_breast_cancer().data
    schema = InputSchema(features=tuple(FeatureSpec(name=f"f{i}") for i in range(X.shape[1])))
    model = fit_multivariate(X, schema)
    assert model is not None
    rng = np.random.default_rng(0)
    block = X[rng.integers(0, len(X), BLOCK)].astype(np.float32)
    outputs = OutputSchema(task=Task.REGRESSION, score_output="y")
    errors = model.errors(block)
    results: dict[str, Any] = {
        "features": X.shape[1], "components": model.components, "block": BLOCK,
        "errors_us_per_row": _median_us_per_row(lambda: model.errors(block), args.repeats)}
    profile = Profile.for_schema(schema, outputs, multivariate=True)
    assert profile.multivariate is not None
    window = profile.multivariate
    results["add_errors_us_per_row"] = _median_us_per_row(lambda: multivariate.add_errors(window, errors),
                                                          args.repeats)
    results["end_to_end_cpu_us_per_row"] = end_to_end(args.passes)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['features']} features, {results['components']} components kept, blocks of {BLOCK} rows")
    print(f"errors():                 {results['errors_us_per_row']:.4f} µs/row")
    print(f"add_errors():             {results['add_errors_us_per_row']:.4f} µs/row")
    entry = results["end_to_end_cpu_us_per_row"]
    print(f"monitored predict_batch CPU: {entry['without']:.3f} -> {entry['with']:.3f} µs/row "
          f"(+{entry['added']:.3f}; model and monitoring together)")


if __name__ == "__main__":
    main()
