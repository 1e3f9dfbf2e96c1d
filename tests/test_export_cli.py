"""``edge-runtime export`` as a new user meets it: CSV columns read as the model needs, pickles that
hold no estimator, the parity summary, and every error as one ``Error: ...`` line."""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
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

from edge_runtime.cli import main

ZIPS = ["01000", "02100", "03300", "04500", "75001"]


def _zip_frame(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Zip codes that pandas alone reads as int64 ("01000" -> 1000), and one numeric column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"zip": rng.choice(ZIPS, n), "age": rng.normal(40, 10, n).round(1)})
    y = np.where((frame["zip"] == "01000") | (frame["age"] > 45), "yes", "no")
    return frame, y


def _zip_pipeline() -> Pipeline:
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["zip"]),
                             ("num", StandardScaler(), ["age"])])
    return Pipeline([("pre", pre), ("clf", LogisticRegression())])


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def zip_files(tmp_path: Path) -> dict[str, Any]:
    frame, y = _zip_frame()
    model = _zip_pipeline().fit(frame, y)
    files = {"model": tmp_path / "zip.joblib", "train": tmp_path / "train.csv", "rows": tmp_path / "rows.csv"}
    joblib.dump(model, files["model"])
    frame.assign(y=y).to_csv(files["train"], index=False)
    frame.to_csv(files["rows"], index=False)
    return {**files, "estimator": model, "frame": frame}


def _export(runner: CliRunner, model: Path, train: Path, out: Path, *extra: str) -> Any:
    return runner.invoke(main, ["export", str(model), "--train-data", str(train), "--name", "m",
                                "--version", "1", "--out", str(out), *extra])


def _one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1, result.stderr
    return str(result.stderr).rstrip("\n")


# ------------------------------------------------------------------ categorical columns stay strings
def test_zip_codes_export_as_strings_and_serve_like_scikit_learn(runner: CliRunner, zip_files: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    assert pd.read_csv(zip_files["train"])["zip"].dtype == np.int64  # what pandas alone does with them
    out = tmp_path / "bundle"
    result = _export(runner, zip_files["model"], zip_files["train"], out, "--target", "y")
    assert result.exit_code == 0, result.output
    features = json.loads((out / "manifest.json").read_text())["input_schema"]["features"]
    assert features[0] == {"name": "zip", "kind": "categorical", "categories": ZIPS, "allows_missing": False}
    assert features[1]["kind"] == "numeric"

    served = runner.invoke(main, ["predict", str(out), "--input", str(zip_files["rows"])])
    assert served.exit_code == 0, served.output
    rows = list(csv.DictReader(io.StringIO(served.stdout)))
    expected = zip_files["estimator"].predict(pd.read_csv(zip_files["rows"], dtype={"zip": str}))
    assert len(rows) == len(expected) == len(zip_files["frame"])
    assert [r["prediction"] for r in rows] == expected.tolist()


def test_categorical_option_for_a_model_whose_encoder_names_no_column(runner: CliRunner, tmp_path: Path) -> None:
    """Fitted on an array, the encoder knows column 0, not 'zip': --categorical tells."""
    frame, y = _zip_frame()
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), [0]), ("num", StandardScaler(), [1])])
    model = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame.to_numpy(dtype=object), y)
    model_file, train = tmp_path / "array.joblib", tmp_path / "train.csv"
    joblib.dump(model, model_file)
    frame.assign(y=y).to_csv(train, index=False)

    as_numbers = _export(runner, model_file, train, tmp_path / "a", "--target", "y")
    assert "Category '01000' is not an int64" in _one_error_line(as_numbers)
    for option in (["--categorical", "zip"], ["--dtype", "zip=str"]):
        out = tmp_path / option[0].strip("-")
        result = _export(runner, model_file, train, out, "--target", "y", *option)
        assert result.exit_code == 0, result.output
        features = json.loads((out / "manifest.json").read_text())["input_schema"]["features"]
        assert features[0]["categories"] == ZIPS


