"""Sketches of any strides and sizes merge (issue 11): the contract checks of a merge.

Every merged CDF is checked against the exact CDF of the pooled raw values, within the
merged sketch's own stated error (``rank_error``, a 99% bound over all points): so the
error that thinning, re-weighting and the merged sketches bring is carried along.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.sketches import REFERENCE_K, NumericSketch
from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task

GRID = np.linspace(0.01, 0.99, 99)


def pooled_gap(sketch: NumericSketch, values: np.ndarray) -> float:
    """Largest gap between the sketch's inclusive CDF and the exact one of ``values``, at their percentiles."""
    pooled = np.sort(values)
    points = np.quantile(pooled, GRID).astype(np.float32)
    exact = np.searchsorted(pooled, points, side="right") / pooled.size
    return float(np.abs(sketch.cdf(points, inclusive=True) - exact).max())


def sketched(rng: np.random.Generator, rows: int, stride: int, shift: float = 0.0, k: int = 200):
    values = rng.normal(shift, 1.0, rows).astype(np.float32)
    return NumericSketch(k, stride).update(values.copy()), values


@pytest.mark.parametrize("strides", [(8, 3), (4, 6), (1, 8), (5, 7), (2, 8), (3, 3)])
def test_merged_cdf_matches_the_pooled_data_within_the_stated_error(strides: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(strides))
    a, xa = sketched(rng, 60_000, strides[0])
    b, xb = sketched(rng, 25_000, strides[1], shift=0.7)
    merged = NumericSketch.from_bytes(a.to_bytes()).merge(b)
    assert merged.stride == np.gcd(*strides)
    assert (merged.count, merged.minimum, merged.maximum) == (85_000, min(a.minimum, b.minimum),
                                                              max(a.maximum, b.maximum))
    # The weights are exact: every KLL value of a stands for strides[0] rows, of b strides[1].
    assert merged.kll.n * merged.stride == a.kll.n * a.stride + b.kll.n * b.stride
    both = np.concatenate([xa, xb])
    assert merged.mean == pytest.approx(float(both.mean(dtype=np.float64)), rel=1e-6)
    assert pooled_gap(merged, both) <= merged.rank_error


def test_a_power_of_two_ratio_only_shifts_levels_and_adds_no_error() -> None:
    rng = np.random.default_rng(1)
    a, _ = sketched(rng, 40_000, 8)
    b, _ = sketched(rng, 40_000, 2)
    merged = NumericSketch.from_bytes(b.to_bytes()).merge(a)
    # Only what each side had, and a's KLL error (independent of b's) as a variance.
    assert merged.thin_var == pytest.approx(a.thin_var + b.thin_var + a.kll_count_var() / 4)


def test_merge_is_associative_within_the_error() -> None:
    rng = np.random.default_rng(7)
    parts = [sketched(rng, n, s) for n, s in ((30_000, 8), (5_000, 4), (12_000, 3))]
    (a, xa), (b, xb), (c, xc) = parts
    left = NumericSketch.from_bytes(a.to_bytes()).merge(b).merge(c)
    right = NumericSketch.from_bytes(a.to_bytes()).merge(NumericSketch.from_bytes(b.to_bytes()).merge(c))
    assert (left.count, left.stride, left.kll.n) == (right.count, right.stride, right.kll.n)
    assert left.mean == pytest.approx(right.mean) and left.m2 == pytest.approx(right.m2)
    points = np.quantile(np.concatenate([xa, xb, xc]), GRID)
    gap = np.abs(left.cdf(points, inclusive=True) - right.cdf(points, inclusive=True)).max()
    assert gap <= left.rank_error + right.rank_error


def test_empty_sketches_merge_and_take_the_other_stride() -> None:
    rng = np.random.default_rng(2)
    a, _ = sketched(rng, 5_000, 4)
    assert NumericSketch(stride=3).merge(a).stride == 4  # nothing yet: takes a's stride as it is
    assert NumericSketch.from_bytes(a.to_bytes()).merge(NumericSketch(stride=3)).stride == 4
    only_missing = NumericSketch(stride=3).update(np.full(10, np.nan, dtype=np.float32))
    merged = NumericSketch.from_bytes(a.to_bytes()).merge(only_missing)
    assert (merged.count, merged.missing, merged.stride) == (5_000, 10, 1)  # it had a stride: gcd(4, 3)
    assert merged.cdf([0.0])[0] == pytest.approx(a.cdf([0.0])[0], abs=a.rank_error)
    blank = NumericSketch().merge(NumericSketch(stride=5))
    assert (blank.count, blank.kll.is_empty(), blank.cdf([0.0]).tolist()) == (0, True, [0.0])


