"""``edge-runtime predict`` on hostile files, and what it leaves behind when stopped."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.ensemble import HistGradientBoostingClassifier

from edge_runtime import MonitoringDatabase
from edge_runtime.cli import main
from edge_runtime.monitoring.input_hash import hash_matrix


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _predict(runner: CliRunner, bundle: Path, source: Path, *args: str) -> Any:
    return runner.invoke(main, ["predict", str(bundle), "--input", str(source), *args])


# ------------------------------------------------------------------ columns
def test_target_and_id_columns_stop_the_run_at_the_header(runner: CliRunner, tmp_path: Path, mixed_bundle: Path,
                                                          mixed_data: Any) -> None:
    X, y = mixed_data
    source = tmp_path / "rows.csv"
    X.iloc[:5].assign(churn=y.iloc[:5], customer_id=range(5)).to_csv(source, index=False)
    out = tmp_path / "out.csv"
    result = _predict(runner, mixed_bundle, source, "--output", str(out))
    assert result.exit_code == 1
    assert result.stderr == ("Error: the header does not match the model's features: "
                             "extra 'churn', 'customer_id'\n")
    assert result.stdout == "" and not out.exists()  # nothing written, not even the header


def test_missing_and_misspelt_columns_are_all_named_with_hints(runner: CliRunner, tmp_path: Path,
                                                               mixed_bundle: Path, mixed_data: Any) -> None:
    source = tmp_path / "rows.csv"
    mixed_data[0].iloc[:5].rename(columns={"age": "Age", "plan": "pln"}).drop(columns=["city"]).to_csv(
        source, index=False)
    result = _predict(runner, mixed_bundle, source)
    assert result.exit_code == 1
    assert result.stderr == ("Error: the header does not match the model's features: missing 'age', 'city', "
                             "'plan'; extra 'Age' (did you mean 'age'?), 'pln' (did you mean 'plan'?)\n")


def test_ignore_extra_columns_notes_them_once(runner: CliRunner, tmp_path: Path, mixed_bundle: Path,
                                              mixed_data: Any) -> None:
    X, y = mixed_data
    source = tmp_path / "rows.csv"
    X.iloc[:30].assign(churn=y.iloc[:30], customer_id=range(30)).to_csv(source, index=False)
    result = _predict(runner, mixed_bundle, source, "--ignore-extra-columns")
    assert result.exit_code == 0, result.output
    assert result.stderr == "Note: ignoring columns that are not features of the model: 'churn', 'customer_id'\n"
    assert len(_csv_rows(result.stdout)) == 30
    dropped = _predict(runner, mixed_bundle, source, "--drop", "churn", "--drop", "customer_id")
    assert dropped.exit_code == 0 and dropped.stderr == "" and dropped.stdout == result.stdout


def test_jsonl_rows_name_every_unknown_key(runner: CliRunner, tmp_path: Path, cancer_bundle: Path,
                                           cancer_data: Any) -> None:
    records = cancer_data[0].iloc[:3].to_dict(orient="records")
    records[1]["colour"] = "red"
    records[1]["Mean Radius"] = records[1].pop("mean radius")
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = _predict(runner, cancer_bundle, source)
    assert result.exit_code == 1
    assert [json.loads(line)["row"] for line in result.stdout.splitlines()] == [1, 3]
    assert result.stderr.splitlines() == [
        "Error: row 2: the keys do not match the model's features: missing 'mean radius'; "
        "extra 'colour', 'Mean Radius' (did you mean 'mean radius'?)",
        "Error: 1 of 3 rows rejected; the other rows were written",
    ]
    ignored = _predict(runner, cancer_bundle, source, "--ignore-extra-columns")
    assert ignored.stderr.splitlines() == [
        "Error: row 2: feature 'mean radius' is missing",
        "Note: ignoring keys that are not features of the model: 'colour', 'Mean Radius'",
        "Error: 1 of 3 rows rejected; the other rows were written",
    ]


# ------------------------------------------------------------------ encodings
def test_byte_order_mark_from_excel(runner: CliRunner, tmp_path: Path, mixed_bundle: Path, mixed_data: Any) -> None:
    source = tmp_path / "excel.csv"
    mixed_data[0].iloc[:20].to_csv(source, index=False, encoding="utf-8-sig")
    assert source.read_bytes().startswith(b"\xef\xbb\xbf")
    result = _predict(runner, mixed_bundle, source)
    assert result.exit_code == 0, result.output
    assert len(_csv_rows(result.stdout)) == 20


def test_an_undecodable_row_is_reported_and_every_other_row_served(runner: CliRunner, tmp_path: Path,
                                                                   mixed_bundle: Path, mixed_data: Any) -> None:
    X, _ = mixed_data
    source = tmp_path / "rows.csv"
    X.iloc[:10].assign(note="ok").to_csv(source, index=False)
    lines = source.read_bytes().split(b"\n")
    lines[7] = lines[7][:-2] + b"\xe9k"  # row 7's note: "ok" becomes latin-1 "ék"
    source.write_bytes(b"\n".join(lines))
    result = _predict(runner, mixed_bundle, source, "--drop", "note")
    assert result.exit_code == 1
    assert [r["row"] for r in _csv_rows(result.stdout)] == [str(i) for i in range(1, 11) if i != 7]
    position = len(lines[7]) - 2
    assert result.stderr.splitlines() == [
        f"Error: row 7: not valid utf-8 (byte 0xe9 at position {position}); use --encoding to name the encoding "
        "of the file",
        "Error: 1 of 10 rows rejected; the other rows were written",
    ]
    latin = _predict(runner, mixed_bundle, source, "--drop", "note", "--encoding", "latin-1")
    assert latin.exit_code == 0 and len(_csv_rows(latin.stdout)) == 10
    unknown = _predict(runner, mixed_bundle, source, "--encoding", "klingon")
    assert unknown.exit_code == 1 and unknown.stderr == "Error: unknown encoding 'klingon'\n"


# ------------------------------------------------------------------ oversized fields
def test_oversized_fields_get_bounded_messages_and_the_run_goes_on(runner: CliRunner, tmp_path: Path,
                                                                   cancer_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    frame = X.iloc[:5].astype(object)
    frame.iloc[1, 0] = "7" * 100_000  # a 100 KB field
    frame.iloc[3, 0] = "9" * 200_000  # beyond the csv module's field limit (131,072)
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    result = _predict(runner, cancer_bundle, source)
    assert result.exit_code == 1
    assert [r["row"] for r in _csv_rows(result.stdout)] == ["1", "3", "5"]
    lines = result.stderr.splitlines()
    assert lines[0] == ("Error: row 2: feature 'mean radius': value "
                        f"{'7' * 60!r}… (100,000 characters) is not finite (NaN or infinity is rejected by "
                        "the input policy)")
    assert lines[1].startswith("Error: row 4: a field is longer than 131,072 characters, the most a CSV field "
                               "may hold; the row reads '99999")
    assert lines[1].endswith("… (200,xxx characters)".replace("xxx", lines[1][-15:-12]))
    assert lines[2] == "Error: 2 of 5 rows rejected; the other rows were written"
    assert max(map(len, lines)) < 300


# ------------------------------------------------------------------ float32
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_values_beyond_float32_in_a_csv(runner: CliRunner, tmp_path: Path, cancer_bundle: Path,
                                        cancer_data: Any) -> None:
    X, _ = cancer_data
    frame = X.iloc[:4].astype(object)
    frame.iloc[1, 3] = "1e308"
    frame.iloc[2, 3] = "1e309"
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    result = _predict(runner, cancer_bundle, source)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: row 2: feature 'mean area': value '1e308' is outside the float32 range the model reads (±3.4e38)",
        "Error: row 3: feature 'mean area': value '1e309' is not finite (NaN or infinity is rejected by the "
        "input policy)",
        "Error: 2 of 4 rows rejected; the other rows were written",
    ]


# ------------------------------------------------------------------ output
def test_output_lines_end_with_newline_not_crlf(runner: CliRunner, tmp_path: Path, cancer_bundle: Path,
                                                cancer_data: Any) -> None:
    source = tmp_path / "rows.csv"
    cancer_data[0].iloc[:3].to_csv(source, index=False)
    out = tmp_path / "out.csv"
    assert _predict(runner, cancer_bundle, source, "--output", str(out)).exit_code == 0
    data = out.read_bytes()
    assert b"\r" not in data and data.count(b"\n") == 4


@pytest.mark.parametrize("n", [20_000, pytest.param(200_000, marks=pytest.mark.slow)])
def test_bad_row_errors_are_counted_in_bounded_memory(runner: CliRunner, tmp_path: Path, cancer_bundle: Path,
                                                      cancer_data: Any, n: int) -> None:
    source = tmp_path / "bad.csv"
    with open(source, "w") as fh:
        fh.write(",".join(cancer_data[0].columns) + "\n")
        fh.write("1,2\n" * n)  # every row ragged
    tracemalloc.start()
    try:
        result = _predict(runner, cancer_bundle, source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 22
    assert lines[19] == "Error: row 20: 2 cells, the header has 30"
    assert lines[20:] == [f"Error: ... and {n - 20} more bad rows", f"Error: {n} of {n} rows rejected; the other "
                          "rows were written"]
    # Measured: 1.2 MB for either n (one batch of rows at a time), where keeping every
    # error took 3.9 MB for 20,000 rows and 33 MB for 200,000.
    assert peak < 2_500_000, peak


# ------------------------------------------------------------------ signals and closed pipes
def _large_csv(path: Path, X: pd.DataFrame, n: int, seed: int, bad: tuple[int, ...] = ()) -> np.ndarray:
    """n distinct rows near the data's (so each input hash is unique); ``bad`` rows get text in a number."""
    rng = np.random.default_rng(seed)
    rows = X.to_numpy()[rng.integers(0, len(X), n)] * rng.uniform(0.9, 1.1, (n, X.shape[1]))
    frame = pd.DataFrame(rows, columns=X.columns).astype(object)
    for r in bad:
        frame.iloc[r - 1, 0] = "oops"
    frame.to_csv(path, index=False)
    return rows


