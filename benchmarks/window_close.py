"""The fixed cost of a window close, and the per-row cost of monitoring, on 30 numeric features.

Breast-cancer (30 numeric features, as scikit-learn ships it), a scaled
logistic regression and a 100-tree random forest exported as
``benchmarks/monitoring.py`` does.

(a) **Window close**, by phase: the drift assessment (``assess_window``), the
    stored verdicts and events (``encode_drift``), the record (quality,
    latency, summary), the profile's bytes (``Profile.to_bytes``), the SQLite
    write (``GuardedStore.save_window``, which numbers the window in the same
    transaction) and the next window's empty sketches. The phases are timed
    in a copy of ``Monitor._close_window``, by the wall and the thread CPU
    clock on alternate closes; the median over many closes of 5,000-row
    windows, with and without the assessment (``drift.py`` is costed on its
    own).
(b) **CPU per row** of monitoring: ``time.process_time`` around
    ``predict_batch`` of 512-row batches, inline (``background = false``), at
    100,000-row windows, minus the same without monitoring, per row.
(c) **rf100 rows/s** at 512-row batches, with 500-row and 5,000-row windows
    (the default worker on), interleaved pass by pass.

(d) With ``--assess-us 200``, (c) again with the assessment standing in at
    that cost (the first window's verdicts, returned after 200 µs of Python
    work): what the close costs besides ``drift.py``, at its target.

Run: ``python benchmarks/window_close.py [--closes 300] [--passes 20] [--assess-us 200] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from single_row import machine  # noqa: E402

from converters import export  # noqa: E402
from edge_runtime import Runtime, RuntimeConfig  # noqa: E402
from edge_runtime.config import MonitoringConfig  # noqa: E402
from edge_runtime.monitoring.drift import assess_window  # noqa: E402
from edge_runtime.monitoring.monitor import Monitor
from edge_runtime.monitoring.windows import encode_drift  # noqa: E402

PHASES = ("assess", "verdicts", "record", "profile_bytes", "save_window", "next_window")


def _timed_close(monitor: Any, now: float, partial: bool, clock: Callable[[], int]) -> dict[str, int]:
    """``Monitor._close_window`` with a timer around each phase (kept in step with it)."""
    window = monitor._window
    t = [clock()]
    drift = assess_window(monitor.reference, window.profile, monitor.policy)
    monitor.last_drift = drift
    t.append(clock())
    verdicts, events = encode_drift(drift, now)
    t.append(clock())
    record = {
        "seq": window.seq, "model": monitor.info.name, "version": monitor.info.version,
        "model_sha256": monitor.model_sha256, "opened_at": window.opened_at, "closed_at": now,
        "rows": window.rows, "rejected": sum(window.rejected.values()),
        "quality": window.quality_json(monitor._names), "latency": window.latency(),
        "summary": drift.summary(), "partial": int(partial), "budget": monitor._budget(),
    }
    t.append(clock())
    record["profile"] = window.profile.to_bytes()
    t.append(clock())
    monitor._db.save_window(record, verdicts, events)
    t.append(clock())
    monitor._window = monitor._open_window()
    t.append(clock())
    return {phase: t[i + 1] - t[i] for i, phase in enumerate(PHASES)}


def window_close(bundle: Path, X: np.ndarray, work: Path, closes: int) -> dict[str, Any]:
    """Median µs per phase of a 5,000-row window's close (windows filled by 500-row batches).

    Odd closes are timed by the wall clock, even ones by the thread's CPU
    clock: on a shared machine the CPU time is the cost, and the wall time
    adds what other processes took meanwhile.
    """
    rng = np.random.default_rng(2)
    batches = [X[rng.integers(0, len(X), 500)].astype(np.float32) for _ in range(10)]
    config = RuntimeConfig(monitoring=MonitoringConfig(db=work / "close.db", window_rows=5000, background=False))
    clocks = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
    seen: dict[str, list[dict[str, int]]] = {name: [] for name in clocks}
    sizes: list[int] = []
    with Runtime(bundle, config=config) as rt:
        monitor = rt.monitor
        assert isinstance(monitor, Monitor)

        def close(*, partial: bool, now: float) -> None:
            name = ("wall", "cpu")[sum(map(len, seen.values())) % 2]
            seen[name].append(_timed_close(monitor, now, partial, clocks[name]))

        # The monitor closes its windows itself, through this timed copy.
        monitor._close_window = close  # type: ignore[method-assign]
        for _ in range(2 * closes + 10):
            for batch in batches:
                rt.predict_batch(batch)
        store = monitor.store
        assert store is not None
        sizes = [len(w.get("profile") or b"") for w in store.windows(3, with_profile=True)]
    out: dict[str, Any] = {"closes": closes, "window_rows": 5000,
                           "profile_bytes": int(np.median(sizes)) if sizes else 0}
    for name, runs in seen.items():
        runs = runs[5:]  # warm-up: the reference's grids are computed once
        totals = [sum(times.values()) for times in runs]
        rest = [total - times["assess"] for total, times in zip(totals, runs)]
        out[name] = {"median_us": {p: float(np.median([t[p] for t in runs])) / 1e3 for p in PHASES},
                     "total_median_us": float(np.median(totals)) / 1e3,
                     "total_p90_us": float(np.percentile(totals, 90)) / 1e3,
                     "without_assess_median_us": float(np.median(rest)) / 1e3,
                     "without_assess_p90_us": float(np.percentile(rest, 90)) / 1e3}
    return out


def cpu_per_row(bundle: Path, X: np.ndarray, work: Path, passes: int) -> dict[str, Any]:
    """CPU µs per row that monitoring adds to 512-row batches, inline, at 100,000-row windows."""
    rng = np.random.default_rng(1)
    batches = [X[rng.integers(0, len(X), 512)].astype(np.float32) for _ in range(20)]
    plain = Runtime(bundle)
    monitored = Runtime(bundle, config=RuntimeConfig(monitoring=MonitoringConfig(
        db=work / "cpu.db", window_rows=100_000, background=False)))
    for rt in (plain, monitored):
        for batch in batches * 3:
            rt.predict_batch(batch)
    monitored.flush()
    cpu: dict[str, list[float]] = {"plain": [], "monitored": []}
    for _ in range(passes):
        for key, rt in (("plain", plain), ("monitored", monitored)):
            t0 = time.process_time()
            for batch in batches * 5:
                rt.predict_batch(batch)
            if key == "monitored":
                rt.flush()
            cpu[key].append(time.process_time() - t0)
    plain.close()
    monitored.close()
    rows = 512 * len(batches) * 5
    per_pass = [(m - p) / rows * 1e6 for m, p in zip(cpu["monitored"], cpu["plain"])]
    return {"us_per_row_median": float(np.median(per_pass)),
            "us_per_row_total": (sum(cpu["monitored"]) - sum(cpu["plain"])) / (rows * passes) * 1e6,
            "plain_us_per_row": float(np.median(cpu["plain"])) / rows * 1e6}


@contextlib.contextmanager
def _assessment_costing(us: float | None) -> Iterator[None]:
    """With ``us``, the monitor's ``assess_window`` answers each window with the first window's
    verdicts after ``us`` µs of Python work: the throughput a faster assessment would give."""
    if us is None:
        yield
        return
    import edge_runtime.monitoring.monitor as monitor_module

    real = vars(monitor_module)["assess_window"]  # the name the monitor calls, patched where it looks
    first: list[Any] = []

    def stand_in(*args: Any) -> Any:
        if not first:
            first.append(real(*args))
        end = time.perf_counter_ns() + us * 1e3
        while time.perf_counter_ns() < end:  # holds the GIL, as the Python parts of the real one do
            pass
        return first[0]

    setattr(monitor_module, "assess_window", stand_in)
    try:
        yield
    finally:
        setattr(monitor_module, "assess_window", real)


def rf_throughput(bundle: Path, X: np.ndarray, work: Path, passes: int, assess_us: float | None = None
                  ) -> dict[str, Any]:
    """rf100 rows/s at 512-row batches, 500-row against 5,000-row windows (worker on, as by default)."""
    with _assessment_costing(assess_us):
        return _rf_throughput(bundle, X, work, passes)


def _rf_throughput(bundle: Path, X: np.ndarray, work: Path, passes: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    batches = [X[rng.integers(0, len(X), 512)].astype(np.float32) for _ in range(20)]
    variants = {"no monitoring": Runtime(bundle),
                "500-row windows": Runtime(bundle, db=work / "rf500w.db", window_rows=500),
                "5,000-row windows": Runtime(bundle, db=work / "rf5000w.db", window_rows=5000)}
    for rt in variants.values():
        for batch in batches * 2:
            rt.predict_batch(batch)
        rt.flush()
    totals = {k: 0 for k in variants}
    for _ in range(passes):
        for key, rt in variants.items():
            t0 = time.perf_counter_ns()
            for batch in batches * 2:
                rt.predict_batch(batch)
            rt.flush()
            totals[key] += time.perf_counter_ns() - t0
    for rt in variants.values():
        rt.close()
    rows = 512 * len(batches) * 2 * passes
    rps = {k: rows / (ns / 1e9) for k, ns in totals.items()}
    return {"rows_per_s": rps, "ratio_500_to_5000": rps["500-row windows"] / rps["5,000-row windows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closes", type=int, default=300)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--assess-us", type=float, default=None,
                        help="also run (c) with the assessment taking this long (its target: 200)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = export(model, X, y, name="logreg", version="1", out_dir=work / "bundle").path
        forest_bundle = export(forest, X, y, name="rf100", version="1", out_dir=work / "rf100").path
        close = window_close(bundle, X, work, args.closes)
        cpu = cpu_per_row(bundle, X, work, args.passes)
        rf = rf_throughput(forest_bundle, X, work, max(1, args.passes // 2))
        rf_fast = (rf_throughput(forest_bundle, X, work, max(1, args.passes // 2), args.assess_us)
                   if args.assess_us is not None else None)
    info = machine()
    if args.json:
        json.dump({"machine": info, "window_close": close, "cpu_per_row": cpu, "rf100": rf,
                   "rf100_assess_us": args.assess_us, "rf100_fast_assessment": rf_fast}, sys.stdout, indent=2)
        print()
        return
    print(f"machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, onnxruntime "
          f"{info['onnxruntime']}, numpy {info['numpy']}, edge-runtime {info['edge_runtime']}")
    print(f"\nwindow close, 30 numeric features, 5,000-row windows, median of {close['closes']} closes per clock:")
    wall, thread = close["wall"], close["cpu"]
    print("| phase | wall µs | CPU µs |\n|---|---:|---:|")
    for phase in PHASES:
        print(f"| {phase} | {wall['median_us'][phase]:.0f} | {thread['median_us'][phase]:.0f} |")
    for key, label in (("total", "**total**"), ("without_assess", "all but assess")):
        print(f"| {label} (p90 {wall[key + '_p90_us']:.0f} / {thread[key + '_p90_us']:.0f}) | "
              f"{wall[key + '_median_us']:.0f} | {thread[key + '_median_us']:.0f} |")
    print(f"profile bytes per window: {close['profile_bytes']:,}")
    print(f"\nmonitoring CPU per row, 512-row batches, inline, 100,000-row windows: "
          f"{cpu['us_per_row_median']:.2f} µs (median of passes; over all {cpu['us_per_row_total']:.2f}; "
          f"model alone {cpu['plain_us_per_row']:.2f} µs/row)")
    print("\n| rf100, 512-row batches | rows/s |\n|---|---:|")
    for key, value in rf["rows_per_s"].items():
        print(f"| {key} | {value:,.0f} |")
    print(f"500-row windows reach {rf['ratio_500_to_5000']:.0%} of 5,000-row windows")
    if rf_fast is not None:
        print(f"with the assessment at {args.assess_us:.0f} µs: " + ", ".join(
            f"{key} {value:,.0f} rows/s" for key, value in rf_fast["rows_per_s"].items())
            + f"; 500-row windows reach {rf_fast['ratio_500_to_5000']:.0%} of 5,000-row windows")


if __name__ == "__main__":
    main()
