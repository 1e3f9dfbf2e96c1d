"""XGBoost, LightGBM and CatBoost models through export: alone, in pipelines, as native Boosters, and
from the command line, each compared with the library's own predictions."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from converters import ParityPolicy, boosting, export
from edge_runtime import Runtime
from edge_runtime.cli import main
from edge_runtime.errors import ExportError, ParityError, UnsupportedModelError

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
cb = pytest.importorskip("catboost")

LIBRARIES = ("xgboost", "lightgbm", "catboost")
TASKS = ("binary", "multiclass", "regression")


def _user_names(frame: pd.DataFrame) -> pd.DataFrame:
    """Names as users write them: spaces, punctuation, unicode (LightGBM rewrites the spaces)."""
    renamed = {c: f"{c} (µ/€)" if i % 3 == 0 else c for i, c in enumerate(frame.columns)}
    return frame.rename(columns=renamed)


def _data(task: str) -> tuple[pd.DataFrame, pd.Series]:
    if task == "binary":
        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    elif task == "multiclass":
        X, y = load_iris(return_X_y=True, as_frame=True)
    else:
        X, y = load_diabetes(return_X_y=True, as_frame=True)
    return _user_names(X), y


def _model(library: str, task: str, n: int = 20, **params: Any) -> Any:
    regression = task == "regression"
    if library == "xgboost":
        cls = xgb.XGBRegressor if regression else xgb.XGBClassifier
        return cls(n_estimators=n, max_depth=4, nthread=1, random_state=0, **params)
    if library == "lightgbm":
        cls = lgb.LGBMRegressor if regression else lgb.LGBMClassifier
        return cls(n_estimators=n, num_leaves=15, n_jobs=1, random_state=0, verbose=-1, **params)
    cls = cb.CatBoostRegressor if regression else cb.CatBoostClassifier
    # allow_writing_files=False: CatBoost would write catboost_info/ into the working directory.
    return cls(iterations=n, depth=4, thread_count=1, random_seed=0, verbose=0, allow_writing_files=False, **params)


def _with_gaps(X: pd.DataFrame, share: float = 0.2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return X.mask(rng.random(X.shape) < share)


def _served(bundle: Path, X: pd.DataFrame) -> tuple[list[Any], np.ndarray | None]:
    """Labels (or values) and scores of single dict-row predictions, as a device answers them."""
    labels, scores = [], []
    with Runtime(bundle) as runtime:
        for row in X.to_dict(orient="records"):
            prediction = runtime.predict(row)
            labels.append(prediction.label)
            scores.append(prediction.scores)
    return labels, None if scores[0] is None else np.vstack(scores)


def _assert_like_native(model: Any, bundle: Path, X: pd.DataFrame, task: str) -> None:
    labels, scores = _served(bundle, X)
    if task == "regression":
        np.testing.assert_allclose(labels, model.predict(X), rtol=1e-4, atol=1e-3)
    else:
        assert labels == np.asarray(model.predict(X)).reshape(-1).tolist()
        np.testing.assert_allclose(scores, model.predict_proba(X), atol=1e-5)


# ------------------------------------------------------------------ estimators, alone
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("library", LIBRARIES)
def test_estimator_exports_with_the_users_names_and_native_answers(library: str, task: str, tmp_path: Path) -> None:
    X, y = _data(task)
    model = _model(library, task).fit(X, y)
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert result.manifest.input_schema.names == tuple(X.columns)  # not LightGBM's "mean_radius_(µ/€)"
    assert result.parity["passed"] and result.parity["rows_beyond_tolerance"] == 0
    if task != "regression":
        assert result.parity["label_agreement"] == 1
        assert result.manifest.output_schema.classes == tuple(model.classes_.tolist())
    assert result.manifest.producer[library]  # the library's version is recorded
    _assert_like_native(model, result.path, X.iloc[::7], task)


def test_string_classes_keep_their_order(tmp_path: Path) -> None:
    X, y = _data("multiclass")
    names = y.map({0: "virginica", 1: "setosa", 2: "versicolor"})  # not sorted by code
    for library in ("lightgbm", "catboost"):
        model = _model(library, "multiclass").fit(X, names)
        result = export(model, X, names, name="m", version="1", out_dir=tmp_path / library)
        assert result.manifest.output_schema.classes == ("setosa", "versicolor", "virginica")
        _assert_like_native(model, result.path, X.iloc[::5], "multiclass")


# ------------------------------------------------------------------ pipelines
@pytest.mark.parametrize("library", LIBRARIES)
def test_last_step_of_a_pipeline_with_a_column_transformer(library: str, tmp_path: Path) -> None:
    X, y = _data("binary")
    X = X.iloc[:, :6].assign(**{"plan type": np.where(np.arange(len(X)) % 3 == 0, "pro", "basic")})
    numeric = [c for c in X.columns if c != "plan type"]
    # Trees need no scaling; a scaler in front computes in float32 on the device and moves rows that sit
    # on a split threshold (the parity report counts them), so the usual imputer stands in front here.
    pre = ColumnTransformer([("num", SimpleImputer(strategy="median"), numeric),
                             ("cat", OneHotEncoder(), ["plan type"])])
    model = Pipeline([("pre", pre), ("boost", _model(library, "binary"))]).fit(X, y)
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert result.parity["label_agreement"] == 1
    assert result.manifest.input_schema.names == tuple(X.columns)
    _assert_like_native(model, result.path, X.iloc[::9], "binary")


# ------------------------------------------------------------------ missing values
@pytest.mark.parametrize("trained_with_gaps", [True, False], ids=["trained-with-nan", "trained-without-nan"])
@pytest.mark.parametrize("library", LIBRARIES)
def test_nan_is_missing_as_the_library_routes_it(library: str, trained_with_gaps: bool, tmp_path: Path) -> None:
    X, y = _data("binary")
    train = _with_gaps(X) if trained_with_gaps else X
    model = _model(library, "binary").fit(train, y)
    result = export(model, train, y, name="m", version="1", out_dir=tmp_path / "b")
    assert all(f.allows_missing for f in result.manifest.input_schema.features)
    rows = _with_gaps(X, share=0.3, seed=1).iloc[:120]
    assert rows.isna().any(axis=1).all() or rows.isna().to_numpy().sum() > 100
    _assert_like_native(model, result.path, rows, "binary")


def test_catboost_forbidding_nan_keeps_the_schema_from_the_data(tmp_path: Path) -> None:
    X, y = _data("binary")
    model = _model("catboost", "binary", nan_mode="Forbidden").fit(X, y)
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert not any(f.allows_missing for f in result.manifest.input_schema.features)


# ------------------------------------------------------------------ early stopping, base_score
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_early_stopping_exports_the_best_iteration(library: str, task: str, tmp_path: Path) -> None:
    X, y = _data(task)
    order = np.random.default_rng(0).permutation(len(X))  # iris is sorted by class
    X, y = X.iloc[order], y.iloc[order]
    X_fit, y_fit, X_val, y_val = X.iloc[60:], y.iloc[60:], X.iloc[:60], y.iloc[:60]
    if library == "xgboost":
        model = _model(library, task, n=300, learning_rate=0.5, early_stopping_rounds=5)
        model.fit(X_fit, y_fit, eval_set=[(X_val, y_val)], verbose=False)
        best, trained = model.best_iteration + 1, model.get_booster().num_boosted_rounds()
    else:
        model = _model(library, task, n=300, learning_rate=0.5)
        model.fit(X_fit, y_fit, eval_X=(X_val,), eval_y=(y_val,), callbacks=[lgb.early_stopping(5, verbose=False)])
        best, trained = model.best_iteration_, 300
    assert best < trained  # the stop happened: all trees would answer differently
    result = export(model, X_fit, y_fit, name="m", version="1", out_dir=tmp_path / "b", X_val=X_val)
    assert result.parity["rows_beyond_tolerance"] == 0
    _assert_like_native(model, result.path, X_val, task)


@pytest.mark.parametrize("task, base_score", [("binary", 0.2), ("regression", 300.0), ("multiclass", 0.5)])
def test_xgboost_base_score_is_exported(task: str, base_score: float, tmp_path: Path) -> None:
    """XGBoost >= 2 stores base_score as a string array ("[2E-1]"); the pin's converter reads it."""
    X, y = _data(task)
    model = _model("xgboost", task, base_score=base_score).fit(X, y)
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert result.parity["rows_beyond_tolerance"] == 0
    _assert_like_native(model, result.path, X.iloc[::4], task)


