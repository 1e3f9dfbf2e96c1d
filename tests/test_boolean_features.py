"""Boolean features: exported from bool columns, accepted in every spelling on every input path,
fed to the model as 1.0/0.0 exactly as scikit-learn saw them, and monitored as those numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from converters import export
from converters.features import infer_input_schema
from edge_runtime import InputPolicy, MonitoringDatabase, Runtime
from edge_runtime.config import NonFinitePolicy
from edge_runtime.errors import BundleFormatError, InvalidValueError, NonFiniteValueError, SchemaError
from edge_runtime.serving.inputs import InputEncoder
from edge_runtime.serving.schema import FeatureKind, FeatureSpec, InputLayout, InputSchema

TRUE_SPELLINGS = [True, "True", "true", "TRUE", 1, "1", 1.0, "1.0", np.bool_(True), np.int64(1), np.float32(1.0)]
FALSE_SPELLINGS = [False, "False", "false", "FALSE", 0, "0", 0.0, "0.0", np.bool_(False), np.int8(0), -0.0]
NOT_BOOLEANS = ["yes", "maybe", 2, -1, 0.5, 1.0000001, "2", "", " True", "t", float("inf"), [1], b"1"]
EXPECTED = "is not a boolean (True/False, true/false or 1/0)"


def _schema(layout: InputLayout, *, missing: bool = False) -> InputSchema:
    return InputSchema(features=(FeatureSpec(name="x", minimum=0.0, maximum=9.0),
                                 FeatureSpec(name="flag", kind=FeatureKind.BOOLEAN, allows_missing=missing)),
                       layout=layout)


def _encode_one(encoder: InputEncoder, row: Any) -> float:
    """The value the model gets for ``flag``, through the single-row path of the schema's layout."""
    if encoder.schema.layout is InputLayout.TENSOR:
        out = np.zeros(2, dtype=np.float32)
        encoder.fill_tensor_row(row, out)
        return float(out[1])
    return float(encoder.columns_row_feeds(row)["flag"][0, 0])


LAYOUTS = [InputLayout.TENSOR, InputLayout.COLUMNS]


# ------------------------------------------------------------------ the schema
def test_a_boolean_spec_round_trips_and_its_range_is_zero_to_one() -> None:
    spec = FeatureSpec(name="flag", kind=FeatureKind.BOOLEAN, allows_missing=True)
    assert spec.to_dict() == {"name": "flag", "kind": "boolean", "allows_missing": True}
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert (spec.minimum, spec.maximum) == (0.0, 1.0)
    with pytest.raises(BundleFormatError, match=r"categories' must be empty for a boolean feature"):
        FeatureSpec.from_dict({"name": "flag", "kind": "boolean", "categories": ["a"]})


def test_bool_columns_are_boolean_features() -> None:
    frame = pd.DataFrame({
        "numpy_bool": np.array([True, False, True]),
        "nullable": pd.array([True, None, False], dtype="boolean"),
        "read_from_csv": [True, np.nan, False],  # pandas reads True/False with an empty cell as objects
        "zero_one": [0.0, 1.0, 1.0],  # numbers stay numbers
        "text": ["True", "no", "False"],
    })
    schema = infer_input_schema(frame)
    assert [(f.kind.value, f.allows_missing) for f in schema.features] == [
        ("boolean", False), ("boolean", True), ("boolean", True), ("numeric", False), ("categorical", False)]
    array = infer_input_schema(np.array([[True, False], [False, False]]))
    assert array.layout is InputLayout.TENSOR and {f.kind for f in array.features} == {FeatureKind.BOOLEAN}
    assert infer_input_schema(frame[["numpy_bool", "zero_one"]]).layout is InputLayout.TENSOR


