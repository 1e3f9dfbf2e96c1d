"""The demo behind ``edge-runtime demo``: train, export, load on the "device", predict.

It uses the breast-cancer data set that ships with scikit-learn (569 rows, 30
numeric features), so it needs no network and no file from the user.

Examples
--------
>>> import tempfile
>>> from converters.demo import run_demo
>>> report = run_demo(tempfile.mkdtemp())
>>> report.parity["passed"], report.label_agreement
(True, 1.0)
>>> sorted(report.windows[1]["drift"]) == sorted(report.shifted_features), report.windows[0]["drift"]
(True, {})
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.export import export
from converters.fleet_demo import FleetDemoReport, collector_installed, run_fleet_demo
from edge_runtime import MonitoringDatabase, Runtime

__all__ = ["DemoReport", "run_demo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoReport:
    """What the demo did and measured."""

    bundle: Path
    dataset: str
    model_type: str
    train_rows: int
    test_rows: int
    parity: dict[str, Any]
    latency_us: dict[str, float]
    accuracy: float
    sklearn_accuracy: float
    label_agreement: float
    examples: list[dict[str, Any]]
    database: Path
    shifted_features: list[str]
    windows: list[dict[str, Any]]
    fleet: FleetDemoReport | None = None


def run_demo(work_dir: str | Path, *, seed: int = 0, fleet: bool = False) -> DemoReport:
    """Train, export to ``work_dir/bundle``, serve the held-back rows, then watch a shift arrive.

    The monitored stream (decision log and windows in ``work_dir/monitor.db``)
    is the held-back rows as they are (window 0), then the same rows with three
    features shifted by 1.5 standard deviations (window 1).

    With ``fleet`` (and the collector extra installed), that stream is device
    ``kiosk-1``; a second device, ``kiosk-2``, serves the training rows in two
    windows (``work_dir/kiosk-2.db``), and both report to a collector on loopback
    (:func:`converters.fleet_demo.run_fleet_demo`).

    Parameters
    ----------
    work_dir : str or Path
        Where the bundle is written (replaced if present).
    seed : int
        Seed of the train/test split.
    fleet : bool
        Also run the fleet half (needs the ``collector`` extra; skipped without it).
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target.map(dict(enumerate(data.target_names)))
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed,
                                                        stratify=y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    result = export(model, X_train, y_train, name="breast-cancer", version="1.0",
                    out_dir=Path(work_dir) / "bundle", X_val=X_test, overwrite=True)

    rows = X_test.to_dict(orient="records")
    with Runtime(result.path) as runtime:
        for row in rows[:50]:  # warm-up, so the percentiles show steady state
            runtime.predict(row)
        predictions = [runtime.predict(row) for row in rows]
    database = Path(work_dir) / "monitor.db"
    database.unlink(missing_ok=True)
    shifted = ["mean radius", "mean texture", "worst smoothness"]
    drifted_rows = X_test.copy()
    for name in shifted:
        drifted_rows[name] = drifted_rows[name] + 1.5 * X_train[name].std()
    with Runtime(result.path, db=database, window_rows=len(X_test)) as runtime:
        for frame in (X_test, drifted_rows):
            for row in frame.to_dict(orient="records"):
                runtime.predict(row)
    fleet_report = None
    if fleet and collector_installed():
        quiet = Path(work_dir) / "kiosk-2.db"
        quiet.unlink(missing_ok=True)
        # Rows kiosk-1 did not serve (a row counted twice in the fleet's merge would
        # look like more evidence than there is): the training rows, in two windows.
        half = len(X_train) // 2
        with Runtime(result.path, db=quiet, window_rows=half) as runtime:
            runtime.predict_batch(X_train.iloc[:2 * half])
        fleet_report = run_fleet_demo(work_dir, result.path, {"kiosk-1": database, "kiosk-2": quiet})
    windows = []
    with MonitoringDatabase(database) as monitoring:
        report = monitoring.drift()
    for window, stream in zip(report.windows, ("held-back rows", "same rows, shifted")):
        statuses = {name: verdict.status.value for name, verdict in window.features.items()}
        windows.append({
            "index": window.index, "rows": window.rows, "stream": stream,
            "drift": {n: window.features[n].to_dict() for n, st in statuses.items() if st == "drift"},
            "warn": [n for n, st in statuses.items() if st == "warn"],
            "ok": sum(1 for st in statuses.values() if st == "ok"),
            "prediction": window.prediction.status.value if window.prediction else None,
        })

    latencies = np.array([p.latency_us for p in predictions])
    labels = np.array([p.label for p in predictions], dtype=object)
    expected = y_test.to_numpy(dtype=object)
    sklearn_labels = model.predict(X_test)
    examples = [
        {"row": i, "true": expected[i], "predicted": predictions[i].label,
         "probability": max(predictions[i].probabilities.values())}  # type: ignore[union-attr]
        for i in range(5)
    ]
    return DemoReport(
        bundle=result.path,
        dataset="breast_cancer (scikit-learn)",
        model_type="StandardScaler + LogisticRegression",
        train_rows=len(X_train),
        test_rows=len(X_test),
        parity=dict(result.parity or {}),
        latency_us={f"p{q}": float(np.percentile(latencies, q)) for q in (50, 90, 99)},
        accuracy=float(np.mean(labels == expected)),
        sklearn_accuracy=float(np.mean(sklearn_labels == expected)),
        label_agreement=float(np.mean(labels == sklearn_labels)),
        examples=examples,
        database=database,
        shifted_features=shifted,
        windows=windows,
        fleet=fleet_report,
    )