# ------------------------------------------------------------------ native Boosters
@pytest.mark.parametrize("task", TASKS)
def test_native_xgboost_booster(task: str, tmp_path: Path) -> None:
    X, y = _data(task)
    params = {"binary": {"objective": "binary:logistic"}, "regression": {"objective": "reg:squarederror"},
              "multiclass": {"objective": "multi:softprob", "num_class": 3}}[task]
    booster = xgb.train({**params, "nthread": 1, "seed": 0}, xgb.DMatrix(X, y), num_boost_round=15)
    result = export(booster, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert result.manifest.input_schema.names == tuple(X.columns)
    expected = booster.predict(xgb.DMatrix(X))
    _assert_serves_as_native(result.path, X, expected, task)


def _assert_serves_as_native(bundle: Path, X: Any, expected: np.ndarray, task: str) -> None:
    """The bundle's answers on ``X`` are a native Booster's ``predict`` (values or probabilities)."""
    labels, scores = _served(bundle, X)
    if task == "regression":
        np.testing.assert_allclose(labels, expected, rtol=1e-4, atol=1e-3)
    else:
        probabilities = np.column_stack([1 - expected, expected]) if expected.ndim == 1 else expected
        np.testing.assert_allclose(scores, probabilities, atol=1e-5)
        assert labels == probabilities.argmax(axis=1).tolist()


def test_native_xgboost_booster_given_its_feature_names(tmp_path: Path) -> None:
    X, y = _data("binary")
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X.to_numpy(), y), 10)
    result = export(booster, X.to_numpy(), y, name="m", version="1", out_dir=tmp_path / "b",
                    feature_names=list(X.columns))
    assert result.manifest.input_schema.names == tuple(X.columns)
    assert result.parity["label_agreement"] == 1
    with pytest.raises(ExportError, match="contradict the names the xgboost.Booster"):
        named = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X, y), 2)
        export(named, X, y, name="m", version="1", out_dir=tmp_path / "c", feature_names=["a"] * 30)


