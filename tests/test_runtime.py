"""The device Runtime: every row form, batches, results against scikit-learn, lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime import InputPolicy, Runtime, RuntimeConfig, SessionConfig
from edge_runtime.errors import ConfigError, EdgeRuntimeError, NonFiniteOutputError, SchemaError
from edge_runtime.serving.schema import Task


def test_predict_numpy_row_matches_sklearn(cancer_bundle: Path, cancer_data: Any, cancer_model: Any) -> None:
    X, _ = cancer_data
    rows = X.to_numpy()
    with Runtime(cancer_bundle) as rt:
        for i in range(0, len(rows), 37):
            p = rt.predict(rows[i])
            expected = cancer_model.predict_proba(X.iloc[i : i + 1])[0]
            assert p.scores == pytest.approx(expected, abs=1e-5)
            assert p.label == int(cancer_model.predict(X.iloc[i : i + 1])[0])
            assert isinstance(p.label, int)


def test_predict_accepts_array_2d_list_and_dict(cancer_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    row = X.iloc[3]
    with Runtime(cancer_bundle) as rt:
        by_array = rt.predict(row.to_numpy())
        by_2d = rt.predict(row.to_numpy().reshape(1, -1))
        by_list = rt.predict(row.tolist())
        by_dict = rt.predict(row.to_dict())
    assert by_array.scores.tolist() == by_2d.scores.tolist() == by_list.scores.tolist() == by_dict.scores.tolist()


def test_prediction_carries_label_probabilities_model_and_latency(cancer_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    with Runtime(cancer_bundle) as rt:
        p = rt.predict(X.iloc[0].to_numpy())
    assert p.model_name == "cancer" and p.model_version == "1.0"
    assert set(p.probabilities) == {0, 1}
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert p.latency_us > 0
    assert "cancer:1.0" in repr(p)


def test_results_do_not_alias_the_bound_buffers(cancer_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    with Runtime(cancer_bundle) as rt:
        first = rt.predict(X.iloc[0].to_numpy())
        kept = first.scores.copy()
        rt.predict(X.iloc[1].to_numpy())
    assert first.scores.tolist() == kept.tolist()


def test_string_labels_on_the_fast_path_match_the_batch_path(string_class_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    with Runtime(string_class_bundle) as rt:
        batch = rt.predict_batch(X.to_numpy())
        singles = [rt.predict(r).label for r in X.to_numpy()]
    assert singles == batch.labels.tolist()
    assert set(singles) == {"malignant", "benign"}


def test_mixed_pipeline_single_and_batch_match_sklearn(mixed_bundle: Path, mixed_data: Any, mixed_model: Any) -> None:
    X, _ = mixed_data
    expected = mixed_model.predict(X)
    with Runtime(mixed_bundle) as rt:
        assert rt.predict(X.iloc[0].to_dict()).label == expected[0]
        assert rt.predict(list(X.iloc[1])).label == expected[1]
        batch = rt.predict_batch(X)
    assert batch.labels.tolist() == expected.tolist()
    assert batch.scores == pytest.approx(mixed_model.predict_proba(X), abs=1e-5)


def test_regression_returns_values(regression_bundle: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    expected = Ridge().fit(X, y).predict(X[:20])
    with Runtime(regression_bundle) as rt:
        assert rt.task is Task.REGRESSION and rt.classes == ()
        single = rt.predict(X[0])
        batch = rt.predict_batch(X[:20])
    assert single.probabilities is None
    assert single.label == pytest.approx(expected[0], rel=1e-4)
    assert batch.labels == pytest.approx(expected, rel=1e-4)
    assert batch.scores is None


def test_batch_list_of_dicts_serves_good_rows_and_reports_bad(mixed_bundle: Path, mixed_data: Any,
                                                               mixed_model: Any) -> None:
    X, _ = mixed_data
    rows = X.iloc[:6].to_dict(orient="records")
    rows[1]["city"] = "rome"
    rows[4]["income"] = "lots"
    with Runtime(mixed_bundle) as rt:
        result = rt.predict_batch(rows, on_error="skip")
    assert result.rows.tolist() == [0, 2, 3, 5]
    assert [e.row for e in result.errors] == [1, 4]
    assert str(result.errors[0]) == "row 1: feature 'city': category 'rome' was never seen in training (3 known categories)"
    assert str(result.errors[1]) == "row 4: feature 'income': value 'lots' is not a number"
    assert result.labels.tolist() == mixed_model.predict(X.iloc[[0, 2, 3, 5]]).tolist()
    records = list(result.records())
    assert records[0]["row"] == 0 and set(records[0]) == {"row", "prediction", "proba_churn", "proba_stay"}


def test_batch_raises_first_bad_row_by_default(cancer_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    rows = X.iloc[:5].to_numpy().copy()
    rows[2, 7] = np.nan
    with Runtime(cancer_bundle) as rt:
        with pytest.raises(EdgeRuntimeError, match=r"row 2: feature 'mean concave points': value nan"):
            rt.predict_batch(rows)
        skipped = rt.predict_batch(rows, on_error="skip")
        with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
            rt.predict_batch(rows, on_error="ignore")
    assert skipped.rows.tolist() == [0, 1, 3, 4]


def test_batch_of_only_bad_rows_returns_empty_result(cancer_bundle: Path, cancer_data: Any) -> None:
    rows = np.full((2, 30), np.inf)
    with Runtime(cancer_bundle) as rt:
        result = rt.predict_batch(rows, on_error="skip")
    assert len(result) == 0 and len(result.errors) == 2
    assert result.scores.shape == (0, 2)


def test_config_file_names_the_bundle_and_session(cancer_bundle: Path, tmp_path: Path, cancer_data: Any) -> None:
    config = tmp_path / "device.toml"
    config.write_text(f'[bundle]\npath = "{cancer_bundle}"\n[session]\nintra_op_threads = 2\n')
    with Runtime(config=config) as rt:
        assert rt.config.session.intra_op_threads == 2
        assert rt.predict(cancer_data[0].iloc[0].to_numpy()).label in (0, 1)


def test_session_config_value_object(cancer_bundle: Path) -> None:
    config = RuntimeConfig(session=SessionConfig(graph_optimization="basic", allow_spinning=True))
    with Runtime(cancer_bundle, config=config) as rt:
        assert rt.feature_names[0] == "mean radius"


def test_no_bundle_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no bundle given"):
        Runtime()


def test_closed_runtime_refuses_calls(cancer_bundle: Path, cancer_data: Any) -> None:
    rt = Runtime(cancer_bundle)
    rt.close()
    with pytest.raises(EdgeRuntimeError, match="closed"):
        rt.predict(cancer_data[0].iloc[0].to_numpy())
    with pytest.raises(EdgeRuntimeError, match="closed"):
        rt.predict_batch(cancer_data[0].iloc[:2].to_numpy())


# Finite inputs the model cannot compute with: a standardized value past float32's
# range overflows to infinity, and a linear model's inf - inf is NaN.
HUGE = 3.0e38


def test_a_row_the_model_cannot_compute_is_refused_not_answered_with_nan(cancer_bundle: Path, cancer_data: Any,
                                                                        tmp_path: Path) -> None:
    X, _ = cancer_data
    good = X.iloc[:3].to_numpy()
    huge = np.full(30, HUGE)
    huge[5] = 3.3e38  # the largest value: the one the error names
    with Runtime(cancer_bundle, db=tmp_path / "m.db", window_rows=3) as rt:
        with pytest.raises(NonFiniteOutputError) as caught:
            rt.predict(huge)
        assert isinstance(caught.value, SchemaError)
        assert caught.value.feature == X.columns[5] and caught.value.value == pytest.approx(3.3e38, rel=1e-6)
        assert str(caught.value).startswith("the model's output is not finite ([nan nan]) for this row; "
                                            "its largest value, feature '")
        with pytest.raises(NonFiniteOutputError, match=r"^row 1: the model's output is not finite"):
            rt.predict_batch(np.vstack([good[0], huge, good[1]]))
        result = rt.predict_batch(np.vstack([good[0], huge, good[1], good[2]]), on_error="skip")
        assert result.rows.tolist() == [0, 2, 3] and [e.row for e in result.errors] == [1]
        assert np.isfinite(result.scores).all() and result.request_ids is not None and len(result.request_ids) == 3
        rt.flush()
        window = rt.monitor.store.windows(1)[0]
    # Good rows served and logged; the refused ones counted as rejected.
    assert window["rows"] == 3 and window["rejected"] == 3


def test_a_regressor_refuses_rows_it_overflows_on(regression_bundle: Path) -> None:
    with Runtime(regression_bundle) as rt:
        with pytest.raises(NonFiniteOutputError, match=r"^the model's output is not finite \((nan|inf|-inf)\)"):
            rt.predict(np.full(10, HUGE))
        result = rt.predict_batch(np.vstack([np.zeros(10), np.full(10, HUGE)]), on_error="skip")
        assert result.rows.tolist() == [0] and result.errors[0].row == 1


def test_nan_the_input_policy_allows_is_served_as_the_model_answers_it(cancer_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    nan_row = X.iloc[0].to_numpy().copy()
    nan_row[3] = np.nan
    config = RuntimeConfig(inputs=InputPolicy(non_finite="allow"))
    with Runtime(cancer_bundle, config=config) as rt:
        assert rt.predict(nan_row).label in (0, 1)
        result = rt.predict_batch(np.vstack([nan_row, np.full(30, HUGE), nan_row]), on_error="skip")
        assert result.rows.tolist() == [0, 2] and [e.row for e in result.errors] == [1]
        assert len(rt.predict_batch(np.vstack([nan_row, nan_row]))) == 2