# ------------------------------------------------------------------ one row
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: l.value)
def test_every_spelling_of_true_and_false_on_the_single_row_paths(layout: InputLayout) -> None:
    encoder = InputEncoder(_schema(layout), InputPolicy())
    for expected, spellings in ((1.0, TRUE_SPELLINGS), (0.0, FALSE_SPELLINGS)):
        for value in spellings:
            assert _encode_one(encoder, {"x": 3, "flag": value}) == expected, value
            assert _encode_one(encoder, [3, value]) == expected, value
            assert _encode_one(encoder, ("3", value)) == expected, value
    assert _encode_one(encoder, np.array([3.0, 1.0])) == 1.0
    assert _encode_one(encoder, np.array([3, 0], dtype=np.int32)) == 0.0
    assert _encode_one(encoder, np.array([True, True])) == 1.0
    assert _encode_one(encoder, np.array([3.0, "false"], dtype=object)) == 0.0


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: l.value)
@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
def test_anything_else_is_refused_naming_the_feature_and_the_value(layout: InputLayout, value: Any) -> None:
    encoder = InputEncoder(_schema(layout), InputPolicy())
    for row in ({"x": 3, "flag": value}, [3.0, value]):
        with pytest.raises(InvalidValueError) as raised:
            _encode_one(encoder, row)
        assert str(raised.value) == f"feature 'flag': value {value!r} {EXPECTED}"
        assert raised.value.feature == "flag" and raised.value.value == value
    if isinstance(value, (int, float)):
        with pytest.raises(InvalidValueError, match=f"feature 'flag': value {float(value)!r} is not a boolean"):
            _encode_one(encoder, np.array([3.0, value]))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: l.value)
def test_a_missing_value_follows_the_features_missing_policy(layout: InputLayout) -> None:
    strict = InputEncoder(_schema(layout), InputPolicy())
    for missing in (None, float("nan"), pd.NA):
        with pytest.raises(NonFiniteValueError) as raised:
            _encode_one(strict, {"x": 3, "flag": missing})
        assert str(raised.value) == (f"feature 'flag': value {missing!r} is not finite "
                                     "(NaN or infinity is rejected by the input policy)")
    lenient = InputEncoder(_schema(layout, missing=True), InputPolicy())
    allowing = InputEncoder(_schema(layout), InputPolicy(non_finite=NonFinitePolicy.ALLOW))
    for encoder in (lenient, allowing):
        for missing in (None, float("nan"), pd.NA, np.float32("nan")):
            assert np.isnan(_encode_one(encoder, {"x": 3, "flag": missing}))
        with pytest.raises(InvalidValueError) as raised:
            _encode_one(encoder, {"x": 3, "flag": float("inf")})  # an infinity is no missing boolean
        assert str(raised.value) == f"feature 'flag': value inf {EXPECTED}"


def test_numbers_still_work_beside_a_boolean_and_are_named_first() -> None:
    encoder = InputEncoder(_schema(InputLayout.TENSOR), InputPolicy())
    with pytest.raises(InvalidValueError, match="feature 'x': value 'high' is not a number"):
        _encode_one(encoder, {"x": "high", "flag": True})
    with pytest.raises(NonFiniteValueError, match="feature 'x': value nan is not finite"):
        _encode_one(encoder, {"x": float("nan"), "flag": "True"})
    for row in ({"x": "high", "flag": "yes"}, ["high", "yes"]):  # both wrong: the first is named
        with pytest.raises(InvalidValueError, match="feature 'x': value 'high' is not a number"):
            _encode_one(encoder, row)


# ------------------------------------------------------------------ batches
BATCH_ROWS = [[1, True], [2, "false"], [3, "yes"], [4, 1], [5, 2], [6, None], [7, "TRUE"], [8, 0.5]]
BATCH_ERRORS = [f"row 2: feature 'flag': value 'yes' {EXPECTED}", f"row 4: feature 'flag': value 2 {EXPECTED}",
                "row 5: feature 'flag': value None is not finite (NaN or infinity is rejected by the input "
                "policy)",
                f"row 7: feature 'flag': value 0.5 {EXPECTED}"]