def test_native_xgboost_booster_answers_with_all_its_trees_as_its_predict_does(tmp_path: Path) -> None:
    X, y = _data("binary")
    fit, val = xgb.DMatrix(X.iloc[60:], y.iloc[60:]), xgb.DMatrix(X.iloc[:60], y.iloc[:60])
    booster = xgb.train({"objective": "binary:logistic", "eta": 0.5, "nthread": 1}, fit, 300,
                        evals=[(val, "val")], early_stopping_rounds=5, verbose_eval=False)
    assert booster.best_iteration + 1 < booster.num_boosted_rounds()
    result = export(booster, X, y, name="m", version="1", out_dir=tmp_path / "b")
    _, scores = _served(result.path, X.iloc[:60])
    assert scores is not None
    np.testing.assert_allclose(scores[:, 1], booster.predict(val), atol=1e-5)


@pytest.mark.parametrize("task", TASKS)
def test_native_lightgbm_booster(task: str, tmp_path: Path) -> None:
    X, y = _data(task)
    params = {"binary": {"objective": "binary"}, "regression": {"objective": "regression"},
              "multiclass": {"objective": "multiclass", "num_class": 3}}[task]
    booster = lgb.train({**params, "verbose": -1, "num_threads": 1, "seed": 0}, lgb.Dataset(X, y), 15)
    result = export(booster, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert result.manifest.input_schema.names == tuple(X.columns)
    expected = booster.predict(X)
    _assert_serves_as_native(result.path, X, expected, task)


# ------------------------------------------------------------------ native categorical features
def _coded_frame(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"store id": rng.integers(0, 12, n).astype(float), "basket €": rng.gamma(2, 20, n)})
    y = ((frame["store id"] % 3 == 0) ^ (frame["basket €"] > 40)).astype(int).to_numpy()
    return frame, y


