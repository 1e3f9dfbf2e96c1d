"""One canonical class label from export to the drift verdict, for int, float, string and bool targets.

A label keeps the training target's type, except that an integer-valued float is the int it
holds (0.0 -> 0); wherever it becomes text (the CSV's ``proba_<label>`` columns, JSON keys,
the decision log, the reference profile and the live windows) it is ``str()`` of that value.
Each target goes the way a new user takes it: a training CSV with the target column and a
True/False column, ``edge-runtime export``, the Runtime, ``edge-runtime predict`` on CSV and
JSON lines with monitoring on, then the decision log and the drift report.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from edge_runtime import MonitoringDatabase, Runtime
from edge_runtime.cli import main
from edge_runtime.monitoring.data_profile import load_reference
from edge_runtime.serving.bundle import load_bundle

# target -> (how the target is stored, the canonical classes, their text)
TARGETS: dict[str, tuple[Any, tuple[Any, ...], tuple[str, str]]] = {
    "int": (lambda yes: yes.astype(int), (0, 1), ("0", "1")),
    "float": (lambda yes: yes.astype(float), (0, 1), ("0", "1")),
    "string": (lambda yes: yes.map({False: "stay", True: "churn"}), ("churn", "stay"), ("churn", "stay")),
    "bool": (lambda yes: yes, (False, True), ("False", "True")),
}


def _customers(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "income": rng.normal(50, 15, n).round(2),
        "city": rng.choice(["lyon", "nice", "paris"], n),
        "member": rng.random(n) < 0.4,
    })
    yes = 0.05 * (X["income"] - 50) + 1.2 * X["member"] + 0.5 * (X["city"] == "nice") + rng.normal(0, 1, n) > 0.3
    return X, yes


def _pipeline() -> Pipeline:
    return Pipeline([
        ("pre", ColumnTransformer([("num", StandardScaler(), ["income"]),
                                   ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                   ("flag", "passthrough", ["member"])])),
        ("clf", LogisticRegression(max_iter=1000)),
    ])


@pytest.fixture(params=list(TARGETS))
def exported(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A bundle exported through the CLI from a training CSV, and the live rows as CSV and JSON lines."""
    store, classes, texts = TARGETS[request.param]
    X, yes = _customers(6000, seed=7)
    y = store(yes)
    train, live = slice(0, 3000), slice(3000, 6000)
    model = _pipeline().fit(X[train], y[train])
    joblib.dump(model, tmp_path / "model.joblib")
    X[train].assign(target=y[train]).to_csv(tmp_path / "train.csv", index=False)
    X[live].to_csv(tmp_path / "live.csv", index=False)
    records = X[live].to_dict(orient="records")
    (tmp_path / "live.jsonl").write_text("".join(
        json.dumps({k: v.item() if isinstance(v, np.generic) else v for k, v in r.items()}) + "\n" for r in records))
    result = CliRunner().invoke(main, ["export", str(tmp_path / "model.joblib"), "--train-data",
                                       str(tmp_path / "train.csv"), "--target", "target", "--name", "churn",
                                       "--version", "1", "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 0, result.output
    return {"path": tmp_path / "bundle", "tmp": tmp_path, "model": model, "live": X[live], "classes": classes,
            "texts": texts, "target": request.param}


def test_the_manifest_and_the_reference_hold_the_canonical_classes(exported: dict[str, Any]) -> None:
    path, texts = exported["path"], exported["texts"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert tuple(manifest["output_schema"]["classes"]) == exported["classes"]
    assert [type(c) for c in manifest["output_schema"]["classes"]] == [type(c) for c in exported["classes"]]
    assert [f["kind"] for f in manifest["input_schema"]["features"]] == ["numeric", "categorical", "boolean"]
    assert set(manifest["reference"]["target"]["classes"]) == set(texts)
    reference = load_reference(load_bundle(path))
    assert reference is not None and reference.predictions is not None
    assert set(reference.predictions.counts) == set(texts)


def test_predictions_carry_the_canonical_label_and_keys(exported: dict[str, Any]) -> None:
    classes, live, model = exported["classes"], exported["live"], exported["model"]
    label_type = type(classes[0])
    with open(exported["tmp"] / "live.csv") as fh:
        csv_row = next(csv.DictReader(fh))  # every value a string: "True", "41.2"
    with Runtime(exported["path"]) as rt:
        assert rt.classes == classes
        single = rt.predict(csv_row)
        batch = rt.predict_batch(live)
    assert type(single.label) is label_type and single.label in classes
    assert list(single.probabilities) == list(classes)
    assert repr(single).startswith(f"Prediction(label={single.label!r}, probabilities={{{classes[0]!r}: ")
    expected = model.predict(live)
    assert batch.labels.tolist() == expected.tolist()  # 0 == 0.0: the same classes
    assert {type(label) for label in batch.labels.tolist()} == {label_type}
    record = next(batch.records())
    assert list(record) == ["row", "prediction", *(f"proba_{t}" for t in exported["texts"])]
    assert type(record["prediction"]) is label_type


def test_the_cli_the_decision_log_and_the_drift_verdict_agree_on_the_text(exported: dict[str, Any]) -> None:
    tmp, texts, classes = exported["tmp"], exported["texts"], exported["classes"]
    runner = CliRunner()
    db = tmp / "monitor.db"
    as_csv = runner.invoke(main, ["predict", str(exported["path"]), "--input", str(tmp / "live.csv"),
                                  "--db", str(db), "--window-rows", "1000"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == ["row", "prediction", f"proba_{texts[0]}", f"proba_{texts[1]}"]
    assert len(rows) == 3000 and {r["prediction"] for r in rows} == set(texts)
    expected = [str(c) for c in exported["model"].predict(exported["live"]).tolist()]
    if exported["target"] == "float":
        expected = [str(int(float(c))) for c in expected]  # scikit-learn answers 1.0; the bundle answers 1
    assert [r["prediction"] for r in rows] == expected

    as_json = runner.invoke(main, ["predict", str(exported["path"]), "--input", str(tmp / "live.jsonl")])
    assert as_json.exit_code == 0, as_json.output
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert list(records[0]) == ["row", "prediction", f"proba_{texts[0]}", f"proba_{texts[1]}"]
    assert {type(r["prediction"]) for r in records} == {type(classes[0])}  # JSON 1, never 1.0
    assert [str(r["prediction"]) for r in records] == [r["prediction"] for r in rows]

    with MonitoringDatabase(db) as monitoring:
        logged = [d.prediction for d in monitoring.decisions(after=0)]
        windows = monitoring.drift().windows
    assert logged == [r["prediction"] for r in rows]
    assert len(windows) == 3
    for window in windows:  # stationary data: the predicted-class mix matches the reference
        verdict = window.to_dict()["prediction"]
        assert verdict["status"] == "ok", verdict
    drift = runner.invoke(main, ["drift", "--db", str(db), "--json"])
    assert drift.exit_code == 0, drift.output
    assert [w["prediction"]["status"] for w in json.loads(drift.stdout)["windows"]] == ["ok", "ok", "ok"]
