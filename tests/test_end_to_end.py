"""A new user's path, through the installed entry point in real child processes:
pickle a pipeline with a categorical column, export it, predict a CSV, compare with scikit-learn."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.ensemble import RandomForestClassifier

from tests.conftest import mixed_frame, mixed_pipeline


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_runtime", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_export_then_predict_csv_gives_sklearn_labels(tmp_path: Path) -> None:
    X, y = mixed_frame(n=800, seed=1)
    model = mixed_pipeline(RandomForestClassifier(n_estimators=40, random_state=0)).fit(X[:600], y[:600])
    joblib.dump(model, tmp_path / "model.joblib")
    X[:600].assign(churn=y[:600]).to_csv(tmp_path / "train.csv", index=False)
    X[600:].assign(churn=y[600:]).to_csv(tmp_path / "new.csv", index=False)

    exported = _cli("export", str(tmp_path / "model.joblib"), "--train-data", str(tmp_path / "train.csv"),
                    "--target", "churn", "--name", "churn", "--version", "1.0", "--out", str(tmp_path / "bundle"))
    assert exported.returncode == 0, exported.stderr
    inspected = _cli("inspect", str(tmp_path / "bundle"))
    assert inspected.returncode == 0 and "[ok] model.onnx" in inspected.stdout

    predicted = _cli("predict", str(tmp_path / "bundle"), "--input", str(tmp_path / "new.csv"),
                     "--drop", "churn", "--output", str(tmp_path / "out.csv"))
    assert predicted.returncode == 0, predicted.stderr
    with open(tmp_path / "out.csv") as fh:
        rows: list[dict[str, Any]] = list(csv.DictReader(fh))
    assert len(rows) == 200
    assert [r["prediction"] for r in rows] == model.predict(X[600:]).tolist()


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = _cli("inspect", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr == f"Error: bundle directory '{tmp_path / 'missing'}' does not exist\n"
