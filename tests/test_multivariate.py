"""The multivariate drift signal: the PCA fit at export, its file, per-row errors, the verdict, end to end."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from converters import export
from converters.multivariate import fit_multivariate
from converters.package import BundleWriter
from edge_runtime import MonitoringDatabase, Runtime, RuntimeConfig
from edge_runtime.cli import main
from edge_runtime.config import DriftPolicy, MonitoringConfig
from edge_runtime.errors import BundleFormatError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.drift import DriftStatus, assess_window
from edge_runtime.monitoring.multivariate import (
    MULTIVARIATE_FILE,
    ReconstructionModel,
    add_errors,
    critical_error,
    load_multivariate,
    reconstruction_metrics,
)
from edge_runtime.monitoring.sketches import NumericSketch
from edge_runtime.serving.bundle import load_bundle, read_manifest
from edge_runtime.serving.schema import FeatureKind, FeatureSpec, InputLayout, InputSchema, OutputSchema, Task


def correlated(rng: np.random.Generator, n: int, rho: float, others: int = 2) -> np.ndarray:
    """Columns a, b with correlation ``rho`` (standard normal marginals whatever rho), then others."""
    a = rng.normal(size=n)
    b = rho * a + math.sqrt(1 - rho * rho) * rng.normal(size=n)
    return np.column_stack([a, b, *(rng.normal(size=n) for _ in range(others))])


def schema_of(d: int) -> InputSchema:
    return InputSchema(features=tuple(FeatureSpec(name=f"f{i}") for i in range(d)))


# ---------------------------------------------------------------- the fit
def test_fit_keeps_the_fewest_components_reaching_the_share() -> None:
    rng = np.random.default_rng(0)
    X = correlated(rng, 5000, 0.8, others=3)  # variances about 1.8, 1, 1, 1, 0.2 (of 5)
    model = fit_multivariate(X, schema_of(5))
    assert model is not None
    shares = np.cumsum(np.linalg.svd(np.corrcoef(X.T), hermitian=True)[1]) / 5
    assert model.components == int(np.argmax(shares >= 0.65)) + 1 == 3
    assert model.explained == pytest.approx(shares[2], abs=1e-6)
    assert fit_multivariate(X, schema_of(5), variance_share=0.3).components == 1
    # Orthonormal axes, standardization from the data.
    assert np.allclose(model.axes @ model.axes.T, np.eye(5), atol=1e-9)
    assert np.allclose(model.mean, X.astype(np.float32).mean(axis=0), atol=1e-6)
    assert np.allclose(model.scale, X.astype(np.float32).std(axis=0), rtol=1e-5)


def test_reference_errors_are_out_of_fold_and_match_live_rows() -> None:
    rng = np.random.default_rng(1)
    model = fit_multivariate(correlated(rng, 4000, 0.8, others=8), schema_of(10))
    assert model is not None
    live = model.errors(correlated(rng, 200_000, 0.8, others=8).astype(np.float32))
    ref = model.reference
    assert ref.rows == 4000 and ref.cap > 0 and live.max() <= ref.cap
    # The reference mean is the live mean within a few of its standard errors.
    assert abs(float(live.mean()) - ref.mean) < 4 * ref.std / math.sqrt(ref.rows)
    assert float(live.std()) == pytest.approx(ref.std, rel=0.05)
    same_rows = correlated(np.random.default_rng(1), 4000, 0.8, others=8)
    in_sample = fit_multivariate(same_rows, schema_of(10), folds=1)
    assert in_sample is not None and in_sample.reference.mean <= ref.mean


def test_fit_leaves_out_categoricals_and_needs_two_numeric_features() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.normal(size=300), "city": rng.choice(["x", "y"], 300),
                          "b": rng.normal(size=300)})
    city = FeatureSpec(name="city", kind=FeatureKind.CATEGORICAL, categories=("x", "y"))
    schema = InputSchema(features=(FeatureSpec(name="a"), city, FeatureSpec(name="b")),
                         layout=InputLayout.COLUMNS)
    model = fit_multivariate(frame, schema)
    assert model is not None and model.features == ("a", "b") and model.columns == (0, 2)
    one = InputSchema(features=schema.features[:2], layout=InputLayout.COLUMNS)
    assert fit_multivariate(frame[["a", "city"]], one) is None


def test_missing_values_are_imputed_with_the_mean() -> None:
    rng = np.random.default_rng(3)
    X = correlated(rng, 2000, 0.8)
    X[rng.random(X.shape) < 0.05] = np.nan
    model = fit_multivariate(X, schema_of(4))
    assert model is not None and math.isfinite(model.reference.mean)
    rows = np.array([[np.nan, 1.0, 0.5, -0.5], [0.0, 1.0, 0.5, -0.5]], dtype=np.float32)
    filled = rows.copy()
    filled[0, 0] = model.mean[0]
    assert np.allclose(model.errors(rows)[0], model.errors(filled)[0], atol=1e-5)


def test_errors_are_the_residual_norm_of_the_standardized_rows() -> None:
    rng = np.random.default_rng(4)
    X = correlated(rng, 3000, 0.6, others=4) * [1, 10, 100, 0.1, 1, 5] + [0, 50, 1e4, 0, -3, 7]
    model = fit_multivariate(X, schema_of(6))
    assert model is not None
    rows = X[:512].astype(np.float32)
    z = (rows.astype(np.float64) - model.mean) / model.scale
    kept = model.axes[:model.components]
    expected = np.minimum(np.linalg.norm(z - z @ kept.T @ kept, axis=1), model.reference.cap)
    assert np.allclose(model.errors(rows), expected, atol=1e-4)
    # Columns layout: one array per schema feature.
    assert np.allclose(model.value_errors([rows[:, j] for j in range(6)]), model.errors(rows))


def test_large_blocks_are_cut_below_the_size_openblas_would_thread() -> None:
    """A threaded product leaves OpenBLAS's workers spinning (µs of CPU per served row): blocks are cut."""
    model = fit_multivariate(correlated(np.random.default_rng(7), 3000, 0.8, others=28), schema_of(30))
    assert model is not None
    d, rest = 30, 30 - model.components
    chunk = model._chunk
    assert chunk * d * rest < 65536 * 4 <= (chunk + 1) * d * rest and chunk < 1000
    block = correlated(np.random.default_rng(8), 1000, 0.8, others=28).astype(np.float32)
    one_by_one = np.concatenate([model.errors(block[i:i + 1]) for i in range(1000)])
    assert np.allclose(model.errors(block), one_by_one, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ the file
def test_file_round_trip() -> None:
    model = fit_multivariate(correlated(np.random.default_rng(5), 1000, 0.8), schema_of(4))
    assert model is not None
    again = ReconstructionModel.from_bytes(model.to_bytes())
    assert (again.features, again.columns) == (model.features, model.columns)
    assert again.components == model.components
    assert again.reference == model.reference and again.explained == model.explained
    assert np.array_equal(again.axes, model.axes) and np.array_equal(again.scale, model.scale)
    rows = np.random.default_rng(6).normal(size=(64, 4)).astype(np.float32)
    assert np.array_equal(again.errors(rows), model.errors(rows))


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda b: b[:5], "truncated"),
    (lambda b: b"NOPE" + b[4:], "not a multivariate model"),
    (lambda b: b[:4] + bytes([9]) + b[5:], "format 9 is newer"),
    (lambda b: b[:-8], "numbers for 4 features"),
    (lambda b: b[:9] + b"[" + b[10:], "corrupt"),
])
def test_a_bad_file_is_a_bundle_format_error(mangle: Any, message: str) -> None:
    model = fit_multivariate(correlated(np.random.default_rng(5), 1000, 0.8), schema_of(4))
    assert model is not None
    with pytest.raises(BundleFormatError, match=message):
        ReconstructionModel.from_bytes(mangle(model.to_bytes()))


