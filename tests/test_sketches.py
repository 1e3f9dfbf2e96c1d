"""Contract checks over every sketch: bytes round-trip, merge is associative, empty behaves."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.errors import BundleFormatError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.sketches import (
    CategoricalSketch,
    NumericSketch,
    sketch_from_bytes,
)
from edge_runtime.serving.schema import (
    FeatureKind,
    FeatureSpec,
    InputLayout,
    InputSchema,
    OutputSchema,
    Task,
)

FLOATS = st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=0, max_size=300)
WORDS = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=200)


def _numeric(values: list[float]) -> NumericSketch:
    return NumericSketch().update(np.array(values, dtype=np.float32))


@settings(max_examples=50, deadline=None)
@given(FLOATS)
def test_numeric_bytes_round_trip(values: list[float]) -> None:
    sketch = _numeric(values)
    again = NumericSketch.from_bytes(sketch.to_bytes())
    assert (again.count, again.missing, again.k) == (sketch.count, sketch.missing, sketch.k)
    assert again.to_bytes() == sketch.to_bytes()
    if values:
        assert again.quantiles([0.5]).tolist() == sketch.quantiles([0.5]).tolist()


@settings(max_examples=50, deadline=None)
@given(FLOATS, FLOATS, FLOATS)
def test_numeric_merge_is_associative_and_matches_concatenation(a: list[float], b: list[float],
                                                                c: list[float]) -> None:
    left = _numeric(a).merge(_numeric(b)).merge(_numeric(c))
    right = _numeric(a).merge(_numeric(b).merge(_numeric(c)))
    whole = _numeric(a + b + c)
    for merged in (left, right):
        assert merged.count == whole.count == len(a + b + c)
        if whole.count:
            assert merged.minimum == whole.minimum and merged.maximum == whole.maximum
            assert merged.mean == pytest.approx(whole.mean, rel=1e-6, abs=1e-3)
            assert merged.variance == pytest.approx(whole.variance, rel=1e-5, abs=1e-2)


def test_merged_quantiles_agree_with_one_sketch_within_the_rank_error() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(i, 1, 50_000).astype(np.float32) for i in range(4)]
    merged = NumericSketch()
    for part in parts:
        merged.merge(NumericSketch().update(part))
    data = np.sort(np.concatenate(parts))
    error = merged.rank_error
    assert 0 < error < 0.02
    for rank, value in zip(np.linspace(0.01, 0.99, 50), merged.quantiles(np.linspace(0.01, 0.99, 50))):
        true_rank = np.searchsorted(data, value) / data.size
        assert abs(true_rank - rank) <= error


def test_thinned_sketches_of_one_stride_merge_as_they_are() -> None:
    rng = np.random.default_rng(3)
    a = NumericSketch(stride=8).update(rng.normal(size=1024).astype(np.float32))
    b = NumericSketch(stride=8).update(rng.normal(size=512).astype(np.float32))
    merged = NumericSketch.from_bytes(a.to_bytes()).merge(b)
    assert (merged.count, merged.kll.n, merged.stride) == (1536, 192, 8)
    assert merged.thin_var == a.thin_var + b.thin_var == 2 * 16.0  # 16 per sorted chunk (of up to 1,024 rows)
    assert NumericSketch().merge(a).stride == 8  # an empty sketch takes the other's stride
    assert a.merge(NumericSketch()).count == 1024  # and an empty one of any stride merges into any
    # Other strides merge too (tests/test_sketch_merge.py): at their greatest common divisor.
    assert NumericSketch().update([1.0]).merge(a).stride == 1


def test_first_format_numeric_bytes_still_read() -> None:
    """Bundles exported before thinning existed carry version-1 sketches."""
    values = np.arange(1000, dtype=np.float32)
    new = NumericSketch().update(values)
    header = struct.pack("<4sBHQQdddd", b"ERNS", 1, new.k, new.count, new.missing, new.minimum, new.maximum,
                         new.mean, new.m2)
    old = NumericSketch.from_bytes(header + bytes(new.kll.serialize()))
    assert (old.count, old.stride, old.thin_var, old.rank_error) == (1000, 1, 0.0, new.rank_error)
    assert old.quantiles([0.5])[0] == new.quantiles([0.5])[0]


def test_numeric_missing_and_empty() -> None:
    empty = NumericSketch()
    assert empty.count == 0 and empty.variance == 0.0 and empty.rank_error == 0.0
    assert np.isnan(empty.quantiles([0.5])).all() and empty.cdf([1.0]).tolist() == [0.0]
    assert NumericSketch.from_bytes(empty.to_bytes()).count == 0
    only_nan = NumericSketch().update([np.nan, np.nan])
    assert (only_nan.count, only_nan.missing) == (0, 2)
    assert only_nan.summary() == {"count": 0, "missing": 2}


def test_read_only_arrays_are_accepted() -> None:
    """pandas 3 hands out read-only arrays, which datasketches' update rejects: copied first."""
    values = np.arange(10, dtype=np.float32)
    values.flags.writeable = False
    assert NumericSketch().update(values).count == 10


@settings(max_examples=50, deadline=None)
@given(WORDS, WORDS, WORDS)
def test_categorical_merge_is_associative_and_exact(a: list[str], b: list[str], c: list[str]) -> None:
    def make(words: list[str]) -> CategoricalSketch:
        return CategoricalSketch().update(words)

    left = make(a).merge(make(b)).merge(make(c))
    right = make(a).merge(make(b).merge(make(c)))
    whole = make(a + b + c)
    assert left.counts == right.counts == whole.counts
    assert CategoricalSketch.from_bytes(whole.to_bytes()).counts == whole.counts


def test_categorical_bounds_and_missing() -> None:
    sketch = CategoricalSketch(max_categories=2).update(["a", "b", "c", "c", None, float("nan")])
    assert sketch.counts == {"a": 1, "b": 1} and sketch.other == 2 and sketch.missing == 2
    assert CategoricalSketch().total == 0


def test_profile_round_trip_and_merge() -> None:
    inputs = InputSchema(features=(FeatureSpec(name="x"), FeatureSpec(name="c", kind=FeatureKind.CATEGORICAL,
                                                                       categories=("u", "v"))),
                         layout=InputLayout.COLUMNS)
    outputs = OutputSchema(task=Task.CLASSIFICATION, score_output="p", label_output="l", classes=("no", "yes"))
    first = Profile.for_schema(inputs, outputs).update_columns([np.array([1.0, 2.0]), ["u", "v"]])
    first.update_outputs(["no", "yes"], np.array([0.6, 0.9]))
    second = Profile.from_bytes(first.to_bytes())
    assert second.rows == 2 and second.features["c"].counts == {"u": 1, "v": 1}
    second.merge(Profile.from_bytes(first.to_bytes()))
    assert second.rows == 4 and second.predictions.counts == {"no": 2, "yes": 2}


@pytest.mark.parametrize("data, message", [
    (b"XXXX", "unknown sketch tag"),
    (b"ERNS\x01", "truncated"),
    (b"ERCS\x09{}", "newer"),
])
def test_corrupt_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(BundleFormatError, match=message):
        sketch_from_bytes(data)
    with pytest.raises(BundleFormatError):
        Profile.from_bytes(b"ERPF\x01\xff\x00\x00\x00{")
