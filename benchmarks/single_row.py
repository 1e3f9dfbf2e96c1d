"""Single-row latency: scikit-learn vs raw onnxruntime vs edge-runtime, in one process.

The same model, the same varied real rows (never one repeated row: that flatters
tree models 1.5-2x), methods interleaved block by block so machine noise hits all
of them alike. Raw onnxruntime gets its input pre-cast to a float32 (1, n) array;
``Runtime.predict`` gets what a user has: a float64 row or a dict.

Run: ``python benchmarks/single_row.py`` (add ``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import edge_runtime
from converters import export
from edge_runtime import Runtime


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "edge_runtime": edge_runtime.__version__}


def raw_session(model_path: Path) -> ort.InferenceSession:
    """Raw onnxruntime with the same edge options the Runtime uses (1 thread, no spinning)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def measure(methods: dict[str, tuple[Callable[[Any], Any], list[Any]]], blocks: int,
            calls_per_block: dict[str, int]) -> dict[str, np.ndarray]:
    timings: dict[str, list[int]] = {name: [] for name in methods}
    clock = time.perf_counter_ns
    for block in range(blocks):
        for name, (call, rows) in methods.items():
            n = calls_per_block[name]
            start_at = (block * n) % len(rows)
            out = timings[name]
            for i in range(n):
                row = rows[(start_at + i) % len(rows)]
                t0 = clock()
                call(row)
                out.append(clock() - t0)
    return {name: np.array(v) / 1e3 for name, v in timings.items()}


def bench_model(label: str, model: Any, X: np.ndarray, y: np.ndarray, work: Path, blocks: int,
                calls: int, sklearn_calls: int) -> list[dict[str, Any]]:
    model.fit(X, y)
    bundle = export(model, X, y, name=label, version="1", out_dir=work / label).path
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    rows64 = [X[i] for i in order]
    rows32 = [X[i : i + 1].astype(np.float32) for i in order]
    rows2d = [X[i : i + 1] for i in order]
    runtime = Runtime(bundle)
    names = runtime.feature_names
    dict_rows = [dict(zip(names, r.tolist())) for r in rows64]
    sess = raw_session(bundle / "model.onnx")
    input_name = sess.get_inputs()[0].name
    methods = {
        "sklearn predict_proba": (model.predict_proba, rows2d),
        "raw InferenceSession.run": (lambda r: sess.run(None, {input_name: r}), rows32),
        "Runtime.predict (numpy row)": (runtime.predict, rows64),
        "Runtime.predict (dict row)": (runtime.predict, dict_rows),
    }
    per_block = {name: (sklearn_calls if name.startswith("sklearn") else calls) for name in methods}
    measure(methods, 1, {k: min(v, 200) for k, v in per_block.items()})  # warm-up
    results = measure(methods, blocks, per_block)
    raw_p50 = float(np.percentile(results["raw InferenceSession.run"], 50))
    table = []
    for name, values in results.items():
        p50, p90, p99 = (float(np.percentile(values, q)) for q in (50, 90, 99))
        table.append({"model": label, "method": name, "calls": int(values.size), "p50_us": p50, "p90_us": p90,
                      "p99_us": p99, "mean_us": float(values.mean()), "p50_vs_raw": p50 / raw_p50,
                      "p50_minus_raw_us": p50 - raw_p50})
    runtime.close()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20, help="interleaved blocks per method")
    parser.add_argument("--calls", type=int, default=2000, help="calls per block (onnxruntime methods)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results += bench_model("logreg-breast-cancer",
                               make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                               X, y, work, args.blocks, args.calls, sklearn_calls=args.calls // 4)
        results += bench_model("rf100-breast-cancer", RandomForestClassifier(n_estimators=100, random_state=0),
                               X, y, work, args.blocks, args.calls, sklearn_calls=max(args.calls // 100, 5))
    if args.json:
        json.dump({"machine": machine(), "results": results}, sys.stdout, indent=2)
        print()
        return
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['arch']}; python {info['python']}, "
          f"onnxruntime {info['onnxruntime']}, numpy {info['numpy']}, scikit-learn {info['scikit-learn']}")
    print("| model | method | p50 µs | p90 µs | p99 µs | p50 vs raw |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['method']} | {r['p50_us']:.1f} | {r['p90_us']:.1f} | {r['p99_us']:.1f} | "
              f"{r['p50_vs_raw']:.2f}x ({r['p50_minus_raw_us']:+.1f} µs) |")


if __name__ == "__main__":
    main()