def _flags(batch: Any, layout: InputLayout) -> list[float]:
    if layout is InputLayout.TENSOR:
        return batch.feeds["X"][:, 1].tolist()
    return batch.feeds["flag"][:, 0].tolist()


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: l.value)
def test_batches_of_lists_dicts_and_frames(layout: InputLayout) -> None:
    encoder = InputEncoder(_schema(layout), InputPolicy())
    for rows in (BATCH_ROWS, [{"x": x, "flag": f} for x, f in BATCH_ROWS],
                 pd.DataFrame(BATCH_ROWS, columns=["x", "flag"])):
        batch = encoder.encode_batch(rows)
        assert batch.rows.tolist() == [0, 1, 3, 6]
        assert _flags(batch, layout) == [1.0, 0.0, 1.0, 1.0]
        assert [str(e) for e in batch.errors] == BATCH_ERRORS


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: l.value)
def test_batches_of_numeric_arrays_and_typed_frames(layout: InputLayout) -> None:
    encoder = InputEncoder(_schema(layout, missing=True), InputPolicy())
    matrix = np.array([[1, 1], [2, 0], [3, 2], [4, np.nan], [5, 1.0000001], [6, -0.0]])
    batch = encoder.encode_batch(matrix)
    assert batch.rows.tolist() == [0, 1, 3, 5]
    assert np.array_equal(_flags(batch, layout), [1.0, 0.0, np.nan, 0.0], equal_nan=True)
    assert [str(e) for e in batch.errors] == [f"row 2: feature 'flag': value 2.0 {EXPECTED}",
                                              f"row 4: feature 'flag': value 1.0000001 {EXPECTED}"]
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "flag": pd.array([True, None, False], dtype="boolean")})
    assert np.array_equal(_flags(encoder.encode_batch(frame), layout), [1.0, np.nan, 0.0], equal_nan=True)
    plain = pd.DataFrame({"x": [1.0, 2.0], "flag": [False, True]})
    assert _flags(encoder.encode_batch(plain), layout) == [0.0, 1.0]
    assert _flags(encoder.encode_batch(np.array([[True, False], [False, True]])), layout) == [0.0, 1.0]


# ------------------------------------------------------------------ the model gets what scikit-learn saw
def _loans(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "income": rng.normal(50, 15, n).round(1),
        "repaid_before": rng.random(n) < 0.6,
        "has_car": rng.random(n) < 0.3,
        "city": rng.choice(["lyon", "nice", "paris"], n),
    })
    score = 0.04 * (X["income"] - 50) + 1.5 * X["repaid_before"] - X["has_car"] + rng.normal(0, 0.7, n)
    return X, (score > 0.5).astype(int)