def _rewrite(bundle: Path, out: Path, name: str, data: bytes) -> Path:
    """``bundle`` with one file replaced and its checksums rewritten: only the format can refuse it."""
    manifest = read_manifest(bundle)
    with BundleWriter(out) as writer:
        for file in manifest.files:
            writer.add_file(file, data if file == name else (bundle / file).read_bytes())
        writer.write_manifest(manifest)
        return writer.commit()


# ------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def correlated_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier on a, b (correlation +0.8) and two independent features; its target ignores a and b."""
    rng = np.random.default_rng(10)
    X = correlated(rng, 20_000, 0.8)
    y = (X[:, 2] + 0.5 * X[:, 3] > 0).astype(int)
    out = tmp_path_factory.mktemp("bundles") / "corr"
    return export(LogisticRegression().fit(X, y), X, y, name="corr", version="1", out_dir=out,
                  feature_names=["a", "b", "c", "d"]).path


def test_the_bundle_carries_the_model(correlated_bundle: Path) -> None:
    manifest = read_manifest(correlated_bundle)
    entry = manifest.reference["multivariate"]
    assert entry["file"] == MULTIVARIATE_FILE and MULTIVARIATE_FILE in manifest.files
    assert entry["features"] == ["a", "b", "c", "d"] and entry["variance_share"] == 0.65
    model = load_multivariate(load_bundle(correlated_bundle))
    assert model is not None and model.components == entry["components"] == 2