@pytest.fixture(scope="module")
def large_input(tmp_path_factory: pytest.TempPathFactory, cancer_data: Any) -> tuple[Path, np.ndarray]:
    """40,000 rows (a run of several seconds), rows 2 and 5 bad; the float values of every row."""
    source = tmp_path_factory.mktemp("large") / "rows.csv"
    return source, _large_csv(source, cancer_data[0], 40_000, 0, bad=(2, 5))


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "signum"), [(seed, signal.SIGTERM) for seed in range(6)] + [(6, signal.SIGINT)])
def test_a_stop_leaves_every_logged_decision_in_the_output(tmp_path: Path, cancer_bundle: Path,
                                                           large_input: tuple[Path, np.ndarray], seed: int,
                                                           signum: signal.Signals) -> None:
    source, rows = large_input
    db, out, config = tmp_path / "m.db", tmp_path / "out.csv", tmp_path / "device.toml"
    # Monitoring inline, with features logged: the widest window between a batch's decisions
    # reaching the monitor and its answers reaching the output. Before the fix, 5 of 8 runs
    # like these (and 2 of 6 with the default config) had a batch in the log but not in the output.
    config.write_text("[monitoring]\nbackground = false\nlog_features = true\n")
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "predict", str(cancer_bundle), "--input", str(source), "--db", str(db),
         "--output", str(out), "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 60
    while (not out.exists() or out.stat().st_size < 20_000) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(np.random.default_rng(seed).uniform(0.0, 0.5))  # a seeded moment, mid-run
    child.send_signal(signum)  # SIGINT: what Ctrl-C sends
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signum, stderr
    written = _csv_rows(out.read_text())
    assert 0 < len(written) < len(rows) - 2
    with MonitoringDatabase(db) as log:
        decisions = list(log.decisions())
    # Every decision in the log is in the output: the log holds the first answered rows, in order,
    # each with the input hash of the row the output answers.
    assert 0 < len(decisions) <= len(written)
    answered = np.array([int(r["row"]) for r in written[: len(decisions)]])
    expected = [f"{h & 0xFFFFFFFFFFFFFFFF:016x}" for h in hash_matrix(rows[answered - 1].astype(np.float32)).tolist()]
    assert [d.input_hash for d in decisions] == expected
    assert [d.prediction for d in decisions] == [r["prediction"] for r in written[: len(decisions)]]
    lines = stderr.splitlines()
    assert lines[:2] == ["Error: row 2: feature 'mean radius': value 'oops' is not a number",
                         "Error: row 5: feature 'mean radius': value 'oops' is not a number"]
    assert lines[-1].startswith(f"Error: stopped by {signum.name} after ")
    assert lines[-1].endswith(" rows; 2 of them rejected, the other rows were written")
    stopped_after = int(lines[-1].split()[5])
    assert int(written[-1]["row"]) == stopped_after  # every row read was answered and written


