"""Every bad-input case gets its own exception naming the feature and the value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime import InputPolicy, Runtime, RuntimeConfig
from edge_runtime.errors import (
    FeatureCountError,
    InvalidValueError,
    MissingFeatureError,
    NonFiniteValueError,
    OutOfRangeValueError,
    SchemaError,
    UnknownFeatureError,
    UnseenCategoryError,
)


@pytest.fixture
def cancer_rt(cancer_bundle: Path):
    with Runtime(cancer_bundle) as rt:
        yield rt


@pytest.fixture
def mixed_rt(mixed_bundle: Path):
    with Runtime(mixed_bundle) as rt:
        yield rt


@pytest.fixture
def good_row(cancer_data: Any) -> dict[str, float]:
    return cancer_data[0].iloc[0].to_dict()


def test_wrong_number_of_features(cancer_rt: Runtime) -> None:
    with pytest.raises(FeatureCountError, match="expected 30 features, got 29"):
        cancer_rt.predict(np.zeros(29))
    with pytest.raises(FeatureCountError, match="expected 30 features, got 31"):
        cancer_rt.predict([0.0] * 31)
    with pytest.raises(FeatureCountError, match="expected 30 features, got 29"):
        cancer_rt.predict_batch(np.zeros((4, 29)))


def test_missing_feature_name(cancer_rt: Runtime, good_row: dict[str, float]) -> None:
    del good_row["worst area"]
    with pytest.raises(MissingFeatureError, match="feature 'worst area' is missing") as info:
        cancer_rt.predict(good_row)
    assert info.value.feature == "worst area"


def test_unknown_feature_name(cancer_rt: Runtime, good_row: dict[str, float]) -> None:
    good_row["colour"] = 1.0
    with pytest.raises(UnknownFeatureError, match="feature 'colour' is not an input of this model"):
        cancer_rt.predict(good_row)
    # same count, one name swapped
    del good_row["mean radius"]
    with pytest.raises(UnknownFeatureError, match="'colour'"):
        cancer_rt.predict(good_row)


def test_non_numeric_value_in_numeric_feature(cancer_rt: Runtime, good_row: dict[str, float]) -> None:
    good_row["mean texture"] = "rough"
    with pytest.raises(InvalidValueError, match="feature 'mean texture': value 'rough' is not a number") as info:
        cancer_rt.predict(good_row)
    assert info.value.value == "rough"
    with pytest.raises(InvalidValueError, match="feature 'mean radius': value \\[1\\] is not a number"):
        cancer_rt.predict([[1]] + [0.0] * 29)


def test_numeric_strings_are_accepted(cancer_rt: Runtime, good_row: dict[str, float]) -> None:
    expected = cancer_rt.predict(good_row).scores
    as_text = {k: str(v) for k, v in good_row.items()}
    assert cancer_rt.predict(as_text).scores == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_non_finite_rejected_by_default(cancer_rt: Runtime, good_row: dict[str, float], bad: Any) -> None:
    good_row["mean area"] = bad
    with pytest.raises(NonFiniteValueError, match="feature 'mean area': value (nan|inf|-inf|None) is not finite"):
        cancer_rt.predict(good_row)
    row = np.array(list(good_row.values()), dtype=float)
    with pytest.raises(NonFiniteValueError, match="'mean area'"):
        cancer_rt.predict(row)


def test_non_finite_passes_when_policy_allows(cancer_bundle: Path, good_row: dict[str, float]) -> None:
    good_row["mean area"] = float("nan")
    config = RuntimeConfig(inputs=InputPolicy(non_finite="allow"))
    with Runtime(cancer_bundle, config=config) as rt:
        assert rt.predict(good_row).label in (0, 1)
        assert len(rt.predict_batch([good_row, good_row])) == 2


def test_nan_allowed_where_training_had_missing_values(mixed_rt: Runtime, mixed_data: Any,
                                                        mixed_model: Any) -> None:
    X, _ = mixed_data
    row = X.iloc[0].to_dict()
    row["age"] = float("nan")
    assert mixed_rt.predict(row).label == mixed_model.predict(X.iloc[[0]].assign(age=np.nan))[0]
    row["age"] = float("inf")
    with pytest.raises(NonFiniteValueError, match="feature 'age': value inf"):
        mixed_rt.predict(row)
    row["age"], row["income"] = 30.0, float("nan")  # income had no gaps in training
    with pytest.raises(NonFiniteValueError, match="feature 'income': value nan"):
        mixed_rt.predict(row)


def test_unseen_category_rejected_by_default(mixed_rt: Runtime, mixed_data: Any) -> None:
    row = mixed_data[0].iloc[0].to_dict()
    row["city"] = "rome"
    with pytest.raises(UnseenCategoryError, match="feature 'city': category 'rome' was never seen in training") as info:
        mixed_rt.predict(row)
    assert (info.value.feature, info.value.value) == ("city", "rome")


def test_unseen_category_passes_when_policy_allows(mixed_bundle: Path, mixed_data: Any) -> None:
    row = mixed_data[0].iloc[0].to_dict()
    row["city"] = "rome"
    config = RuntimeConfig(inputs=InputPolicy(unseen_category="allow"))
    with Runtime(mixed_bundle, config=config) as rt:
        assert rt.predict(row).label in ("stay", "churn")


def test_non_string_category(mixed_rt: Runtime, mixed_data: Any) -> None:
    row = mixed_data[0].iloc[0].to_dict()
    row["plan"] = 3.5
    with pytest.raises(InvalidValueError, match="feature 'plan': value 3.5 is not a category"):
        mixed_rt.predict(row)


def test_dataframe_with_missing_or_extra_column(mixed_rt: Runtime, mixed_data: Any) -> None:
    X, _ = mixed_data
    with pytest.raises(MissingFeatureError, match="'plan'"):
        mixed_rt.predict_batch(X.drop(columns=["plan"]))
    with pytest.raises(UnknownFeatureError, match="'id'"):
        mixed_rt.predict_batch(X.assign(id=1))


def test_batch_reports_every_kind_of_bad_row(cancer_rt: Runtime, good_row: dict[str, float]) -> None:
    short = dict(good_row)
    del short["mean radius"]
    text = dict(good_row, **{"mean radius": "x"})
    inf = dict(good_row, **{"mean radius": float("inf")})
    result = cancer_rt.predict_batch([good_row, short, text, inf, list(good_row.values())[:3], good_row],
                                     on_error="skip")
    assert result.rows.tolist() == [0, 5]
    kinds = [type(e) for e in result.errors]
    assert kinds == [MissingFeatureError, InvalidValueError, NonFiniteValueError, FeatureCountError]
    assert [e.row for e in result.errors] == [1, 2, 3, 4]
    assert all(isinstance(e, SchemaError) and isinstance(e, ValueError) for e in result.errors)


# ------------------------------------------------------------------ float32 range
_OUT_OF_RANGE = "is outside the float32 range the model reads"


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("big", [1e308, -1e39, 2.0**128 - 2.0**103, "1e308", 10**400])
def test_beyond_float32_is_out_of_range_on_every_single_row_path(cancer_rt: Runtime, good_row: dict[str, float],
                                                                  big: Any) -> None:
    good_row["mean area"] = big
    values = list(good_row.values())
    shown = "'1e308'" if big == "1e308" else ("<an int of 400 digits>" if isinstance(big, int) else repr(big))
    for row in (good_row, values, tuple(values), np.array(values, dtype=object)):
        with pytest.raises(OutOfRangeValueError, match=re.escape(f"feature 'mean area': value {shown} {_OUT_OF_RANGE}")) as info:
            cancer_rt.predict(row)
        assert info.value.feature == "mean area" and info.value.value == big
    if not isinstance(big, (str, int)):
        with pytest.raises(OutOfRangeValueError, match="'mean area'"):
            cancer_rt.predict(np.array(values))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_beyond_float32_is_out_of_range_on_every_batch_path(cancer_rt: Runtime, cancer_data: Any) -> None:
    X = cancer_data[0].iloc[:4].copy()
    X.iloc[1, 3] = 1e308
    X.iloc[2, 3] = float("inf")
    message = f"row 1: feature 'mean area': value 1e+308 {_OUT_OF_RANGE} (±3.4e38)"
    for batch in (X.to_numpy(), X, X.to_dict(orient="records"), X.to_numpy().tolist(), X.astype(object)):
        result = cancer_rt.predict_batch(batch, on_error="skip")
        assert result.rows.tolist() == [0, 3]
        assert [type(e) for e in result.errors] == [OutOfRangeValueError, NonFiniteValueError]
        assert str(result.errors[0]) == message


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_out_of_range_on_the_columns_layout(mixed_rt: Runtime, mixed_data: Any) -> None:
    row = mixed_data[0].iloc[0].to_dict()
    row["income"] = 1e308
    with pytest.raises(OutOfRangeValueError, match=f"feature 'income': value 1e\\+308 {_OUT_OF_RANGE}"):
        mixed_rt.predict(row)
    row["income"] = "1e309"  # parsed as inf: not finite, the same as inf
    with pytest.raises(NonFiniteValueError, match="feature 'income': value '1e309' is not finite"):
        mixed_rt.predict(row)
    frame = mixed_data[0].iloc[:3].assign(income=[1.0, 1e300, 2.0])
    result = mixed_rt.predict_batch(frame, on_error="skip")
    assert result.rows.tolist() == [0, 2] and isinstance(result.errors[0], OutOfRangeValueError)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_out_of_range_is_refused_even_when_non_finite_values_are_allowed(cancer_bundle: Path,
                                                                          good_row: dict[str, float]) -> None:
    config = RuntimeConfig(inputs=InputPolicy(non_finite="allow"))
    with Runtime(cancer_bundle, config=config) as rt:
        good_row["mean area"] = float("inf")
        assert rt.predict(good_row).label in (0, 1)  # inf itself passes under "allow"
        good_row["mean area"] = 1e308
        with pytest.raises(OutOfRangeValueError):
            rt.predict(good_row)
        with pytest.raises(OutOfRangeValueError):
            rt.predict(np.array(list(good_row.values())))
        result = rt.predict_batch(np.array([list(good_row.values())] * 2), on_error="skip")
        assert len(result) == 0 and len(result.errors) == 2


def test_largest_float32_is_accepted(cancer_rt: Runtime, good_row: dict[str, float]) -> None:
    good_row["mean area"] = float(np.finfo(np.float32).max)
    assert cancer_rt.predict(good_row).label in (0, 1)
    assert len(cancer_rt.predict_batch([good_row])) == 1


def test_long_values_are_cut_short_in_messages(cancer_rt: Runtime, mixed_rt: Runtime, good_row: dict[str, float],
                                               mixed_data: Any) -> None:
    good_row["mean texture"] = "x" * 100_000
    with pytest.raises(InvalidValueError) as info:
        cancer_rt.predict(good_row)
    assert str(info.value) == f"feature 'mean texture': value {'x' * 60!r}… (100,000 characters) is not a number"
    assert info.value.value == "x" * 100_000
    row = mixed_data[0].iloc[0].to_dict()
    row["city"] = "r" * 5000
    with pytest.raises(UnseenCategoryError, match=r"category 'r{60}'… \(5,000 characters\) was never seen"):
        mixed_rt.predict(row)


@pytest.mark.parametrize("row", [5, None, 2.5, "abc", b"abc"])
def test_something_that_is_no_row(cancer_rt: Runtime, mixed_rt: Runtime, row: Any) -> None:
    for rt in (cancer_rt, mixed_rt):
        with pytest.raises(SchemaError, match="is not a row"):
            rt.predict(row)
        result = rt.predict_batch([row], on_error="skip")
        assert len(result) == 0 and "is not a row" in str(result.errors[0])


# ------------------------------------------------------------------ properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_runtime.serving.inputs import InputEncoder  # noqa: E402
from edge_runtime.serving.schema import FeatureSpec, InputSchema  # noqa: E402

_SCHEMA = InputSchema(features=tuple(FeatureSpec(name=f"f{i}") for i in range(4)))
_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-1000, 1000))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_VALUES, min_size=4, max_size=4), min_size=1, max_size=20))
def test_batch_serves_exactly_the_finite_rows(rows: list[list[float]]) -> None:
    encoder = InputEncoder(_SCHEMA, InputPolicy())
    batch = encoder.encode_batch(rows)
    finite = [i for i, r in enumerate(rows) if all(np.isfinite(v) for v in r)]
    assert batch.rows.tolist() == finite
    assert [e.row for e in batch.errors] == [i for i in range(len(rows)) if i not in finite]
    expected = np.array([rows[i] for i in finite], dtype=np.float32).reshape(len(finite), 4)
    assert np.array_equal(batch.feeds["X"], expected)
    # the single-row fast path agrees with the batch path on every row
    buf = np.zeros(4, dtype=np.float32)
    for i, row in enumerate(rows):
        if i in finite:
            encoder.fill_tensor_row(row, buf)
            assert np.array_equal(buf, np.asarray(row, dtype=np.float32))
        else:
            with pytest.raises(NonFiniteValueError):
                encoder.fill_tensor_row(row, buf)


def test_dict_rows_of_one_feature() -> None:
    encoder = InputEncoder(InputSchema(features=(FeatureSpec(name="only"),)), InputPolicy())
    buf = np.zeros(1, dtype=np.float32)
    encoder.fill_tensor_row({"only": "2.5"}, buf)
    assert buf.tolist() == [2.5]
    with pytest.raises(InvalidValueError, match="feature 'only': value 'x' is not a number"):
        encoder.fill_tensor_row({"only": "x"}, buf)
    with pytest.raises(UnknownFeatureError, match="'other'"):
        encoder.fill_tensor_row({"other": 1.0}, buf)
