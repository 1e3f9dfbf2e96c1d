"""Export: conversion of every supported model type, parity, atomic writes, bad models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.cluster import KMeans
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
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from converters import ParityPolicy, export
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
    with pytest.raises(ExportError, match="lacks columns the model was fitted on"):
        export(model, X.drop(columns=["petal width (cm)"]), y, name="iris", version="1", out_dir=tmp_path / "c")


def test_validation_set_is_used_for_parity(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X[:100], y[:100])
    result = export(model, X[:100], y[:100], name="i", version="1", out_dir=tmp_path / "b", X_val=X[100:])
    assert result.parity["source"] == "validation set" and result.parity["rows"] == 50


def test_failed_parity_writes_nothing(tmp_path: Path) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)
    strict = ParityPolicy(atol=0.0, rtol=0.0, min_agreement=1.0)
    with pytest.raises(ParityError, match=r"parity check failed for RandomForestRegressor: agreement .* no bundle written"):
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


def test_bad_identity_and_policy(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with pytest.raises(ExportError, match="The 'name' parameter must be a non-empty string. Got '' instead."):
        export(model, X, y, name="", version="1", out_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="'atol' parameter of ParityPolicy"):
        ParityPolicy(atol=-1)