def test_lightgbm_categorical_feature_on_codes_exports(tmp_path: Path) -> None:
    X, y = _coded_frame()
    model = _model("lightgbm", "binary", min_data_per_group=5, cat_smooth=1).fit(X, y, categorical_feature=[0])
    assert "==" in str(model.booster_.dump_model())  # categorical splits, not thresholds
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert result.parity["label_agreement"] == 1
    unseen = X.iloc[:20].assign(**{"store id": [50.0, -1.0, np.nan, 7.0] * 5})
    _assert_like_native(model, result.path, unseen, "binary")


def test_lightgbm_pandas_categories_name_the_workaround(tmp_path: Path) -> None:
    X, y = _coded_frame()
    X["store id"] = X["store id"].astype(int).astype(str).astype("category")
    model = _model("lightgbm", "binary").fit(X, y)
    with pytest.raises(UnsupportedModelError) as caught:
        export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    message = str(caught.value)
    assert "\n" not in message and "LGBMClassifier" in message and "encode them in the pipeline" in message
    assert not (tmp_path / "b").exists()


def test_the_workaround_encoding_in_the_pipeline_exports(tmp_path: Path) -> None:
    X, y = _coded_frame()
    X["store id"] = X["store id"].astype(int).map(lambda v: f"S{v:02d}")
    pre = ColumnTransformer([("codes", OrdinalEncoder(), ["store id"])], remainder="passthrough")
    booster = _model("lightgbm", "binary", min_data_per_group=5, cat_smooth=1)
    model = Pipeline([("pre", pre), ("boost", booster)]).fit(X, y, boost__categorical_feature=[0])
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    assert result.parity["label_agreement"] == 1
    _assert_like_native(model, result.path, X.iloc[::11], "binary")


def test_a_column_an_encoder_consumes_keeps_the_schema_from_the_data(tmp_path: Path) -> None:
    """NaN reaches the trees through the other columns; an encoder fitted without it would not pass it on."""
    X, y = _coded_frame()
    pre = ColumnTransformer([("codes", OrdinalEncoder(), ["store id"])], remainder="passthrough")
    model = Pipeline([("pre", pre), ("boost", _model("lightgbm", "binary"))]).fit(X, y)
    result = export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")
    allowed = {f.name: f.allows_missing for f in result.manifest.input_schema.features}
    assert allowed == {"store id": False, "basket €": True}


def test_catboost_cat_features_name_the_workaround(tmp_path: Path) -> None:
    X, y = _coded_frame()
    X["store id"] = X["store id"].astype(int).astype(str)
    model = _model("catboost", "binary", cat_features=["store id"]).fit(X, y)
    with pytest.raises(UnsupportedModelError, match=r"^CatBoostClassifier uses categorical features \('store id'\)"
                                                    r".*encode them in the pipeline"):
        export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")


def test_xgboost_native_categories_name_the_workaround(tmp_path: Path) -> None:
    X, y = _coded_frame()
    X["store id"] = X["store id"].astype(int).astype("category")
    model = _model("xgboost", "binary", enable_categorical=True, tree_method="hist").fit(X, y)
    with pytest.raises(UnsupportedModelError, match="native categorical features \\('store id'\\).*in the pipeline"):
        export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")


def test_xgboost_with_another_missing_value_than_nan_is_one_line(tmp_path: Path) -> None:
    X, y = _data("binary")
    model = _model("xgboost", "binary", missing=0.0).fit(X, y)
    with pytest.raises(ExportError, match=r"^skl2onnx failed on XGBClassifier: Cannot convert a XGBoost model "
                                          r"where missing values are not nan but 0\.0\.$"):
        export(model, X, y, name="m", version="1", out_dir=tmp_path / "b")


