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


def run_demo(work_dir: str | Path, *, seed: int = 0) -> DemoReport:
    """Train, export to ``work_dir/bundle``, serve the held-back rows, then watch a shift arrive.

    The monitored stream (decision log and windows in ``work_dir/monitor.db``)
    is the held-back rows as they are (window 0), then the same rows with three
    features shifted by 1.5 standard deviations (window 1).

    Parameters
    ----------
    work_dir : str or Path
        Where the bundle is written (replaced if present).
    seed : int
        Seed of the train/test split.
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
    )
