"""Drift detection: sketch KS against scipy, and golden seeded streams."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from edge_runtime.config import DriftPolicy
from edge_runtime.errors import ConfigError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.drift import (
    GRID_ERROR,
    DriftStatus,
    assess_window,
    chi2_quantile,
    chi2_survival,
    js_distance,
    ks_distance,
    psi,
)
from edge_runtime.monitoring.drift import _ks_and_psi, _numeric_metrics, _numeric_verdicts, _verdict
from edge_runtime.monitoring.sketches import CategoricalSketch, NumericSketch
from edge_runtime.serving.schema import (
    FeatureKind,
    FeatureSpec,
    InputLayout,
    InputSchema,
    OutputSchema,
    Task,
)

INPUTS = InputSchema(
    features=(FeatureSpec(name="a"), FeatureSpec(name="b"), FeatureSpec(name="c"),
              FeatureSpec(name="city", kind=FeatureKind.CATEGORICAL, categories=("x", "y", "z"))),
    layout=InputLayout.COLUMNS)
OUTPUTS = OutputSchema(task=Task.CLASSIFICATION, score_output="p", label_output="l", classes=(0, 1))
CITY_P = [0.5, 0.3, 0.2]


def _rows(rng: np.random.Generator, n: int, *, shift_b: float = 0.0, city_p: list[float] = CITY_P) -> list:
    a = rng.normal(0, 1, n)
    b = rng.lognormal(0, 0.5, n) + shift_b
    c = rng.integers(0, 10, n).astype(float)
    city = rng.choice(["x", "y", "z"], n, p=city_p)
    return [a.astype(np.float32), b.astype(np.float32), c.astype(np.float32), city.tolist()]


def _profile(rng: np.random.Generator, n: int, *, stride: int = 1, block: int = 1024, **shift) -> Profile:
    """A profile of ``n`` seeded rows, fed in blocks as the monitor feeds its windows."""
    profile = Profile.for_schema(INPUTS, OUTPUTS, stride=stride)
    columns = _rows(rng, n, **shift)
    scores = 0.5 + np.abs(rng.normal(0, 0.2, n)).clip(0, 0.5)
    labels = (columns[0] > 0).astype(int)
    for start in range(0, n, block):
        profile.update_columns([c[start:start + block] for c in columns])
        profile.update_outputs(labels[start:start + block].tolist(), scores[start:start + block])
    return profile


@pytest.fixture(scope="module")
def reference() -> Profile:
    return _profile(np.random.default_rng(123), 20_000)


@pytest.mark.parametrize("n, m, shift", [(500, 300, 0.0), (20_000, 5_000, 0.0), (20_000, 5_000, 0.1),
                                         (100_000, 100_000, 0.05), (1_000, 200, 0.5)])
def test_sketch_ks_agrees_with_scipy_within_the_rank_error(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    x = rng.normal(0, 1, n).astype(np.float32)
    y = rng.normal(shift, 1, m).astype(np.float32)
    a, b = NumericSketch().update(x), NumericSketch().update(y)
    exact = stats.ks_2samp(x, y).statistic
    # documented bound: both sketches' rank errors plus the evaluation grid
    assert abs(ks_distance(a, b) - exact) <= a.rank_error + b.rank_error + GRID_ERROR


@pytest.mark.parametrize("stride, block", [(8, 512), (8, 1024), (16, 512), (8, 64)])
@pytest.mark.parametrize("shift", [0.0, 0.1, 0.3])
def test_thinned_sketch_ks_agrees_with_scipy_within_its_rank_error(stride: int, block: int, shift: float) -> None:
    """The live windows' thinned sketches: the thinning's error is part of the documented bound."""
    rng = np.random.default_rng(stride * block + int(shift * 10))
    x = rng.normal(0, 1, 20_000).astype(np.float32)
    reference = NumericSketch().update(x)
    for trial in range(5):
        y = rng.lognormal(shift, 0.5, 5_000).astype(np.float32) if trial % 2 else rng.normal(shift, 1, 5_000)
        live = NumericSketch(stride=stride)
        for start in range(0, y.size, block):
            live.update(y[start:start + block])
        assert live.count == 5_000 and live.kll.n < 5_000 / stride + 5_000 / block
        assert live.mean == pytest.approx(float(np.mean(y)), rel=1e-6, abs=1e-6)
        exact = stats.ks_2samp(x, y).statistic
        assert abs(ks_distance(reference, live) - exact) <= reference.rank_error + live.rank_error + GRID_ERROR


def test_psi_and_js_basics() -> None:
    rng = np.random.default_rng(0)
    ref = NumericSketch().update(rng.normal(size=50_000))
    assert psi(ref, NumericSketch().update(rng.normal(size=50_000))) < 0.01
    assert psi(ref, NumericSketch().update(rng.normal(1.0, 1, size=50_000))) > 0.5
    same = CategoricalSketch().update(["x"] * 50 + ["y"] * 50)
    assert js_distance(same, CategoricalSketch().update(["y"] * 5 + ["x"] * 5)) == 0.0
    assert js_distance(CategoricalSketch().update(["x"]), CategoricalSketch().update(["y"])) == pytest.approx(1.0)


def test_chi_square_approximation_matches_scipy() -> None:
    for df in (1, 2, 9, 30):
        for p in (0.95, 0.999, 0.99999):
            assert chi2_quantile(p, df) == pytest.approx(stats.chi2.ppf(p, df), rel=0.025)
        assert chi2_survival(stats.chi2.ppf(0.99, df), df) == pytest.approx(0.01, abs=0.002)


@pytest.mark.parametrize("stride", [1, 8])
@pytest.mark.parametrize("rows", [100, 1_000, 10_000, 100_000, 1_000_000])
def test_no_alarm_on_stationary_streams(reference: Profile, rows: int, stride: int) -> None:
    rng = np.random.default_rng(rows + stride)
    windows = 3 if rows <= 100_000 else 1
    for _ in range(windows):
        result = assess_window(reference, _profile(rng, rows, stride=stride), DriftPolicy())
        assert result.drifted == [], {n: f.to_dict() for n, f in result.features.items()}
        assert result.warned == []
        assert result.prediction is not None and result.prediction.status is DriftStatus.OK


@pytest.mark.parametrize("stride", [1, 8])
def test_known_numeric_shift_is_detected_and_only_there(reference: Profile, stride: int) -> None:
    rng = np.random.default_rng(7)
    result = assess_window(reference, _profile(rng, 5_000, shift_b=0.5, stride=stride, block=512), DriftPolicy())
    assert result.drifted == ["b"]
    verdict = result.features["b"]
    assert verdict.metric in ("ks", "psi") and verdict.value > verdict.threshold
    assert set(verdict.metrics) == {"ks", "psi"}


def test_categorical_shift_is_detected(reference: Profile) -> None:
    rng = np.random.default_rng(8)
    result = assess_window(reference, _profile(rng, 2_000, city_p=[0.2, 0.3, 0.5]), DriftPolicy())
    assert result.drifted == ["city"]
    city = result.features["city"]
    assert city.metric == "js" and city.metrics["chi2"]["p_value"] < 1e-6


def test_a_million_rows_do_not_flag_a_trivial_shift(reference: Profile) -> None:
    """A 0.02 shift of a lognormal(0, 0.5) feature is significant at 1e6 rows but far below the effect floors."""
    rng = np.random.default_rng(9)
    result = assess_window(reference, _profile(rng, 1_000_000, shift_b=0.02), DriftPolicy())
    assert result.drifted == [] and result.warned == []
    ks = result.features["b"].metrics["ks"]
    assert ks["value"] > 0.01  # the shift is visible ...
    assert ks["threshold"] == 0.1  # ... but the effect floor decides


def test_small_windows_need_bigger_shifts(reference: Profile) -> None:
    rng = np.random.default_rng(10)
    small = assess_window(reference, _profile(rng, 100, shift_b=0.5), DriftPolicy())
    assert small.features["b"].metrics["ks"]["threshold"] > 0.2  # sample-size aware
    big = assess_window(reference, _profile(rng, 100, shift_b=3.0), DriftPolicy())
    assert "b" in big.drifted


def test_a_feature_with_no_values_in_a_window_is_ok_not_an_error(reference: Profile) -> None:
    live = Profile.for_schema(INPUTS, OUTPUTS, stride=8)
    columns = _rows(np.random.default_rng(11), 600)
    columns[1] = np.full(600, np.nan, dtype=np.float32)  # "b" missing in every row
    live.update_columns(columns)
    live.update_outputs([0, 1] * 300, np.full(600, 0.7))
    result = assess_window(reference, live, DriftPolicy())
    b = result.features["b"]
    assert b.status is DriftStatus.OK and b.rows == 0 and b.metrics["ks"]["threshold"] == float("inf")
    assert b.to_dict()["metrics"]["ks"]["threshold"] is None  # JSON has no infinity
    assert live.features["b"].missing == 600


def test_window_summary_and_worst(reference: Profile) -> None:
    rng = np.random.default_rng(11)
    result = assess_window(reference, _profile(rng, 5_000, shift_b=1.0, city_p=[0.1, 0.1, 0.8]), DriftPolicy())
    summary = result.summary()
    assert set(summary["drifted"]) == {"b", "city"} and summary["worst"][:2] in (["b", "city"], ["city", "b"])
    assert summary["features"] == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha_drift": 0.0}, "'alpha_drift' parameter of DriftPolicy must be a float in (0, 1)"),
    ({"ks_warn": 0.3}, "'ks_warn' (0.3) must not exceed 'ks_drift' (0.1)"),
    ({"psi_bins": 1}, "'psi_bins' parameter of DriftPolicy must be an int in [2, 100]"),
])
def test_policy_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        DriftPolicy(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("stride", [1, 4, 8])
def test_vectorized_numeric_verdicts_equal_the_per_feature_ones(reference: Profile, stride: int) -> None:
    """The window close's vectorized verdicts are the per-feature formulas', value for value, on a
    seeded stream of windows: stationary, shifted by sizes around the thresholds, tiny and empty."""
    rng = np.random.default_rng(2024)
    policies = [DriftPolicy(), DriftPolicy(ks_warn=0.0, ks_drift=0.0, psi_warn=0.0, psi_drift=0.0)]
    statuses = set()
    for rows, shift in [(5_000, 0.0), (5_000, 0.03), (5_000, 0.08), (5_000, 0.5), (300, 0.2), (20, 0.0),
                        (1, 0.0), (0, 0.0)]:
        live = _profile(rng, rows, stride=stride, block=512, shift_b=shift) if rows else Profile.for_schema(
            INPUTS, OUTPUTS, stride=stride)
        names = ["a", "b", "c"]
        refs = [reference.features[n] for n in names]
        lives = [live.features[n] for n in names]
        ks, psis = _ks_and_psi(refs, lives, 10)
        for policy in policies:
            a_warn, a_drift = policy.alpha_warn / 8, policy.alpha_drift / 8
            fast = _numeric_verdicts(names, refs, lives, policy, a_warn, a_drift, ks, psis)
            for i, (name, ref, cur) in enumerate(zip(names, refs, lives)):
                metrics = _numeric_metrics(ref, cur, policy, a_warn, a_drift, float(ks[i]), float(psis[i]))
                slow = _verdict(name, "numeric", metrics, cur.count, ref.count)
                assert fast[i] == slow
                assert fast[i].to_dict() == slow.to_dict()
                statuses.add(slow.status)
    assert statuses == {DriftStatus.OK, DriftStatus.WARN, DriftStatus.DRIFT}