def test_a_corrupt_model_file_names_it(correlated_bundle: Path, tmp_path: Path) -> None:
    broken = _rewrite(correlated_bundle, tmp_path / "broken", MULTIVARIATE_FILE, b"ERMV\x01junk")
    with pytest.raises(BundleFormatError, match="file 'multivariate.bin' is not a readable multivariate"):
        load_multivariate(load_bundle(broken))
    with pytest.raises(BundleFormatError, match="multivariate.bin"):
        Runtime(broken, db=tmp_path / "m.db")


def test_golden_a_flipped_correlation_fires_only_the_multivariate_signal(correlated_bundle: Path,
                                                                        tmp_path: Path) -> None:
    """Every marginal is unchanged (standard normal) but corr(a, b) goes from +0.8 to -0.8."""
    rng = np.random.default_rng(11)
    stationary, flipped = correlated(rng, 3000, 0.8), correlated(rng, 3000, -0.8)
    db = tmp_path / "m.db"
    config = RuntimeConfig(monitoring=MonitoringConfig(db=db, window_rows=1000))
    with Runtime(correlated_bundle, config=config) as rt:
        rt.predict_batch(np.vstack([stationary, flipped]))
    with MonitoringDatabase(db) as database:
        report = database.drift()
    assert [w.rows for w in report.windows] == [1000] * 6
    verdicts = [w.multivariate for w in report.windows]
    assert all(v is not None for v in verdicts)
    assert [v.status for v in verdicts if v is not None] == [DriftStatus.OK] * 3 + [DriftStatus.DRIFT] * 3
    for window in report.windows:
        assert {f.status for f in window.features.values()} == {DriftStatus.OK}, window.index
        assert window.prediction is not None and window.prediction.status is DriftStatus.OK
        assert window.summary.multivariate == window.multivariate.status.value  # type: ignore[union-attr]
    flipped_error = report.windows[-1].multivariate
    assert flipped_error is not None and flipped_error.metric == "reconstruction_error"
    assert flipped_error.value > 1.3 * flipped_error.metrics["reconstruction_error"]["reference_mean"]
    payload = report.to_dict()["windows"][-1]
    assert payload["multivariate"]["status"] == "drift" and payload["summary"]["multivariate"] == "drift"
    json.dumps(report.to_dict(), allow_nan=False)
    text = CliRunner().invoke(main, ["drift", "--db", str(db)]).stdout.splitlines()
    lines = [line for line in text if line.startswith("  multivariate: ")]
    assert len(lines) == 6 and lines[0].startswith("  multivariate: ok (mean reconstruction error 0.")
    assert lines[-1].startswith("  multivariate: drift (")


