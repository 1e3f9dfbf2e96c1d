"""Every CLI command on its happy path and on its error path (exact ``Error:`` line and exit code)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import joblib
import pytest
from click.testing import CliRunner
from sklearn.cluster import KMeans

from edge_runtime import __version__
from edge_runtime.cli import main
from edge_runtime.errors import BundleError
from edge_runtime.serving.bundle import FORMAT_VERSION


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def churn_files(tmp_path: Path, mixed_data: Any, mixed_model: Any) -> dict[str, Path]:
    X, y = mixed_data
    model_file = tmp_path / "churn.joblib"
    joblib.dump(mixed_model, model_file)
    train = tmp_path / "train.csv"
    X.assign(churn=y).to_csv(train, index=False)
    return {"model": model_file, "train": train}


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"edge-runtime, version {__version__}"


def test_export_happy_path(runner: CliRunner, churn_files: dict[str, Path], tmp_path: Path,
                           mixed_data: Any) -> None:
    out = tmp_path / "bundle"
    result = runner.invoke(main, ["export", str(churn_files["model"]), "--train-data", str(churn_files["train"]),
                                  "--target", "churn", "--name", "churn", "--version", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}\nparity: agreement 1.0000")
    manifest = json.loads((out / "manifest.json").read_text())
    assert "churn" not in [f["name"] for f in manifest["input_schema"]["features"]]
    assert manifest["reference"]["target"]["classes"] == mixed_data[1].value_counts().to_dict()


def test_export_unknown_target(runner: CliRunner, churn_files: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(main, ["export", str(churn_files["model"]), "--train-data", str(churn_files["train"]),
                                  "--target", "label", "--name", "c", "--version", "1", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: --target column 'label' is not in {churn_files['train']}\n"


def test_export_unsupported_model(runner: CliRunner, tmp_path: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    model_file = tmp_path / "kmeans.pkl"
    joblib.dump(KMeans(n_clusters=2, n_init=1, random_state=0).fit(X), model_file)
    train = tmp_path / "train.csv"
    X.to_csv(train, index=False)
    result = runner.invoke(main, ["export", str(model_file), "--train-data", str(train), "--name", "k",
                                  "--version", "1", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert result.stderr == "Error: KMeans is neither a classifier nor a regressor\n"
    assert not (tmp_path / "b").exists()


def test_bundle_command(runner: CliRunner, tmp_path: Path, cancer_bundle: Path) -> None:
    # any ONNX file will do: reuse the one inside a bundle, described by a hand-written schema
    schema = tmp_path / "schema.json"
    names = json.loads((cancer_bundle / "manifest.json").read_text())["input_schema"]["features"]
    schema.write_text(json.dumps({"task": "classification", "classes": [0, 1],
                                  "features": [f["name"] for f in names]}))
    out = tmp_path / "byo"
    args = ["bundle", str(cancer_bundle / "model.onnx"), "--schema", str(schema), "--name", "byo",
            "--version", "1", "--out", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0 and result.stdout == f"wrote {out}\n"
    again = runner.invoke(main, args)
    assert again.exit_code == 1
    assert again.stderr == f"Error: '{out}' already exists; pass overwrite=True (--overwrite) to replace it\n"


def test_inspect_text_and_json(runner: CliRunner, cancer_bundle: Path) -> None:
    text = runner.invoke(main, ["inspect", str(cancer_bundle)])
    assert text.exit_code == 0
    assert text.stdout.startswith(f"cancer 1.0  (format {FORMAT_VERSION}, created ")
    assert "  [ok] model.onnx" in text.stdout and "parity: passed=True" in text.stdout
    as_json = runner.invoke(main, ["inspect", str(cancer_bundle), "--json"])
    payload = json.loads(as_json.stdout)
    verification = payload["verification"]
    assert verification["ok"] is True and verification["protected"] is True and verification["digest"]["ok"]
    assert verification["files"] == [{"name": "model.onnx", "ok": True, "reason": "ok"},
                                     {"name": "multivariate.bin", "ok": True, "reason": "ok"},
                                     {"name": "reference.bin", "ok": True, "reason": "ok"}]
    assert {c["field"] for c in verification["graph"]} >= {"input_schema.features", "output_schema.classes"}
    assert payload["manifest"]["name"] == "cancer"


def test_inspect_tampered_bundle(runner: CliRunner, cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    with open(path / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    result = runner.invoke(main, ["inspect", str(path)])
    assert result.exit_code == 1
    assert "  [FAILED] model.onnx: has" in result.stdout
    size = (path / "model.onnx").stat().st_size
    assert result.stderr == (f"Error: bundle file 'model.onnx' has {size} bytes, the manifest says {size - 1} "
                             "(truncated or altered)\n")


def test_inspect_missing_bundle(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: bundle directory '{tmp_path / 'nope'}' does not exist\n"


def test_predict_csv_matches_sklearn(runner: CliRunner, tmp_path: Path, mixed_bundle: Path, mixed_data: Any,
                                     mixed_model: Any) -> None:
    X, _ = mixed_data
    source = tmp_path / "rows.csv"
    X.iloc[:50].to_csv(source, index=False)
    out = tmp_path / "pred.csv"
    result = runner.invoke(main, ["predict", str(mixed_bundle), "--input", str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = _csv_rows(out.read_text())
    assert list(rows[0]) == ["row", "prediction", "proba_churn", "proba_stay"]
    assert [r["row"] for r in rows] == [str(i) for i in range(1, 51)]
    assert [r["prediction"] for r in rows] == mixed_model.predict(X.iloc[:50]).tolist()
    assert float(rows[0]["proba_churn"]) == pytest.approx(mixed_model.predict_proba(X.iloc[:1])[0][0], abs=1e-5)


def test_predict_jsonl_from_stdin(runner: CliRunner, cancer_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    lines = "".join(json.dumps(r) + "\n" for r in X.iloc[:3].to_dict(orient="records"))
    result = runner.invoke(main, ["predict", str(cancer_bundle), "--input", "-", "--format", "jsonl"], input=lines)
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["row"] for r in records] == [1, 2, 3]
    assert set(records[0]) == {"row", "prediction", "proba_0", "proba_1"}


def test_predict_bad_rows_are_reported_and_good_rows_written(runner: CliRunner, tmp_path: Path,
                                                             mixed_bundle: Path, mixed_data: Any) -> None:
    X, _ = mixed_data
    frame = X.iloc[:5].copy()
    frame["city"] = frame["city"].astype(object)
    frame.loc[frame.index[1], "city"] = "rome"
    frame["income"] = frame["income"].astype(object)
    frame.loc[frame.index[3], "income"] = "n/a"
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    result = runner.invoke(main, ["predict", str(mixed_bundle), "--input", str(source), "--batch-size", "2"])
    assert result.exit_code == 1
    assert [r["row"] for r in _csv_rows(result.stdout)] == ["1", "3", "5"]
    assert result.stderr.splitlines() == [
        "Error: row 2: feature 'city': category 'rome' was never seen in training (3 known categories)",
        "Error: row 4: feature 'income': value 'n/a' is not a number",
        "Error: 2 of 5 rows rejected; the other rows were written",
    ]


def test_predict_ragged_csv_and_drop(runner: CliRunner, tmp_path: Path, mixed_bundle: Path, mixed_data: Any) -> None:
    X, _ = mixed_data
    source = tmp_path / "rows.csv"
    X.iloc[:2].assign(customer_id=[7, 8]).to_csv(source, index=False)
    with open(source, "a") as fh:
        fh.write("1,2\n")
    result = runner.invoke(main, ["predict", str(mixed_bundle), "--input", str(source), "--drop", "customer_id"])
    assert result.exit_code == 1
    assert len(_csv_rows(result.stdout)) == 2
    assert result.stderr.splitlines()[0] == "Error: row 3: 2 cells, the header has 6"


def test_predict_missing_bundle_and_debug(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("a\n1\n")
    result = runner.invoke(main, ["predict", str(tmp_path / "nope"), "--input", str(source)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: bundle directory '{tmp_path / 'nope'}' does not exist\n"
    debug = runner.invoke(main, ["--debug", "predict", str(tmp_path / "nope"), "--input", str(source)])
    assert isinstance(debug.exception, BundleError)


def test_predict_with_config(runner: CliRunner, tmp_path: Path, mixed_bundle: Path, mixed_data: Any) -> None:
    X, _ = mixed_data
    frame = X.iloc[:2].copy()
    frame["city"] = ["rome", "oslo"]
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    config = tmp_path / "device.toml"
    config.write_text('[inputs]\nunseen_category = "allow"\n')
    result = runner.invoke(main, ["predict", str(mixed_bundle), "--input", str(source), "--config", str(config)])
    assert result.exit_code == 0 and len(_csv_rows(result.stdout)) == 2


def test_demo(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "edge-runtime demo: StandardScaler + LogisticRegression on breast_cancer (scikit-learn)"
    assert "label agreement 1.0000" in result.stdout and "PASSED" in result.stdout
    assert "single-row latency (dict rows): p50" in result.stdout
    assert (tmp_path / "demo" / "bundle" / "manifest.json").is_file()
    # The fleet half: both devices' windows wait while the collector is down, then arrive
    # once each, and the fleet view names the shift and the device it came from.
    assert result.stdout.count("sync with the collector not yet started: Error: the collector did not take "
                               "the windows: cannot reach") == 2
    assert "kiosk-1 sync once it serves: sent 2 windows" in result.stdout
    assert "kiosk-2 sync once it serves: sent 2 windows" in result.stdout
    drift = result.stdout[result.stdout.index("edge-runtime fleet drift"):]
    assert "4 windows from 2 devices, 712 rows; drifted locally: 1 of 2 devices (kiosk-1)" in drift
    assert "drift: mean radius (ks" in drift and "mean radius driven by kiosk-1" in drift


# ------------------------------------------------------------------ monitoring
@pytest.fixture
def monitored_db(runner: CliRunner, tmp_path: Path, mixed_bundle: Path, mixed_data: Any) -> Path:
    X, _ = mixed_data
    frame = X.iloc[:450].copy()
    frame.iloc[300:, frame.columns.get_loc("income")] *= 3  # a shift in the last window
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    db = tmp_path / "m.db"
    result = runner.invoke(main, ["predict", str(mixed_bundle), "--input", str(source), "--db", str(db),
                                  "--window-rows", "150", "--output", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    return db


def test_drift_json_shape(runner: CliRunner, monitored_db: Path) -> None:
    result = runner.invoke(main, ["drift", "--db", str(monitored_db), "--json"])
    assert result.exit_code == 0
    windows = json.loads(result.stdout)["windows"]
    assert [w["index"] for w in windows] == [0, 1, 2] and [w["rows"] for w in windows] == [150, 150, 150]
    income = windows[2]["features"]["income"]
    assert {"status", "drift", "metric", "value", "threshold"} <= set(income)
    assert income["status"] == "drift" and income["drift"] is True and income["metric"] in ("ks", "psi")
    assert "ks" in income["metrics"] and "psi" in income["metrics"]
    assert windows[0]["features"]["income"]["status"] == "ok"
    assert windows[0]["features"]["city"]["metric"] == "js"
    assert {"status", "drift", "metric", "value", "threshold"} <= set(windows[0]["prediction"])


def test_drift_text(runner: CliRunner, monitored_db: Path) -> None:
    result = runner.invoke(main, ["drift", "--db", str(monitored_db)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("window 0: 150 rows; prediction ")
    assert any(line.startswith("  drift: income (") for line in lines[-3:])


def test_status(runner: CliRunner, monitored_db: Path) -> None:
    text = runner.invoke(main, ["status", "--db", str(monitored_db)])
    assert text.exit_code == 0
    assert text.stdout.startswith("decision log: 450 rows")
    assert "window 2: 150 rows, 0 rejected" in text.stdout and "income: drift (" in text.stdout
    assert "event: window 2 drift: income:" in text.stdout
    payload = json.loads(runner.invoke(main, ["status", "--db", str(monitored_db), "--json"]).stdout)
    assert payload["decisions"] == 450 and len(payload["windows"]) == 3
    assert payload["features"]["income"]["status"] == "drift"


def test_log(runner: CliRunner, monitored_db: Path) -> None:
    text = runner.invoke(main, ["log", "--db", str(monitored_db), "--tail", "2"])
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["request_id", "time", "(UTC)"] and len(lines) == 3
    assert lines[-1].split()[0] == "450"
    rows = [json.loads(line) for line in runner.invoke(main, ["log", "--db", str(monitored_db), "--json"]).stdout.splitlines()]
    assert len(rows) == 20 and rows[-1]["request_id"] == 450 and rows[-1]["model"] == "churn"


@pytest.mark.parametrize("command", ["status", "drift", "log"])
def test_monitoring_commands_on_a_missing_database(runner: CliRunner, tmp_path: Path, command: str) -> None:
    result = runner.invoke(main, [command, "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: monitoring database '{tmp_path / 'none.db'}' does not exist\n"
    assert not (tmp_path / "none.db").exists()


@pytest.mark.slow
def test_sigterm_while_predicting_loses_nothing(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    import signal
    import subprocess
    import sys

    from edge_runtime.monitoring.store import MonitorStore

    X, _ = cancer_data
    db = tmp_path / "m.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "predict", str(cancer_bundle), "--input", "-", "--db", str(db),
         "--batch-size", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(",".join(X.columns) + "\n")
    for row in X.to_numpy()[:25]:
        child.stdin.write(",".join(map(str, row)) + "\n")
    child.stdin.flush()
    header = child.stdout.readline()
    answered = [child.stdout.readline() for _ in range(25)]  # all 25 answered, the child now waits on stdin
    assert header.startswith("row,prediction") and answered[-1].startswith("25,")
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM
    store = MonitorStore(db)
    assert store.decision_count() == 25  # buffered rows were flushed on the way out
    assert [w["rows"] for w in store.windows()] == [25]
    store.close()


def test_predict_reports_rows_refused_by_load_shedding(runner: CliRunner, tmp_path: Path, cancer_bundle: Path,
                                                       cancer_data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_runtime.errors import OverloadError
    from edge_runtime.runtime import Runtime

    X, _ = cancer_data
    source = tmp_path / "rows.csv"
    X.iloc[:6].to_csv(source, index=False)
    real = Runtime.predict_batch
    calls = []

    def shed_second_chunk(self: Runtime, rows: Any, **kwargs: Any) -> Any:
        calls.append(len(rows))
        if len(calls) == 2:
            raise OverloadError("cpu share 0.90 > 0.5")
        return real(self, rows, **kwargs)

    monkeypatch.setattr(Runtime, "predict_batch", shed_second_chunk)
    result = runner.invoke(main, ["predict", str(cancer_bundle), "--input", str(source), "--batch-size", "2"])
    assert result.exit_code == 1
    assert [r["row"] for r in _csv_rows(result.stdout)] == ["1", "2", "5", "6"]
    assert result.stderr.splitlines() == [
        "Error: row 3: request refused to keep the budget (cpu share 0.90 > 0.5); retry later",
        "Error: row 4: request refused to keep the budget (cpu share 0.90 > 0.5); retry later",
        "Error: 2 of 6 rows rejected; the other rows were written",
    ]