def test_merged_bytes_round_trip_and_merge_again() -> None:
    rng = np.random.default_rng(3)
    a, xa = sketched(rng, 20_000, 5)
    b, xb = sketched(rng, 20_000, 7, shift=-0.3)
    c, xc = sketched(rng, 3_000, 2, shift=0.4)
    merged = NumericSketch.from_bytes(a.to_bytes()).merge(b)
    again = NumericSketch.from_bytes(merged.to_bytes())
    assert (again.count, again.stride, again.thin_var, again.k) == (merged.count, 1, merged.thin_var, merged.k)
    points = np.linspace(-2, 2, 41)
    assert again.cdf(points).tolist() == merged.cdf(points).tolist()
    again.merge(c).update(rng.normal(size=1000).astype(np.float32))  # a re-weighted sketch goes on working
    assert again.count == 44_000


def test_a_large_sketch_merging_many_small_ones_states_their_averaged_error() -> None:
    """A fleet bucket: many k=200 windows into one k=1000 sketch. Their KLL errors are independent,
    so the bucket's stated error falls below one window's, and the pooled data stays within it."""
    rng = np.random.default_rng(4)
    bucket = NumericSketch(REFERENCE_K)
    pooled = []
    for i in range(60):
        window, values = sketched(rng, (2_000, 5_000, 20_000)[i % 3], (2, 4, 8)[i % 3])
        bucket.merge(window)
        pooled.append(values)
    assert bucket.stride == 2 and bucket.k == REFERENCE_K
    assert bucket.rank_sd < window.rank_sd / 2
    assert pooled_gap(bucket, np.concatenate(pooled)) <= bucket.rank_error


def test_profiles_of_windows_of_different_sizes_and_strides_merge() -> None:
    inputs = InputSchema(features=(FeatureSpec(name="a"), FeatureSpec(name="b")))
    outputs = OutputSchema(task=Task.REGRESSION, score_output="y")
    rng = np.random.default_rng(5)
    merged = Profile.for_schema(inputs, outputs, k=REFERENCE_K)
    columns = []
    for rows, stride in ((1_000, 1), (5_000, 4), (20_000, 8), (3_000, 3)):
        block = rng.normal(size=(rows, 2)).astype(np.float32)
        window = Profile.for_schema(inputs, outputs, stride=stride)
        window.update_matrix(block.copy(), scores=block[:, 0] * 2, latency=np.full(rows, 5.0))
        merged.merge(Profile.from_bytes(window.to_bytes()))
        columns.append(block)
    pooled = np.concatenate(columns)
    assert merged.rows == 29_000
    for i, name in enumerate("ab"):
        sketch = merged.features[name]
        assert isinstance(sketch, NumericSketch)
        assert (sketch.count, sketch.stride) == (29_000, 1)
        assert pooled_gap(sketch, pooled[:, i]) <= sketch.rank_error
    assert merged.scores.count == merged.latency.count == 29_000
    assert Profile.from_bytes(merged.to_bytes()).features["a"].count == 29_000


@pytest.mark.slow
def test_random_merges_stay_within_the_stated_error() -> None:
    """Any strides (1 to 16), k (8 to 1,000) and sizes (1 to 30,000 rows), merged in any order and
    through their bytes: the pooled data stays within the merged sketch's stated error."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        merged = NumericSketch(int(rng.choice([50, 200, 1000])), int(rng.integers(1, 9)))
        pooled = []
        for _ in range(int(rng.integers(1, 6))):
            values = rng.normal(rng.normal(), 1.0, int(rng.choice([1, 3, 50, 900, 5000, 30_000]))).astype(np.float32)
            sketch = NumericSketch(int(rng.choice([8, 200, 1000])), int(rng.integers(1, 17))).update(values.copy())
            if rng.random() < 0.5:
                sketch = NumericSketch.from_bytes(sketch.to_bytes())
            merged.merge(sketch)
            pooled.append(values)
            if rng.random() < 0.3:
                merged = NumericSketch.from_bytes(merged.to_bytes())
        every = np.concatenate(pooled)
        assert merged.count == every.size
        if every.size >= 2000:
            assert pooled_gap(merged, every) <= merged.rank_error