@pytest.mark.slow
def test_a_closed_output_pipe_prints_the_errors_and_no_traceback(tmp_path: Path, cancer_bundle: Path,
                                                                 cancer_data: Any) -> None:
    source = tmp_path / "rows.csv"
    _large_csv(source, cancer_data[0], 10_000, 1, bad=(3,))
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "predict", str(cancer_bundle), "--input", str(source)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    for _ in range(5):
        child.stdout.readline()
    child.stdout.close()  # as `| head -5` does
    stderr = child.stderr.read().decode()
    child.wait(timeout=60)
    assert child.returncode == 1
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    lines = stderr.splitlines()
    assert lines[0] == "Error: row 3: feature 'mean radius': value 'oops' is not a number"
    assert lines[-1].startswith("Error: the output was closed: rows ")
    assert lines[-1].endswith(" were predicted but may be missing from it, and no later row was read; "
                              "1 of 1024 rows rejected")


# ------------------------------------------------------------------ True/False columns
@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A bundle exported by the CLI from a training CSV with two True/False columns, one with gaps."""
    tmp = tmp_path_factory.mktemp("loans")
    rng = np.random.default_rng(11)
    n = 1500
    frame = pd.DataFrame({"amount": rng.normal(10, 3, n).round(2),
                          "repaid_loan_on_prev_car": rng.random(n) < 0.6,
                          "insured": np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.5)})
    frame.to_csv(tmp / "train.csv", index=False)
    frame = pd.read_csv(tmp / "train.csv")  # what pandas makes of it: bool, and objects with NaN
    assert frame["repaid_loan_on_prev_car"].dtype == bool and frame["insured"].dtype == object
    y = (frame["amount"] / 10 + frame["repaid_loan_on_prev_car"] + rng.normal(0, 0.5, n) > 1.6).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(frame, y)
    joblib_path = tmp / "model.joblib"
    joblib.dump(model, joblib_path)
    result = CliRunner().invoke(main, ["export", str(joblib_path), "--train-data", str(tmp / "train.csv"),
                                       "--name", "loans", "--version", "1", "--out", str(tmp / "bundle")])
    assert result.exit_code == 0, result.output
    return {"bundle": tmp / "bundle", "model": model, "frame": frame}


def test_a_manifest_of_true_false_columns_lists_boolean_features(loans: dict[str, Any]) -> None:
    features = json.loads((loans["bundle"] / "manifest.json").read_text())["input_schema"]["features"]
    assert [(f["name"], f["kind"], f["allows_missing"]) for f in features] == [
        ("amount", "numeric", False), ("repaid_loan_on_prev_car", "boolean", False), ("insured", "boolean", True)]


def test_a_csv_of_true_false_columns_is_served_like_scikit_learn(runner: CliRunner, tmp_path: Path,
                                                                 loans: dict[str, Any]) -> None:
    frame = loans["frame"].iloc[:400]
    source = tmp_path / "live.csv"
    frame.to_csv(source, index=False)  # True, False and empty cells, as the training CSV
    text = source.read_text()
    result = _predict(runner, loans["bundle"], source, "--db", str(tmp_path / "m.db"))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    served = _csv_rows(result.stdout)
    assert [int(r["prediction"]) for r in served] == loans["model"].predict(frame).tolist()
    # Every other spelling gives the same answers.
    for true, false in (("true", "false"), ("TRUE", "FALSE"), ("1", "0"), ("1.0", "0.0")):
        spelt = tmp_path / f"{true}.csv"
        spelt.write_text(text.replace("True", true).replace("False", false))
        again = _predict(runner, loans["bundle"], spelt)
        assert again.exit_code == 0 and again.stdout == result.stdout, (true, again.output)


def test_bad_true_false_values_are_one_error_line_each(runner: CliRunner, tmp_path: Path,
                                                       loans: dict[str, Any]) -> None:
    source = tmp_path / "live.csv"
    source.write_text("amount,repaid_loan_on_prev_car,insured\n"
                      "10.5,True,False\n"
                      "9.0,yes,True\n"
                      "8.0,False,maybe\n"
                      "7.5,2,\n"
                      "6.0,,True\n"
                      "5.5,false,1\n")
    result = _predict(runner, loans["bundle"], source)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: row 2: feature 'repaid_loan_on_prev_car': value 'yes' is not a boolean (True/False, true/false "
        "or 1/0)",
        "Error: row 3: feature 'insured': value 'maybe' is not a boolean (True/False, true/false or 1/0)",
        "Error: row 4: feature 'repaid_loan_on_prev_car': value '2' is not a boolean (True/False, true/false "
        "or 1/0)",
        "Error: row 5: feature 'repaid_loan_on_prev_car': value None is not finite (NaN or infinity is "
        "rejected by the input policy)",
        "Error: 4 of 6 rows rejected; the other rows were written",
    ]
    assert [r["row"] for r in _csv_rows(result.stdout)] == ["1", "6"]  # row 4's empty 'insured' is allowed


def test_json_lines_take_json_booleans_and_their_spellings(runner: CliRunner, tmp_path: Path,
                                                           loans: dict[str, Any]) -> None:
    source = tmp_path / "live.jsonl"
    rows = [{"amount": 10.5, "repaid_loan_on_prev_car": True, "insured": False},
            {"amount": 10.5, "repaid_loan_on_prev_car": "True", "insured": 0},
            {"amount": 10.5, "repaid_loan_on_prev_car": 1, "insured": None},
            {"amount": 10.5, "repaid_loan_on_prev_car": "no", "insured": True}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = _predict(runner, loans["bundle"], source)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: row 4: feature 'repaid_loan_on_prev_car': value 'no' is not a boolean (True/False, true/false "
        "or 1/0)",
        "Error: 1 of 4 rows rejected; the other rows were written",
    ]
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["row"] for a in answers] == [1, 2, 3]
    assert answers[0]["proba_1"] == answers[1]["proba_1"]
    expected = loans["model"].predict_proba(pd.DataFrame(
        {"amount": [10.5, 10.5], "repaid_loan_on_prev_car": [True, True], "insured": [False, np.nan]}))[:, 1]
    assert [answers[0]["proba_1"], answers[2]["proba_1"]] == pytest.approx(expected.tolist(), abs=1e-5)