def test_string_columns_keep_words_pandas_takes_for_missing(runner: CliRunner, tmp_path: Path) -> None:
    """'NA' (Namibia) is a category to the device, so export reads it as one; only an empty cell is missing."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"country": rng.choice(["NA", "FR", "null"], 300), "age": rng.normal(40, 10, 300)})
    y = np.where((frame["country"] == "NA") | (frame["age"] > 45), "yes", "no")
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["country"]), ("num", StandardScaler(), ["age"])])
    model = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, y)
    model_file, train = tmp_path / "m.joblib", tmp_path / "train.csv"
    joblib.dump(model, model_file)
    frame.assign(y=y).to_csv(train, index=False)
    out = tmp_path / "b"
    result = _export(runner, model_file, train, out, "--target", "y")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input_schema"]["features"][0]["categories"] == ["FR", "NA", "null"]
    assert manifest["parity"]["rejected_rows"] == 0


@pytest.mark.parametrize(("extra", "line"), [
    (["--dtype", "zip=int"],
     "Error: column 'zip': --dtype zip=int contradicts the model's OneHotEncoder, which was fitted on strings"),
    (["--categorical", "age"],
     "Error: column 'age': --categorical age and --dtype age=float contradict each other"),
    (["--dtype", "zipp=str"], "Error: --dtype column 'zipp' is not in {train} (did you mean 'zip'?)"),
    (["--categorical", "city"], "Error: --categorical column 'city' is not in {train}"),
    (["--dtype", "age=int"], "Error: column 'age' of {train} is read as int, but row 1 holds '{age}'"),
    (["--target", "Y"], "Error: --target column 'Y' is not in {train} (did you mean 'y'?)"),
])
def test_column_option_errors_name_the_column(runner: CliRunner, zip_files: dict[str, Any], tmp_path: Path,
                                              extra: list[str], line: str) -> None:
    if extra == ["--categorical", "age"]:
        extra = [*extra, "--dtype", "age=float"]
    result = _export(runner, zip_files["model"], zip_files["train"], tmp_path / "b", *extra)
    age = pd.read_csv(zip_files["train"], dtype=str)["age"].iloc[0]
    assert _one_error_line(result) == line.format(train=zip_files["train"], age=age)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(("value", "message"), [("zip=text", "'zip=text': TYPE must be one of str, float, int"),
                                                ("zip", "'zip' is not COL=TYPE")])
def test_malformed_dtype_is_a_usage_error(runner: CliRunner, zip_files: dict[str, Any], tmp_path: Path,
                                          value: str, message: str) -> None:
    result = _export(runner, zip_files["model"], zip_files["train"], tmp_path / "b", "--dtype", value)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '--dtype': {message}"


# ------------------------------------------------------------------ pickles that hold no estimator
def _bad_pickles(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    model = _zip_pipeline().fit(*_zip_frame(50))
    whole = pickle.dumps(model)
    return {
        "dict": (pickle.dumps({"a": 1}), "holds a dict, not a fitted scikit-learn estimator"),
        "wrapped": (pickle.dumps({"model": model, "columns": ["zip"]}),
                    ("holds a dict, not a fitted scikit-learn estimator (its key 'model' holds a Pipeline: "
                     "save that object alone)")),
        "list": (pickle.dumps([1, 2, 3]), "holds a list, not a fitted scikit-learn estimator"),
        "unfitted": (pickle.dumps(LogisticRegression()),
                     "holds an unfitted LogisticRegression, not a fitted scikit-learn estimator"),
        "class": (pickle.dumps(LogisticRegression),
                  "holds the class LogisticRegression (not a fitted instance), not a fitted scikit-learn estimator"),
        "random": (bytes(np.random.default_rng(1).integers(0, 256, 100, dtype=np.uint8)),
                   "is not a readable pickle or joblib file (KeyError: 255)"),
        "truncated": (whole[: len(whole) // 2], "is not a readable pickle or joblib file"),
        "empty": (b"", "ends before its pickle does (empty or truncated)"),
        # The GLOBAL opcode of pickle protocol 0: a class of a package that is not installed here.
        "missing-class": (b"cedge_models_nowhere\nChurnModel\n.",
                          ("holds an object whose class cannot be loaded here (No module named "
                           "'edge_models_nowhere'); install the package that defines it")),
    }


@pytest.mark.parametrize("kind", ["dict", "wrapped", "list", "unfitted", "class", "random", "truncated", "empty",
                                  "missing-class"])
def test_a_pickle_without_a_fitted_estimator_is_one_error_line(runner: CliRunner, zip_files: dict[str, Any],
                                                               tmp_path: Path, kind: str) -> None:
    content, message = _bad_pickles(tmp_path)[kind]
    thing = tmp_path / "thing.pkl"
    thing.write_bytes(content)
    line = _one_error_line(_export(runner, thing, zip_files["train"], tmp_path / "b", "--target", "y"))
    assert line.startswith(f"Error: '{thing}' {message}"), line
    assert not (tmp_path / "b").exists()


def test_a_class_defined_in_the_saving_script_is_explained(runner: CliRunner, zip_files: dict[str, Any],
                                                           tmp_path: Path) -> None:
    thing = tmp_path / "thing.pkl"
    thing.write_bytes(b"c__main__\nChurnModel\n.")  # pickled by a training script that defined the class
    line = _one_error_line(_export(runner, thing, zip_files["train"], tmp_path / "b"))
    assert line.startswith(f"Error: '{thing}' holds an object whose class cannot be loaded here (")
    assert "'ChurnModel'" in line and "'__main__'" in line  # pickle's own words differ between its two unpicklers
    assert line.endswith("a class defined in the script that saved it: move the class to a module both can "
                         "import, or call converters.export() from that script")


# ------------------------------------------------------------------ the parity summary
def test_parity_summary_counts_what_the_manifest_counts(runner: CliRunner, tmp_path: Path) -> None:
    """NaN in a categorical: the device refuses those rows; the summary says how many, as the manifest does."""
    rng = np.random.default_rng(0)
    n = 2500
    frame = pd.DataFrame({"plan": rng.choice(["basic", "pro", None], n, p=[0.45, 0.4, 0.15]),
                          "age": rng.normal(40, 10, n).round(1)})
    y = np.where((frame["plan"] == "pro") | (frame["age"] > 45), "yes", "no")
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                             ("num", StandardScaler(), ["age"])])
    model = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, y)
    model_file, train, out = tmp_path / "m.joblib", tmp_path / "train.csv", tmp_path / "b"
    joblib.dump(model, model_file)
    frame.assign(y=y).to_csv(train, index=False)

    result = _export(runner, model_file, train, out, "--target", "y")
    assert result.exit_code == 0, result.output
    parity = json.loads((out / "manifest.json").read_text())["parity"]
    assert parity["rows"] == 2000 and parity["rejected_rows"] > 0  # the default sample, NaN rows refused
    line = result.stdout.splitlines()[1]
    match = re.fullmatch(r"parity: agreement (\S+), max abs diff \S+, (\d+) of (\d+) compared rows beyond "
                         r"tolerance; (\d+) of (\d+) rows rejected by the bundle's input checks, not compared", line)
    assert match, line
    agreement, beyond, compared, rejected, rows = match.groups()
    assert float(agreement) == pytest.approx(parity["agreement"], abs=5e-5)
    assert int(beyond) == parity["rows_beyond_tolerance"]
    assert int(rejected) == parity["rejected_rows"] and int(rows) == parity["rows"]
    assert int(compared) == parity["rows"] - parity["rejected_rows"]


def test_parity_summary_without_rejected_rows(runner: CliRunner, zip_files: dict[str, Any], tmp_path: Path) -> None:
    result = _export(runner, zip_files["model"], zip_files["train"], tmp_path / "b", "--target", "y")
    parity = json.loads((tmp_path / "b" / "manifest.json").read_text())["parity"]
    assert result.stdout.splitlines()[1] == (
        f"parity: agreement 1.0000, max abs diff {parity['max_abs_diff']:.2e}, 0 of {len(zip_files['frame'])} "
        "compared rows beyond tolerance")


# ------------------------------------------------------------------ missing columns
def test_validation_data_lacking_columns_names_them(runner: CliRunner, zip_files: dict[str, Any],
                                                    tmp_path: Path) -> None:
    val = tmp_path / "val.csv"
    zip_files["frame"].drop(columns=["age"]).to_csv(val, index=False)
    result = _export(runner, zip_files["model"], zip_files["train"], tmp_path / "b", "--target", "y",
                     "--validation-data", str(val))
    assert _one_error_line(result) == "Error: the validation data lacks columns the model was fitted on: 'age'"


def test_validation_data_without_the_target_is_fine(runner: CliRunner, zip_files: dict[str, Any],
                                                    tmp_path: Path) -> None:
    result = _export(runner, zip_files["model"], zip_files["train"], tmp_path / "b", "--target", "y",
                     "--validation-data", str(zip_files["rows"]))
    assert result.exit_code == 0, result.output
    parity = json.loads((tmp_path / "b" / "manifest.json").read_text())["parity"]
    assert parity["source"] == "validation set" and parity["rows"] == len(zip_files["frame"])


def test_training_data_lacking_columns_names_them(runner: CliRunner, zip_files: dict[str, Any],
                                                  tmp_path: Path) -> None:
    train = tmp_path / "short.csv"
    pd.read_csv(zip_files["train"], dtype={"zip": str}).drop(columns=["age", "zip"]).to_csv(train, index=False)
    result = _export(runner, zip_files["model"], train, tmp_path / "b", "--target", "y")
    assert _one_error_line(result) == "Error: the training data lacks columns the model was fitted on: 'zip', 'age'"


def test_array_fitted_model_and_a_csv_with_extra_columns(runner: CliRunner, zip_files: dict[str, Any],
                                                         tmp_path: Path) -> None:
    """Without --target, the target is one more column: a model fitted on an array cannot say which."""
    frame = zip_files["frame"]
    model = LogisticRegression().fit(frame[["age"]].to_numpy(), frame["zip"] == "01000")
    model_file, train = tmp_path / "array.joblib", tmp_path / "train.csv"
    joblib.dump(model, model_file)
    frame[["age"]].assign(y=1).to_csv(train, index=False)
    result = _export(runner, model_file, train, tmp_path / "b")
    assert _one_error_line(result) == (
        "Error: the training data has 2 columns ('age', 'y') but LogisticRegression was fitted on an array of 1, "
        "which names none: keep exactly the columns it was fitted on, in that order")
    assert _export(runner, model_file, train, tmp_path / "b", "--target", "y").exit_code == 0