MODELS = {
    "standalone-forest": (lambda: RandomForestClassifier(n_estimators=21, random_state=0),
                          ["income", "repaid_before", "has_car"], InputLayout.TENSOR),
    "standalone-hgb": (lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
                       ["income", "repaid_before", "has_car"], InputLayout.TENSOR),
    "column-transformer-passthrough": (lambda: Pipeline([
        ("pre", ColumnTransformer([("num", StandardScaler(), ["income"]),
                                   ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                   ("flags", "passthrough", ["repaid_before", "has_car"])])),
        ("clf", LogisticRegression(max_iter=1000))]), ["income", "repaid_before", "has_car", "city"],
        InputLayout.COLUMNS),
    "one-hot-encoded-bool": (lambda: Pipeline([
        ("pre", ColumnTransformer([("num", StandardScaler(), ["income"]),
                                   ("bools", OneHotEncoder(), ["repaid_before", "has_car"])])),
        ("clf", LogisticRegression(max_iter=1000))]), ["income", "repaid_before", "has_car"], InputLayout.COLUMNS),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_runtime_labels_agree_with_scikit_learn_on_bool_columns(name: str, tmp_path: Path) -> None:
    make, columns, layout = MODELS[name]
    X, y = _loans(3000, seed=1)
    X = X[columns]
    model = make().fit(X[:2000], y[:2000])
    result = export(model, X[:2000], y[:2000], name="loans", version="1", out_dir=tmp_path / "b")
    schema = result.manifest.input_schema
    assert schema.layout is layout
    assert {f.name: f.kind.value for f in schema.features if f.kind is FeatureKind.BOOLEAN} == {
        "repaid_before": "boolean", "has_car": "boolean"}
    live = X[2000:]
    expected = model.predict(live)
    as_text = live.astype({"repaid_before": str, "has_car": str})  # "True"/"False", as a CSV holds them
    lowercase = [{**row, "repaid_before": str(row["repaid_before"]).lower(), "has_car": int(row["has_car"])}
                 for row in live.to_dict(orient="records")]
    with Runtime(tmp_path / "b") as rt:
        for rows in (live, as_text, lowercase):
            batch = rt.predict_batch(rows)
            assert not batch.errors and np.array_equal(batch.labels, expected)
            assert np.allclose(batch.scores, model.predict_proba(live), atol=1e-5)
        singles = [rt.predict(row).label for row in lowercase[:200]]
    assert singles == expected[:200].tolist()


def test_the_monitor_sketches_a_boolean_as_the_zero_or_one_the_model_got(tmp_path: Path) -> None:
    X, y = _loans(4000, seed=2)
    X = X[["income", "repaid_before", "has_car"]]
    model = LogisticRegression().fit(X[:2000], y[:2000])
    export(model, X[:2000], y[:2000], name="loans", version="1", out_dir=tmp_path / "b")
    live = X[2000:].astype({"repaid_before": str})
    with Runtime(tmp_path / "b", db=tmp_path / "m.db", window_rows=1000) as rt:
        for row in live.iloc[:1000].to_dict(orient="records"):
            rt.predict(row)
        rt.predict_batch(live.iloc[1000:])
    with MonitoringDatabase(tmp_path / "m.db") as db:
        windows = db.drift().windows
    assert len(windows) == 2
    for window, part in zip(windows, (X[2000:3000], X[3000:])):
        for name in ("repaid_before", "has_car"):
            verdict = window.to_dict()["features"][name]
            assert verdict["status"] == "ok", verdict
            # The monitor got the 1.0/0.0 the model got: between two samples of 0s and 1s,
            # the KS distance is the difference of their shares of 1s (while booleans are
            # sketched as numbers; exact counts would see the same shares).
            if verdict["metric"] == "ks":
                assert verdict["value"] == pytest.approx(abs(part[name].mean() - X[name][:2000].mean()),
                                                         abs=verdict["metrics"]["ks"]["sketch_error"])


def test_benchmark_rows_of_a_boolean_feature_are_ones_and_zeros() -> None:
    from edge_runtime.bench.rows import reference_rows

    for layout in LAYOUTS:
        rows = reference_rows(_schema(layout), None, 200, seed=0)
        flags = [row[1] if layout is InputLayout.TENSOR else row["flag"] for row in rows]
        assert set(flags) == {0.0, 1.0}
        assert not InputEncoder(_schema(layout), InputPolicy()).encode_batch(rows).errors


# ------------------------------------------------------------------ fuzzed: one answer on every path
KEPT_WITH_BOOLEANS = sorted((Path(__file__).parent / "data" / "bundles").glob("format-3-*"))


def _outcome(call: Any) -> Any:
    """Probabilities, or the refusal: its class and the feature it names."""
    try:
        return call()
    except SchemaError as exc:
        return type(exc).__name__, getattr(exc, "feature", None)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("examples", [pytest.param(40, id="fast"),
                                      pytest.param(1500, id="many", marks=pytest.mark.slow)])
@pytest.mark.parametrize("path", KEPT_WITH_BOOLEANS, ids=lambda p: p.name)
def test_any_value_of_a_boolean_gets_one_answer_on_every_path(path: Path, examples: int) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from tests.test_fuzz_inputs import VALUES, fuzz

    with Runtime(path) as rt:
        features = rt.manifest.input_schema.features
        flag = next(f.name for f in features if f.kind is FeatureKind.BOOLEAN)
        base = {f.name: (f.categories[0] if f.categories else 1.0) for f in features}

        @fuzz(examples)
        @given(VALUES | st.sampled_from(TRUE_SPELLINGS + FALSE_SPELLINGS + NOT_BOOLEANS))
        def run(value: Any) -> None:
            row = {**base, flag: value}
            single = _outcome(lambda: list(rt.predict(row).scores))
            positional = _outcome(lambda: list(rt.predict(list(row.values())).scores))
            batch = rt.predict_batch([row, list(row.values())], on_error="skip")
            batched = [(type(e).__name__, getattr(e, "feature", None)) for e in batch.errors] or [
                list(s) for s in batch.scores]
            missing = value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))
            if isinstance(single, tuple):
                assert single == positional and batched == [single, single] and single[1] == flag
                assert single[0] == ("NonFiniteValueError" if missing else "InvalidValueError")
            else:
                assert value in TRUE_SPELLINGS or value in FALSE_SPELLINGS  # 1, "true", Decimal(1)...
                assert np.allclose(single, positional) and np.allclose(batched, [single, single], atol=1e-6)

        run()
