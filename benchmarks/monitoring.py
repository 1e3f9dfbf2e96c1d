"""The cost of monitoring and decision logging, against raw onnxruntime, in one process.

A scaled logistic regression on breast-cancer (30 numeric features), every
prediction monitored (windows of 5,000 rows, drift against the reference) and
logged to SQLite. Methods interleaved block by block on the 569 real rows in
shuffled order. Also: batch throughput at 512 rows (the same logistic regression, and
random forests of 100 and 500 trees), and the monitoring memory.

Run: ``python benchmarks/monitoring.py [--whylogs-python PATH] [--json]``
(``--whylogs-python`` names an interpreter with whylogs installed, see
``benchmarks/whylogs_per_row.py``; its per-row cost joins the table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from single_row import machine, measure, raw_session  # noqa: E402

from converters import export  # noqa: E402
from edge_runtime import Runtime, RuntimeConfig  # noqa: E402
from edge_runtime.config import MonitoringConfig  # noqa: E402


def single_row(bundle: Path, X: np.ndarray, work: Path, blocks: int, calls: int) -> list[dict[str, Any]]:
    order = np.random.default_rng(0).permutation(len(X))
    rows64 = [X[i] for i in order]
    rows32 = [X[i : i + 1].astype(np.float32) for i in order]
    sess = raw_session(bundle / "model.onnx")
    name = sess.get_inputs()[0].name
    plain = Runtime(bundle)
    monitored = Runtime(bundle, db=work / "bench.db", window_rows=5000)
    names = plain.feature_names
    dict_rows = [dict(zip(names, r.tolist())) for r in rows64]
    methods = {
        "raw InferenceSession.run": (lambda r: sess.run(None, {name: r}), rows32),
        "Runtime.predict, no monitoring": (plain.predict, rows64),
        "Runtime.predict + monitoring + log": (monitored.predict, rows64),
        "Runtime.predict + monitoring + log (dict row)": (monitored.predict, dict_rows),
    }
    measure(methods, 1, {k: 500 for k in methods})
    results = measure(methods, blocks, {k: calls for k in methods})
    raw = results["raw InferenceSession.run"]
    table = []
    for method, values in results.items():
        table.append({"method": method, "calls": int(values.size), "p50_us": float(np.median(values)),
                      "p90_us": float(np.percentile(values, 90)), "p99_us": float(np.percentile(values, 99)),
                      "mean_us": float(values.mean()),
                      "p50_minus_raw_us": float(np.median(values) - np.median(raw)),
                      "mean_minus_raw_us": float(values.mean() - raw.mean())})
    monitored.close()
    plain.close()
    return table


def batch_throughput(bundles: dict[str, Path], X: np.ndarray, work: Path, repeats: int) -> list[dict[str, Any]]:
    """Rows per second at 512 rows per call, interleaved with raw onnxruntime on the same float32 batches.

    Throughput is rows over total time, not over the median call: the monitor
    does its work in blocks (a sketch update every 1,024 rows, a window close
    every ``window_rows``), and a median would hide those calls. The worker's
    pending batch is waited for inside the timing.
    """
    rng = np.random.default_rng(1)
    batches = [X[rng.integers(0, len(X), 512)].astype(np.float32) for _ in range(20)]
    results = []
    for label, bundle in bundles.items():
        sess = raw_session(bundle / "model.onnx")
        name = sess.get_inputs()[0].name
        variants = {
            "no monitoring": Runtime(bundle),
            "monitoring + log, 5,000-row windows": Runtime(bundle, db=work / f"{label}-log.db", window_rows=5000),
            "monitoring + log, 100,000-row windows": Runtime(bundle, db=work / f"{label}-log100k.db",
                                                             window_rows=100_000),
            "monitoring + log, 100,000-row windows, inline (background = false)": Runtime(
                bundle, config=RuntimeConfig(monitoring=MonitoringConfig(
                    db=work / f"{label}-inline.db", window_rows=100_000, background=False))),
            "monitoring + log, 100,000-row windows, inline, no thinning": Runtime(bundle, config=RuntimeConfig(
                monitoring=MonitoringConfig(db=work / f"{label}-nothin.db", window_rows=100_000,
                                            sketch_stride=1, background=False))),
        }
        for runtime in variants.values():  # warm up, and fill the first windows
            for batch in batches * 3:
                runtime.predict_batch(batch)
        totals: dict[str, int] = {"raw": 0, **{k: 0 for k in variants}}
        # Interleaved a pass of 100 batches (the 20, five times) at a time, each
        # pass ending with flush(), which waits for the worker: no variant's
        # monitoring spills into the next one's timing.
        passes = max(1, repeats // 5)
        for _ in range(passes):
            t0 = time.perf_counter_ns()
            for batch in batches * 5:
                sess.run(None, {name: batch})
            totals["raw"] += time.perf_counter_ns() - t0
            for key, runtime in variants.items():
                t0 = time.perf_counter_ns()
                for batch in batches * 5:
                    runtime.predict_batch(batch)
                runtime.flush()
                totals[key] += time.perf_counter_ns() - t0
        for runtime in variants.values():
            runtime.close()
        rows = 512 * len(batches) * 5 * passes
        raw_rps = rows / (totals["raw"] / 1e9)
        for key in variants:
            rps = rows / (totals[key] / 1e9)
            results.append({"model": label, "variant": key, "raw_rows_per_s": raw_rps, "rows_per_s": rps,
                            "ratio": rps / raw_rps})
    return results


def memory(bundle: Path, X: np.ndarray, work: Path) -> dict[str, Any]:
    process = psutil.Process()
    with Runtime(bundle, db=work / "mem.db", window_rows=5000) as rt:
        rows = X.astype(np.float64)
        for i in range(20_000):
            rt.predict(rows[i % len(rows)])
        rss_before = process.memory_info().rss
        for i in range(200_000):
            rt.predict(rows[i % len(rows)])
        rss_after = process.memory_info().rss
        rt.flush()
        from edge_runtime.monitoring.data_profile import Profile
        from edge_runtime.monitoring.store import MonitorStore

        store = MonitorStore(work / "mem.db", create=False)
        window = store.windows(1, with_profile=True)[-1]
        store.close()
        profile = Profile.from_bytes(window["profile"])
        per_feature = [len(s.to_bytes()) for s in profile.features.values()]
    return {"window_rows": 5000, "sketch_bytes_per_numeric_feature_max": max(per_feature),
            "sketch_bytes_per_numeric_feature_mean": float(np.mean(per_feature)),
            "rss_growth_over_200k_predictions_bytes": rss_after - rss_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batch-repeats", type=int, default=50, help="passes over the 20 batches of 512 rows")
    parser.add_argument("--whylogs-python", help="interpreter with whylogs installed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = export(model, X, y, name="logreg", version="1", out_dir=work / "bundle").path
        forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
        forest_bundle = export(forest, X, y, name="rf100", version="1", out_dir=work / "rf100").path
        big = RandomForestClassifier(n_estimators=500, random_state=0).fit(X, y)
        big_bundle = export(big, X, y, name="rf500", version="1", out_dir=work / "rf500").path
        table = single_row(bundle, X, work, args.blocks, args.calls)
        batch = batch_throughput({"logreg": bundle, "rf100": forest_bundle, "rf500": big_bundle}, X, work,
                                 repeats=args.batch_repeats)
        mem = memory(bundle, X, work)
    whylogs = None
    if args.whylogs_python:
        out = subprocess.run([args.whylogs_python, str(Path(__file__).parent / "whylogs_per_row.py")],
                             capture_output=True, text=True, check=True)
        whylogs = json.loads(out.stdout.strip().splitlines()[-1])
    if args.json:
        json.dump({"machine": machine(), "single_row": table, "batch": batch, "memory": mem, "whylogs": whylogs},
                  sys.stdout, indent=2)
        print()
        return
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, onnxruntime "
          f"{info['onnxruntime']}, numpy {info['numpy']}")
    print("| method | p50 µs | p90 µs | p99 µs | mean µs | p50 − raw | mean − raw |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['method']} | {r['p50_us']:.1f} | {r['p90_us']:.1f} | {r['p99_us']:.1f} | {r['mean_us']:.1f} | "
              f"{r['p50_minus_raw_us']:+.1f} | {r['mean_minus_raw_us']:+.1f} |")
    if whylogs:
        print(f"| whylogs {whylogs['whylogs']} DatasetProfile.track(row) alone | {whylogs['p50_us']:.1f} | | | "
              f"{whylogs['mean_us']:.1f} | | |")
    print("\n| batch of 512 | raw onnxruntime rows/s | Runtime rows/s | share of raw |")
    print("|---|---:|---:|---:|")
    for b in batch:
        print(f"| {b['model']}, {b['variant']} | {b['raw_rows_per_s']:,.0f} | {b['rows_per_s']:,.0f} | "
              f"{b['ratio']:.0%} |")
    print(f"monitoring memory: {mem['sketch_bytes_per_numeric_feature_max']} bytes per numeric feature per "
          f"5,000-row window (max; mean {mem['sketch_bytes_per_numeric_feature_mean']:.0f}); RSS growth over "
          f"200k monitored predictions: {mem['rss_growth_over_200k_predictions_bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
