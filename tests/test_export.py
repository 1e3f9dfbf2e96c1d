"""Export: conversion of every supported model type, parity, atomic writes, bad models, column types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer, make_column_transformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from converters import ParityPolicy, export
from converters.features import csv_dtypes, read_csv_frame
from converters.sklearn import encoded_columns
from edge_runtime import Runtime
from edge_runtime.errors import (
    ConfigError,
    ExportError,
    ParityError,
    UnsupportedModelError,
)
from edge_runtime.serving.schema import InputLayout
from tests.conftest import mixed_pipeline

CLASSIFIERS = [
    LogisticRegression(max_iter=2000),
    RandomForestClassifier(n_estimators=30, random_state=0),
    ExtraTreesClassifier(n_estimators=30, random_state=0),
    GradientBoostingClassifier(n_estimators=30, random_state=0),
    HistGradientBoostingClassifier(max_iter=30, random_state=0),
    make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=0)),
]
REGRESSORS = [
    LinearRegression(),
    Ridge(),
    RandomForestRegressor(n_estimators=30, random_state=0),
    ExtraTreesRegressor(n_estimators=30, random_state=0),
    GradientBoostingRegressor(n_estimators=30, random_state=0),
    HistGradientBoostingRegressor(max_iter=30, random_state=0),
    make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=500, random_state=0)),
]


def _name(model: Any) -> str:
    return "+".join(type(s).__name__ for _, s in model.steps) if hasattr(model, "steps") else type(model).__name__


@pytest.mark.parametrize("model", CLASSIFIERS, ids=_name)
def test_classifier_parity(model: Any, tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    model.fit(X, y)
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    parity = result.parity
    assert parity["passed"] and parity["label_agreement"] >= 0.99
    assert parity["rows"] == 569 and parity["rejected_rows"] == 0
    assert parity["max_abs_diff"] < 1e-3
    with Runtime(result.path) as rt:
        batch = rt.predict_batch(X)
    assert np.mean(batch.labels == model.predict(X)) >= 0.99
    assert batch.scores.dtype == np.float32 and batch.scores.shape == (569, 2)  # no ZipMap


@pytest.mark.parametrize("model", REGRESSORS, ids=_name)
def test_regressor_parity(model: Any, tmp_path: Path) -> None:
    X, y = load_diabetes(return_X_y=True)
    model.fit(X, y)
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert result.parity["passed"] and result.parity["agreement"] >= 0.99
    assert "label_agreement" not in result.parity
    with Runtime(result.path) as rt:
        values = rt.predict_batch(X).labels
    assert values == pytest.approx(model.predict(X), rel=1e-3, abs=1e-3)


def test_histgradientboosting_converts_with_the_pinned_protobuf(tmp_path: Path) -> None:
    """skl2onnx fails on HistGradientBoosting under protobuf 7; the export extra pins <7."""
    import google.protobuf

    assert int(google.protobuf.__version__.split(".")[0]) < 7
    X, y = load_iris(return_X_y=True)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    result = export(model, X, y, name="hgb", version="1", out_dir=tmp_path / "b")
    assert result.parity["passed"]
    assert result.manifest.output_schema.classes == (0, 1, 2)


@pytest.mark.parametrize("classifier", [LogisticRegression(max_iter=1000),
                                        RandomForestClassifier(n_estimators=30, random_state=0),
                                        HistGradientBoostingClassifier(max_iter=30, random_state=0)],
                         ids=_name)
def test_mixed_dataframe_pipeline(classifier: Any, mixed_data: Any, tmp_path: Path) -> None:
    X, y = mixed_data
    model = mixed_pipeline(classifier).fit(X, y)
    result = export(model, X, y, name="churn", version="1", out_dir=tmp_path / "b")
    schema = result.manifest.input_schema
    assert schema.layout is InputLayout.COLUMNS
    assert [f.kind.value for f in schema.features] == ["numeric", "numeric", "numeric", "categorical", "categorical"]
    assert schema.features[3].categories == ("lyon", "nice", "paris")
    assert schema.features[0].allows_missing and not schema.features[1].allows_missing
    assert result.parity["label_agreement"] >= 0.99
    with Runtime(result.path) as rt:
        batch = rt.predict_batch(X)
    assert batch.labels.tolist() == model.predict(X).tolist()
    # float32 thresholds may move single rows in trees: they are counted, not hidden. The
    # report counts what an independent comparison on the same rows (all 600: under the
    # 2,000-row sample) counts.
    diff = np.abs(model.predict_proba(X) - batch.scores).max(axis=1)
    assert result.parity["rows"] == len(X) and result.parity["rejected_rows"] == 0
    assert result.parity["rows_beyond_tolerance"] == int((diff > result.parity["atol"]).sum())
    assert result.parity["max_abs_diff"] == pytest.approx(float(diff.max()), abs=1e-12)


def test_numpy_training_data_gets_x_names_and_dataframe_keeps_names(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    result = export(model, X, y, name="iris", version="1", out_dir=tmp_path / "a")
    assert result.manifest.input_schema.names == ("x0", "x1", "x2", "x3")
    named = export(model, X, y, name="iris", version="1", out_dir=tmp_path / "b",
                   feature_names=["sl", "sw", "pl", "pw"])
    assert named.manifest.input_schema.names == ("sl", "sw", "pl", "pw")


def test_dataframe_with_extra_target_column_is_aligned_to_the_model(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    result = export(model, X.assign(target=y), y, name="iris", version="1", out_dir=tmp_path / "b")
    assert "target" not in result.manifest.input_schema.names
    with pytest.raises(ExportError, match="^the training data lacks columns the model was fitted on: "
                                          r"'petal width \(cm\)'$"):
        export(model, X.drop(columns=["petal width (cm)"]), y, name="iris", version="1", out_dir=tmp_path / "c")
    with pytest.raises(ExportError, match="^the validation data lacks columns the model was fitted on: "
                                          r"'sepal length \(cm\)', 'petal width \(cm\)'$"):
        export(model, X, y, name="iris", version="1", out_dir=tmp_path / "d",
               X_val=X.drop(columns=["petal width (cm)", "sepal length (cm)"]))
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_array_fitted_model_needs_as_many_columns(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X.to_numpy(), y)
    with pytest.raises(ExportError, match=r"^the training data has 5 columns \('sepal length \(cm\)', .*, "
                                          r"'target'\) but LogisticRegression was fitted on an array of 4"):
        export(model, X.assign(target=y), y, name="iris", version="1", out_dir=tmp_path / "b")
    # a validation frame is aligned to the training frame's columns
    result = export(model, X, y, name="iris", version="1", out_dir=tmp_path / "c", X_val=X.assign(target=y))
    assert result.parity["rows"] == len(X) and result.parity["rejected_rows"] == 0


def test_validation_set_is_used_for_parity(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X[:100], y[:100])
    result = export(model, X[:100], y[:100], name="i", version="1", out_dir=tmp_path / "b", X_val=X[100:])
    assert result.parity["source"] == "validation set" and result.parity["rows"] == 50


def test_failed_parity_writes_nothing(tmp_path: Path) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)
    strict = ParityPolicy(atol=0.0, rtol=0.0, min_agreement=1.0)
    with pytest.raises(ParityError, match=r"parity check failed for RandomForestRegressor: agreement .* of 442 "
                                          r"compared rows beyond tolerance, .* 0 of 442 rows rejected .* "
                                          "no bundle written"):
        export(model, X, y, name="m", version="1", out_dir=tmp_path / "b", parity=strict)
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor a staging directory


def test_existing_bundle_needs_overwrite(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    export(model, X, y, name="i", version="1", out_dir=tmp_path / "b")
    with pytest.raises(ExportError, match="already exists; pass overwrite=True"):
        export(model, X, y, name="i", version="2", out_dir=tmp_path / "b")
    export(model, X, y, name="i", version="2", out_dir=tmp_path / "b", overwrite=True)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["version"] == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_unsupported_models_are_refused(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    with pytest.raises(UnsupportedModelError, match="KMeans is neither a classifier nor a regressor"):
        export(KMeans(n_clusters=3, n_init=1).fit(X), X, name="k", version="1", out_dir=tmp_path / "k")
    with pytest.raises(UnsupportedModelError, match="LogisticRegression is not fitted"):
        export(LogisticRegression(), X, y, name="l", version="1", out_dir=tmp_path / "l")
    log_model = make_pipeline(FunctionTransformer(np.log1p), Ridge()).fit(X, y)
    with pytest.raises(UnsupportedModelError, match="skl2onnx cannot convert Pipeline: FunctionTransformer"):
        export(log_model, X, y, name="f", version="1", out_dir=tmp_path / "f")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("thing", "message"), [
    ({"a": 1}, "a dict"),
    ([1, 2], "a list"),
    (None, "None"),
    (b"\x80\x04", "a bytes"),
    (LogisticRegression, r"the class LogisticRegression \(not a fitted instance\)"),
    ({"model": LogisticRegression()},
     r"a dict \(its key 'model' holds an unfitted LogisticRegression: save that object alone\)"),
])
def test_non_estimators_are_refused(thing: Any, message: str, tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    with pytest.raises(UnsupportedModelError,
                       match=f"^export needs a fitted scikit-learn classifier or regressor, got {message}$"):
        export(thing, X, y, name="t", version="1", out_dir=tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ column types from the encoders
def _zip_frame(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"zip": rng.choice(["01000", "02100", "75001"], n), "code": rng.choice([3, 7], n),
                          "age": rng.normal(40, 10, n)})
    return frame, np.where((frame["zip"] == "01000") | (frame["age"] > 45), "yes", "no")


def test_encoded_columns_are_found_wherever_the_encoder_sits() -> None:
    X, y = _zip_frame()
    X = X.assign(city=np.where(X["age"] > 40, "lyon", None))
    direct = make_column_transformer((OneHotEncoder(), ["zip"]), (OrdinalEncoder(), ["code"]),
                                     remainder="passthrough")
    imputed = ColumnTransformer([
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"), OneHotEncoder()), ["city", "zip"]),
        ("num", StandardScaler(), [1, 2]),  # by position: "code", "age"
    ])
    union = Pipeline([("features", FeatureUnion([("onehot", OneHotEncoder()), ("ordinal", OrdinalEncoder())])),
                      ("clf", LogisticRegression())])
    for model, frame, expected in [
        (direct, X, {"zip": ("OneHotEncoder", True), "code": ("OrdinalEncoder", False)}),
        (make_pipeline(imputed, LogisticRegression()), X, {"city": ("OneHotEncoder", True),
                                                            "zip": ("OneHotEncoder", True)}),
        (union, X[["zip"]], {"zip": ("OrdinalEncoder", True)}),
        (make_pipeline(StandardScaler(), LogisticRegression()), X[["age"]], {}),
        (make_pipeline(OneHotEncoder(), LogisticRegression()), X[["zip"]].to_numpy(), {}),  # no names: unknown
    ]:
        model.fit(frame, y) if hasattr(model, "predict") else model.fit(frame)
        found = {name: (c.encoder, c.strings) for name, c in encoded_columns(model).items()}
        assert found == expected, model
    assert encoded_columns({"not": "a model"}) == {}


def test_zip_codes_stay_strings_and_numbers_as_strings_are_refused(tmp_path: Path) -> None:
    X, y = _zip_frame()
    model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["zip"]),
                                                  (StandardScaler(), ["age"])), LogisticRegression())
    model.fit(X[["zip", "age"]], y)
    result = export(model, X, y, name="zip", version="1", out_dir=tmp_path / "b")
    assert result.manifest.input_schema.features[0].categories == ("01000", "02100", "75001")
    with Runtime(result.path) as rt:
        assert rt.predict({"zip": "01000", "age": 30.0}).label == model.predict(
            pd.DataFrame({"zip": ["01000"], "age": [30.0]}))[0]
    as_ints = X.assign(zip=X["zip"].astype(int))
    with pytest.raises(ExportError, match=r"^column 'zip' holds numbers \(int64\) but the model's OneHotEncoder "
                                          r"was fitted on strings; pass it as strings, e\.g\. pandas\.read_csv"):
        export(model, as_ints, y, name="zip", version="1", out_dir=tmp_path / "c")
    # handle_unknown="ignore": the device's warm-up row feeds the midpoint of a numeric column (5), no code
    coded = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["code"]),
                                                  (StandardScaler(), ["age"])),
                          LogisticRegression()).fit(X[["code", "age"]], y)
    with pytest.raises(ExportError, match=r"^column 'code' holds text \(e\.g\. '3'\) but the model's "
                                          "OneHotEncoder was fitted on numbers$"):
        export(coded, X.assign(code=X["code"].astype(str)), y, name="c", version="1", out_dir=tmp_path / "d")
    assert export(coded, X, y, name="c", version="1", out_dir=tmp_path / "e").parity["passed"]


def test_csv_columns_are_read_as_their_type(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("zip,country,n,x\n01000,NA,1,0.5\n02100,,2,\n", encoding="utf-8")
    frame = read_csv_frame(path, {"zip": "str", "country": "str", "n": "int", "missing": "str"})
    assert frame["zip"].tolist() == ["01000", "02100"]
    assert frame["country"].iloc[0] == "NA" and pd.isna(frame["country"].iloc[1])  # only an empty cell is missing
    assert frame["n"].dtype == np.int64 and np.isnan(frame["x"].iloc[1])  # untyped columns as pandas reads them
    assert read_csv_frame(path, {"zip": "float"})["zip"].tolist() == [1000.0, 2100.0]
    with pytest.raises(ExportError, match=f"^column 'x' of {path} is read as int, but row 1 holds '0.5'$"):
        read_csv_frame(path, {"x": "int"})
    with pytest.raises(ExportError, match=f"^column 'n' of {path} is read as int, but row 2 holds a missing value "
                                          r"\(read it as float to allow them\)$"):
        path.write_text("n\n1\nNA\n", encoding="utf-8")
        read_csv_frame(path, {"n": "int"})
    with pytest.raises(ExportError, match=f"^column 'n' of {path} is read as float, but row 2 holds 'one'$"):
        path.write_text("n\n1\none\n", encoding="utf-8")
        read_csv_frame(path, {"n": "float"})
    with pytest.raises(ExportError, match=r"^column 'zip': type 'text' is not one of str, float, int$"):
        csv_dtypes({}, ["zip"], dtypes={"zip": "text"})
    path.write_text("")
    with pytest.raises(ExportError, match=f"^{path} cannot be read as a CSV: No columns to parse from file$"):
        read_csv_frame(path)


def test_bad_identity_and_policy(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with pytest.raises(ExportError, match="The 'name' parameter must be a non-empty string. Got '' instead."):
        export(model, X, y, name="", version="1", out_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="'atol' parameter of ParityPolicy"):
        ParityPolicy(atol=-1)


def test_a_model_skl2onnx_cannot_convert_is_one_line(tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier
    X = np.random.default_rng(0).normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(UnsupportedModelError) as info:
        export(DummyClassifier().fit(X, y), X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert "\n" not in str(info.value)  # skl2onnx's own advice runs to a dozen lines: the cause keeps it
    assert str(info.value).startswith("skl2onnx cannot convert DummyClassifier: Unable to find a shape calculator")