# ------------------------------------------------------------------ parity policy, pin
def test_parity_below_the_policy_is_refused_with_rows_beyond_tolerance(tmp_path: Path) -> None:
    X, y = _data("regression")
    model = _model("xgboost", "regression").fit(X, y)
    strict = ParityPolicy(atol=1e-9, rtol=0.0, min_agreement=1.0)  # float32 leaves cannot meet it
    with pytest.raises(ParityError, match=r"parity check failed for XGBRegressor: agreement 0\.\d+ is below 1\.0 "
                                          r"\(\d+ of 442 compared rows beyond tolerance"):
        export(model, X, y, name="m", version="1", out_dir=tmp_path / "b", parity=strict)
    assert not (tmp_path / "b").exists()


def test_converter_pin_is_installed_and_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxmltools 1.14 cannot read XGBoost 3's base_score; the export extra and export pin >= 1.15."""
    from importlib import metadata

    package, minimum = boosting.MIN_CONVERTER_VERSIONS["xgboost"]
    installed = tuple(int(p) for p in metadata.version(package).split(".")[:2])
    assert installed >= minimum
    pinned = Path(__file__).parent.parent.joinpath("pyproject.toml").read_text()
    assert f'"{package}>={".".join(map(str, minimum))}"' in pinned
    monkeypatch.setattr(boosting, "_version", lambda name: (1, 14, 0))
    with pytest.raises(ExportError, match=r"converts xgboost .* wrongly .*install 'onnxmltools>=1.15'"):
        boosting.check_converter_versions("xgboost")


# ------------------------------------------------------------------ the command line, end to end
def _cli_model(library: str, kind: str, X: pd.DataFrame, y: pd.Series) -> Any:
    if kind == "native":
        if library == "xgboost":
            return xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X, y), 20)
        return lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y), 20)
    model = _model(library, "binary")
    if kind == "pipeline":
        model = Pipeline([("pre", ColumnTransformer([("num", SimpleImputer(strategy="median"), list(X.columns))])),
                          ("boost", model)])
    return model.fit(X, y)


@pytest.mark.slow
@pytest.mark.parametrize("library, kind", [(lib, kind) for lib in LIBRARIES for kind in ("estimator", "pipeline")]
                         + [("xgboost", "native"), ("lightgbm", "native")])
def test_cli_export_then_predict_gives_the_native_labels(library: str, kind: str, tmp_path: Path) -> None:
    X, y = _data("binary")
    X = _with_gaps(X, share=0.05)
    model = _cli_model(library, kind, X, y)
    joblib.dump(model, tmp_path / "model.joblib")
    X.assign(diagnosis=y).to_csv(tmp_path / "train.csv", index=False)
    X.to_csv(tmp_path / "rows.csv", index=False)
    runner = CliRunner()
    exported = runner.invoke(main, ["export", str(tmp_path / "model.joblib"), "--train-data",
                                    str(tmp_path / "train.csv"), "--target", "diagnosis", "--name", "m",
                                    "--version", "1", "--out", str(tmp_path / "bundle")])
    assert exported.exit_code == 0, exported.output
    assert "parity: agreement 1.0000" in exported.output
    predicted = runner.invoke(main, ["predict", str(tmp_path / "bundle"), "--input", str(tmp_path / "rows.csv")])
    assert predicted.exit_code == 0, predicted.output
    rows = list(csv.DictReader(io.StringIO(predicted.stdout)))
    assert len(rows) == len(X)
    if kind == "native":
        p = model.predict(xgb.DMatrix(X) if library == "xgboost" else X)
        native = (p > 0.5).astype(int)
    else:
        native = model.predict(X)
    assert [int(r["prediction"]) for r in rows] == np.asarray(native).reshape(-1).tolist()


@pytest.mark.parametrize("make", [lambda: xgb.XGBClassifier(), lambda: lgb.LGBMClassifier(),
                                  lambda: cb.CatBoostClassifier(verbose=0)])
def test_an_unfitted_boosting_model_is_refused_in_one_line_from_python(make: Any, tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(UnsupportedModelError) as info:
        export(make(), X, (X[:, 0] > 0).astype(int), name="m", version="1", out_dir=tmp_path / "b")
    assert str(info.value) == f"{type(make()).__name__} is not fitted: call fit() before export"
    assert not (tmp_path / "b").exists()