def test_without_a_model_the_window_has_no_multivariate_verdict(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    X = rng.normal(size=(500, 1))
    bundle = export(LogisticRegression().fit(X, X[:, 0] > 0), X, X[:, 0] > 0, name="one", version="1",
                    out_dir=tmp_path / "one", feature_names=["x"]).path
    assert "multivariate" not in (read_manifest(bundle).reference or {})
    with Runtime(bundle, db=tmp_path / "m.db", window_rows=100) as rt:
        rt.predict_batch(X[:250])
    with MonitoringDatabase(tmp_path / "m.db") as database:
        windows = database.drift().to_dict()["windows"]
    assert len(windows) == 3 and all(w["multivariate"] is None for w in windows)
    assert all(w["summary"]["multivariate"] is None for w in windows)


# ------------------------------------------------------------ the profile
def test_the_live_profile_keeps_errors_as_a_section_of_its_own() -> None:
    inputs = schema_of(2)
    outputs = OutputSchema(task=Task.REGRESSION, score_output="y")
    profile = Profile.for_schema(inputs, outputs, stride=4, multivariate=True)
    block = np.random.default_rng(13).normal(size=(1000, 2)).astype(np.float32)
    profile.update_matrix(block, scores=block[:, 0])
    assert profile.multivariate is not None
    add_errors(profile.multivariate, np.abs(block[:, 1]))
    again = Profile.from_bytes(profile.to_bytes())
    assert again.multivariate is not None and again.multivariate.count == 1000
    assert again.multivariate.mean == pytest.approx(float(np.abs(block[:, 1]).mean()), rel=1e-6)
    merged = Profile.from_bytes(profile.to_bytes()).merge(again)
    assert merged.multivariate is not None and merged.multivariate.count == 2000
    assert Profile.from_bytes(Profile.for_schema(inputs, outputs).to_bytes()).multivariate is None


def test_readers_ignore_a_section_they_do_not_know() -> None:
    """What lets a reader older than the ``multivariate`` section read a window that has one."""
    inputs, outputs = schema_of(1), OutputSchema(task=Task.REGRESSION, score_output="y")
    data = Profile.for_schema(inputs, outputs).update_columns([np.arange(5.0)]).to_bytes()
    head = struct.Struct("<4sBI")
    magic, version, length = head.unpack_from(data)
    header = json.loads(data[head.size:head.size + length])
    extra = NumericSketch().update([1.0, 2.0]).to_bytes()
    header["entries"].append(["from_the_future", "", len(extra)])
    text = json.dumps(header).encode()
    blobs = data[head.size + length:]
    again = Profile.from_bytes(head.pack(magic, version, len(text)) + text + blobs + extra)
    assert again.features["f0"].count == 5 and again.multivariate is None


# ------------------------------------------------------------ false alarms
def _skewed(rng: np.random.Generator, n: int) -> np.ndarray:
    """Lognormal features sharing two factors: per-row errors with skewness ~3."""
    mix = np.random.default_rng(99).normal(size=(2, 6)) * 0.5
    return np.exp(rng.normal(size=(n, 2)) @ mix + 0.3 * rng.normal(size=(n, 6)))


@pytest.mark.parametrize("make", [_skewed, lambda rng, n: correlated(rng, n, 0.8, others=4)])
def test_false_alarms_stay_below_alpha_in_windows_of_100_rows(make: Any) -> None:
    """With the whole alpha on this one test and no effect floor, at most 1% of stationary windows drift."""
    rng = np.random.default_rng(20)
    model = fit_multivariate(make(rng, 20_000), schema_of(6))
    assert model is not None
    policy = DriftPolicy(multivariate_warn=0.0, multivariate_drift=0.0)
    for rows, windows in ((100, 20_000), (1000, 2000)):
        means = model.errors(make(rng, rows * windows).astype(np.float32)).astype(np.float64)
        means = means.reshape(windows, rows).mean(axis=1)
        assert np.mean(means > critical_error(model.reference, rows, 0.01)) <= 0.01
        assert np.mean(means > critical_error(model.reference, rows, 0.001)) <= 0.001
    # The same through a window's sketch and the verdict.
    live = NumericSketch().update(model.errors(make(rng, 100).astype(np.float32)))
    entry = reconstruction_metrics(model, live, policy, 0.05, 0.01)["reconstruction_error"]
    assert entry["threshold"] == pytest.approx(critical_error(model.reference, 100, 0.01))


def test_stationary_windows_through_assess_window_raise_no_alarm() -> None:
    """Default policy, the window's own alpha split (1% over 15 tests): of 300 windows of 100 skewed rows,
    at most 1% drift and 5% warn (the README's promise; the expected count is 0.2 drifts)."""
    rng = np.random.default_rng(21)
    reference = _skewed(rng, 20_000)
    model = fit_multivariate(reference, schema_of(6))
    assert model is not None
    inputs, outputs = schema_of(6), OutputSchema(task=Task.REGRESSION, score_output="y")
    ref_profile = Profile.for_schema(inputs, outputs).update_matrix(reference.astype(np.float32),
                                                                    scores=reference[:, 0].astype(np.float32))
    statuses = []
    for _ in range(300):
        block = _skewed(rng, 100).astype(np.float32)
        live = Profile.for_schema(inputs, outputs, multivariate=True)
        live.update_matrix(block, scores=block[:, 0].copy())
        assert live.multivariate is not None
        add_errors(live.multivariate, model.errors(block))
        verdict = assess_window(ref_profile, live, DriftPolicy(), multivariate=model).multivariate
        assert verdict is not None and verdict.rows == 100
        statuses.append(verdict.status)
    assert statuses.count(DriftStatus.DRIFT) <= 3
    assert statuses.count(DriftStatus.WARN) <= 15


def test_columns_layout_rows_with_gaps_get_their_errors(mixed_bundle: Path, mixed_data: Any,
                                                        tmp_path: Path) -> None:
    """A pipeline over a DataFrame (NaN in a numeric feature, categoricals left out), training rows served."""
    entry = read_manifest(mixed_bundle).reference["multivariate"]
    assert entry["features"] == ["age", "income", "visits"]
    frame = mixed_data[0]
    with Runtime(mixed_bundle, db=tmp_path / "m.db", window_rows=200) as rt:
        rt.predict_batch(frame.iloc[:400])
        for record in frame.iloc[400:600].to_dict("records"):  # one row at a time: the buffered path
            rt.predict(record)
    with MonitoringDatabase(tmp_path / "m.db") as database:
        windows = database.drift().windows
    assert [w.rows for w in windows] == [200, 200, 200]
    for window in windows:
        assert window.multivariate is not None and window.multivariate.rows == 200
        assert window.multivariate.status is DriftStatus.OK and math.isfinite(window.multivariate.value)
