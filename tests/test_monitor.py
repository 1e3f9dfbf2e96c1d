"""Live monitoring through the Runtime: windows, data quality, decision log, drift on real bundles."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from converters import export
from edge_runtime import InputPolicy, Runtime, RuntimeConfig
from edge_runtime.config import MonitoringConfig
from edge_runtime.errors import NonFiniteValueError, StoreError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.reports import MonitoringDatabase
from edge_runtime.monitoring.sketches import NumericSketch
from edge_runtime.monitoring.store import MonitorStore
from edge_runtime.monitoring.windows import window_stride
from edge_runtime.serving.bundle import DIGEST_FILE, manifest_digest
from tests.conftest import mixed_frame, mixed_pipeline


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, **monitoring: Any) -> RuntimeConfig:
    return RuntimeConfig(monitoring=MonitoringConfig(db=tmp_path / "m.db", **monitoring))


def test_windows_close_by_rows_and_close_loses_nothing(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    with Runtime(cancer_bundle, db=tmp_path / "m.db", window_rows=1000) as rt:
        ids = [rt.predict(rows[i % len(rows)]).request_id for i in range(2500)]
    assert ids == list(range(1, 2501))
    store = MonitorStore(tmp_path / "m.db")
    windows = store.windows()
    assert [(w["seq"], w["rows"], w["partial"]) for w in windows] == [(0, 1000, 0), (1, 1000, 0), (2, 500, 1)]
    assert store.decision_count() == 2500
    first = windows[0]
    assert first["model"] == "cancer" and first["version"] == "1.0" and len(first["model_sha256"]) == 64
    assert first["latency"]["p50_us"] > 0
    assert store.current_window() is None  # nothing left open
    store.close()


def test_reopening_continues_ids_and_window_numbers(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    row = cancer_data[0].to_numpy()[0]
    for _ in range(2):
        with Runtime(cancer_bundle, db=tmp_path / "m.db", window_rows=10) as rt:
            last = [rt.predict(row).request_id for _ in range(15)][-1]
    assert last == 30
    store = MonitorStore(tmp_path / "m.db")
    assert [w["seq"] for w in store.windows()] == [0, 1, 2, 3]
    store.close()


def test_windows_and_flushes_by_time_with_a_fake_clock(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    clock = FakeClock()
    row = cancer_data[0].to_numpy()[0]
    config = _config(tmp_path, window_rows=10_000, window_seconds=60, flush_ms=1000)
    rt = Runtime(cancer_bundle, config=config, clock=clock)
    for _ in range(5):
        rt.predict(row)
    store = MonitorStore(tmp_path / "m.db")
    assert store.decision_count() == 0  # buffered
    clock.now += 1.5
    rt.predict(row)  # past flush_ms: this call flushes
    assert store.decision_count() == 6
    assert store.current_window()["rows"] == 6
    clock.now += 60
    rt.predict(row)
    assert [w["rows"] for w in store.windows()] == [7]  # closed by time
    rt.close()
    assert store.decision_count() == 7
    store.close()


def test_data_quality_counters(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    X = cancer_data[0]
    config = RuntimeConfig(monitoring=MonitoringConfig(db=tmp_path / "m.db"), inputs=InputPolicy(non_finite="allow"))
    with Runtime(cancer_bundle, config=config) as rt:
        good = X.iloc[0].to_dict()
        rt.predict(good)
        rt.predict(dict(good, **{"mean radius": float("nan")}))
        rt.predict(dict(good, **{"mean radius": 1000.0}))
        rt.predict(dict(good, **{"mean radius": -5.0}))
    with Runtime(cancer_bundle, db=tmp_path / "m.db") as rt:
        with pytest.raises(NonFiniteValueError):
            rt.predict(dict(good, **{"mean area": float("inf")}))
        result = rt.predict_batch([good, dict(good, **{"mean area": "x"})], on_error="skip")
        assert len(result) == 1 and result.request_ids.tolist() == [5]
    store = MonitorStore(tmp_path / "m.db")
    first, second = store.windows()
    radius = first["quality"]["features"]["mean radius"]
    assert (radius["missing"], radius["out_of_range"]) == (1, 2)
    assert second["rejected"] == 2
    assert second["quality"]["rejected"] == {"NonFiniteValueError": 1, "InvalidValueError": 1}
    assert second["quality"]["features"]["mean area"]["rejected"] == 2
    store.close()


def test_unseen_categories_are_counted(tmp_path: Path, mixed_bundle: Path, mixed_data: Any) -> None:
    config = RuntimeConfig(monitoring=MonitoringConfig(db=tmp_path / "m.db"),
                           inputs=InputPolicy(unseen_category="allow"))
    rows = mixed_data[0].iloc[:10].to_dict(orient="records")
    rows[3]["city"] = "rome"
    with Runtime(mixed_bundle, config=config) as rt:
        for row in rows:
            rt.predict(row)
    store = MonitorStore(tmp_path / "m.db")
    assert store.windows()[0]["quality"]["features"]["city"]["unseen"] == 1
    store.close()


def test_decision_log_contents_sampling_and_privacy(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    with Runtime(cancer_bundle, config=_config(tmp_path, log_sample_rate=0.25)) as rt:
        predictions = [rt.predict(rows[i]) for i in range(400)]
    store = MonitorStore(tmp_path / "m.db")
    logged = store.tail(1000)
    assert len(logged) == 100
    entry = logged[0]
    source = predictions[entry["request_id"] - 1]
    assert entry["prediction"] == str(source.label)
    assert entry["score"] == pytest.approx(max(source.probabilities.values()), abs=1e-6)
    assert entry["model"] == "cancer" and entry["version"] == "1.0" and len(entry["input_hash"]) == 16
    assert entry["features"] is None  # raw values only when enabled
    assert store.windows()[0]["rows"] == 400  # sampling thins the log, not the monitoring
    store.close()

    with Runtime(cancer_bundle, config=_config(tmp_path / "b", log_features=True)) as rt:
        rt.predict(rows[7])
    store = MonitorStore(tmp_path / "b" / "m.db")
    features = json.loads(store.tail(1)[0]["features"])
    assert features["mean radius"] == pytest.approx(rows[7][0], rel=1e-6)
    store.close()


def test_identical_rows_share_an_input_hash(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    with Runtime(cancer_bundle, db=tmp_path / "m.db") as rt:
        for row in (rows[0], rows[1], rows[0]):
            rt.predict(row)
    store = MonitorStore(tmp_path / "m.db")
    hashes = [r["input_hash"] for r in store.tail(3)]
    assert hashes[0] == hashes[2] != hashes[1]
    store.close()


def test_monitoring_memory_per_numeric_feature() -> None:
    rng = np.random.default_rng(0)
    sketch = NumericSketch(200)
    for _ in range(100):
        sketch.update(rng.normal(size=10_000))
    assert sketch.count == 1_000_000
    assert len(sketch.to_bytes()) <= 8 * 1024


def test_stationary_stream_through_the_runtime_raises_no_alarm_and_a_shift_does(tmp_path: Path) -> None:
    X, y = mixed_frame(n=24_000, seed=5)
    model = mixed_pipeline(LogisticRegression(max_iter=1000)).fit(X[:8000], y[:8000])
    bundle = export(model, X[:8000], y[:8000], name="churn", version="1", out_dir=tmp_path / "bundle",
                    X_val=X[8000:12000]).path
    stream = X[12000:].copy()
    stream.iloc[8000:, stream.columns.get_loc("income")] *= 1.3
    stream.iloc[8000:, stream.columns.get_loc("plan")] = np.where(
        np.arange(4000) % 3 == 0, "basic", "pro")
    with Runtime(bundle, db=tmp_path / "m.db", window_rows=2000) as rt:
        result = rt.predict_batch(stream)
        assert len(result) == 12_000 and result.request_ids[-1] == 12_000
    with MonitoringDatabase(tmp_path / "m.db") as db:
        windows = db.drift().windows
    assert [w.rows for w in windows] == [2000] * 6
    for w in windows[:4]:  # stationary: held-out rows from the training distribution
        assert [n for n, f in w.features.items() if f.status.value != "ok"] == [], w.features
        assert w.prediction is not None and w.prediction.status.value == "ok"
    for w in windows[4:]:  # shifted: income scaled, plan rebalanced
        assert sorted(n for n, f in w.features.items() if f.drift) == ["income", "plan"]
        income = w.features["income"]
        assert income.metric in ("ks", "psi") and income.value > income.threshold
        assert "ks" in income.metrics and w.features["plan"].metric == "js"


def test_bundle_without_reference_keeps_windows_unassessed(tmp_path: Path, cancer_bundle: Path,
                                                           copy_bundle, cancer_data: Any) -> None:
    path = copy_bundle(cancer_bundle)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["reference"].pop("sketches")
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / DIGEST_FILE).write_text(manifest_digest(manifest) + "\n")  # re-sealed, as an exporter would
    with Runtime(path, db=tmp_path / "m.db", window_rows=5) as rt:
        for row in cancer_data[0].to_numpy()[:5]:
            rt.predict(row)
    store = MonitorStore(tmp_path / "m.db")
    assert store.windows()[0]["summary"] == {"reference": False}
    assert store.drift_results() == []
    store.close()


def test_regression_and_dataframe_batches(tmp_path: Path, regression_bundle: Path) -> None:
    from sklearn.datasets import load_diabetes

    X, _ = load_diabetes(return_X_y=True)
    with Runtime(regression_bundle, db=tmp_path / "m.db", window_rows=200) as rt:
        rt.predict_batch(pd.DataFrame(X, columns=[f"x{i}" for i in range(10)]))
        single = rt.predict(X[0])
    assert single.request_id == len(X) + 1
    with MonitoringDatabase(tmp_path / "m.db") as db:
        first = db.drift().windows[0]
    assert first.prediction is not None and first.prediction.metric in ("ks", "psi")
    assert all(f.status.value == "ok" for f in first.features.values())


def test_sampled_rows_keep_their_own_request_ids(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    with Runtime(cancer_bundle, db=tmp_path / "m.db") as rt:
        assert rt.monitor is not None
        rt.monitor.set_sampling(0.25)  # what shedding optional work does
        predictions = [rt.predict(rows[i]) for i in range(40)]
    store = MonitorStore(tmp_path / "m.db")
    logged = store.tail(100)
    assert [r["request_id"] for r in logged] == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    for entry in logged:
        assert entry["prediction"] == str(predictions[entry["request_id"] - 1].label)
    store.close()


def test_big_batches_are_logged_whole_and_hash_like_single_rows(tmp_path: Path, cancer_bundle: Path,
                                                                 cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    batch = np.concatenate([rows, rows, rows])[:1500]  # larger than the 1,024-row buffer: one block of its own
    with Runtime(cancer_bundle, db=tmp_path / "m.db", window_rows=20_000) as rt:
        result = rt.predict_batch(batch)
        single = rt.predict(rows[5])
    store = MonitorStore(tmp_path / "m.db")
    logged = store.tail(2000)
    assert [r["request_id"] for r in logged] == list(range(1, 1502))
    assert [r["prediction"] for r in logged[:1500]] == [str(label) for label in result.labels]
    top = result.scores.max(axis=1)
    assert [r["score"] for r in logged[:1500]] == pytest.approx(top.tolist(), abs=1e-6)
    assert logged[-1]["prediction"] == str(single.label)
    # The same row hashes the same in a batch (row 5, and row 5 + 569) and alone.
    assert logged[5]["input_hash"] == logged[5 + len(rows)]["input_hash"] == logged[-1]["input_hash"]
    assert len({r["input_hash"] for r in logged}) == len(rows)
    assert logged[0]["latency_us"] == pytest.approx(result.latency_us / 1500, rel=1e-3)
    store.close()


def test_thinned_windows_keep_exact_counts_and_catch_a_shift(tmp_path: Path, cancer_bundle: Path,
                                                             cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    stream = rows[np.random.default_rng(3).integers(0, len(rows), 40_000)].copy()
    stream[20_000:, 0] *= 1.5  # "mean radius" shifts in the second window
    stream[7, 1] = 1e6  # one value far outside the training range
    with Runtime(cancer_bundle, db=tmp_path / "m.db", window_rows=20_000) as rt:
        assert rt.monitor is not None
        for start in range(0, len(stream), 512):
            rt.predict_batch(stream[start:start + 512])
    store = MonitorStore(tmp_path / "m.db")
    first, second = store.windows(with_profile=True)
    profile = Profile.from_bytes(first["profile"])
    radius = profile.features["mean radius"]
    assert radius.stride == window_stride(MonitoringConfig(window_rows=20_000)) == 8
    assert radius.count == 20_000 and radius.kll.n < 20_000 / 8 + 40
    assert radius.mean == pytest.approx(float(stream[:20_000, 0].mean()), rel=1e-6)
    out_of_range = {n: q["out_of_range"] for n, q in first["quality"]["features"].items() if q["out_of_range"]}
    assert out_of_range == {"mean texture": 1}  # training rows at the training extremes are in range
    store.close()
    with MonitoringDatabase(tmp_path / "m.db") as db:
        report = db.drift().windows
    assert [n for n, f in report[0].features.items() if f.status.value != "ok"] == []
    assert "mean radius" in [n for n, f in report[1].features.items() if f.drift]
    # the thinned window's error enters its threshold: more than the grid's, less than the 99% worst case
    assert 0.001 < report[0].features["mean radius"].metrics["ks"]["sketch_error"] < radius.rank_error


def test_timed_flushes_log_but_sketch_whole_buffers(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    """Slow traffic: each timed flush writes the log; the sketches wait for a full buffer."""
    from edge_runtime.monitoring.monitor import SKETCH_ROWS

    clock = FakeClock()
    rows = cancer_data[0].to_numpy()
    rt = Runtime(cancer_bundle, config=_config(tmp_path, window_rows=10_000, flush_rows=64, flush_ms=1000),
                 clock=clock)
    assert rt.monitor is not None
    for i in range(SKETCH_ROWS + 36):
        clock.now += 1.5  # every call is past the flush deadline
        rt.predict(rows[i % len(rows)])
        if i < 100:
            assert rt.monitor.store.decision_count() == i + 1  # logged at once
    # One full buffer (SKETCH_ROWS rows, the log's flush_rows notwithstanding) sketched.
    assert rt.monitor.sketched_rows == SKETCH_ROWS and rt.monitor.buffered_rows == 36
    assert rt.monitor.store.decision_count() == SKETCH_ROWS + 36
    assert rt.monitor.store.current_window()["rows"] == SKETCH_ROWS + 36
    rt.close()
    store = MonitorStore(tmp_path / "m.db")
    assert [(w["rows"], w["partial"]) for w in store.windows()] == [(SKETCH_ROWS + 36, 1)]
    store.close()


def test_every_flush_rows_rows_are_logged_before_the_sketch_buffer_fills(tmp_path: Path, cancer_bundle: Path,
                                                                         cancer_data: Any) -> None:
    """A crash loses at most flush_rows decisions, though the sketches take SKETCH_ROWS rows at a time."""
    clock = FakeClock()  # never moves: no timed flush
    rows = cancer_data[0].to_numpy()
    rt = Runtime(cancer_bundle, config=_config(tmp_path, window_rows=10_000, flush_rows=64, flush_ms=1000),
                 clock=clock)
    assert rt.monitor is not None
    for i in range(100):
        rt.predict(rows[i])
    assert rt.monitor.store.decision_count() == 64 and rt.monitor.sketched_rows == 0
    rt.predict_batch(rows[100:160])
    assert rt.monitor.store.decision_count() == 160 and rt.monitor.sketched_rows == 0
    rt.close()


def _cancer_monitor(tmp_path: Path, cancer_bundle: Path, **config: Any) -> Any:
    from edge_runtime.config import DriftPolicy
    from edge_runtime.monitoring.data_profile import load_reference
    from edge_runtime.monitoring.monitor import Monitor
    from edge_runtime.serving.bundle import load_bundle
    from edge_runtime.serving.results import ModelInfo

    bundle = load_bundle(cancer_bundle)
    manifest = bundle.manifest
    return Monitor(MonitorStore(tmp_path / "m.db"), reference=load_reference(bundle),
                   inputs=manifest.input_schema, outputs=manifest.output_schema,
                   info=ModelInfo(name="cancer", version="1.0"), model_sha256="00",
                   config=MonitoringConfig(db=tmp_path / "m.db", **config), drift=DriftPolicy())


def test_background_batches_match_inline_ones(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    stream = rows[np.random.default_rng(4).integers(0, len(rows), 6000)]
    summaries = []
    for background in (True, False):
        path = tmp_path / str(background)
        with Runtime(cancer_bundle, config=_config(path, window_rows=2000, background=background)) as rt:
            labels = [rt.predict_batch(stream[s:s + 600]).labels for s in range(0, len(stream), 600)]
        store = MonitorStore(path / "m.db")
        summaries.append(([(w["rows"], w["quality"]) for w in store.windows()],
                          [(r["request_id"], r["prediction"], r["input_hash"]) for r in store.tail(10_000)]))
        assert [r["prediction"] for r in store.tail(10_000)] == [str(v) for v in np.concatenate(labels)]
        store.close()
    assert summaries[0] == summaries[1]


def _served_batch(monitor: Any, cancer_data: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """300 served rows as the runtime hands them to the monitor: feeds, scores, labels."""
    rows = cancer_data[0].to_numpy().astype(np.float32)[:300]
    return {monitor.inputs.tensor_name: rows}, np.tile(np.array([[0.2, 0.8]], dtype=np.float32), (300, 1)), np.ones(300, dtype=np.int64)


def _break_store(monitor: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise StoreError("disk full (simulated)")

    monitor.store.append_decisions = broken


def test_a_failed_background_batch_surfaces_on_the_next_call(tmp_path: Path, cancer_bundle: Path,
                                                             cancer_data: Any) -> None:
    monitor = _cancer_monitor(tmp_path, cancer_bundle, on_error="raise")
    _break_store(monitor)
    monitor.observe_batch(*_served_batch(monitor, cancer_data), latency_us=1e9)
    assert monitor.pending_batches == 1  # on the worker: this call returned at once
    with pytest.raises(StoreError, match="disk full"):
        monitor.flush()  # or any later call that waits for the worker
    del monitor.store.append_decisions
    monitor.flush()  # raised once
    monitor.close()


def test_close_releases_the_worker_and_database_even_when_writing_fails(tmp_path: Path, cancer_bundle: Path,
                                                                         cancer_data: Any) -> None:
    monitor = _cancer_monitor(tmp_path, cancer_bundle, on_error="raise")
    _break_store(monitor)
    monitor.observe_batch(*_served_batch(monitor, cancer_data), latency_us=1e9)
    with pytest.raises(StoreError, match="disk full"):
        monitor.close()
    assert monitor.store.closed
    assert not [t for t in threading.enumerate() if t.name == "edge-runtime-monitor"]


def test_cheap_models_keep_their_batches_inline(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    """The worker only pays when its block takes less time than the model call it overlaps."""
    monitor = _cancer_monitor(tmp_path, cancer_bundle, window_rows=100_000)
    rows, scores, labels = _served_batch(monitor, cancer_data)
    for _ in range(3):  # slow model calls: on the worker, which times its blocks
        monitor.observe_batch(rows, scores, labels, latency_us=1e9)
        assert monitor.pending_batches >= 1  # queued: nothing kicks the worker here
    monitor.flush()
    monitor.observe_batch(rows, scores, labels, latency_us=1.0)  # a model call shorter than any block
    assert monitor.pending_batches == 0 and monitor.buffered_rows == 300  # inline, buffered
    monitor.close()
    store = MonitorStore(tmp_path / "m.db")
    assert store.decision_count() == 1200 and store.windows()[0]["rows"] == 1200
    store.close()


def test_a_run_of_only_bad_rows_still_counts_them(tmp_path: Path, cancer_bundle: Path) -> None:
    with Runtime(cancer_bundle, db=tmp_path / "m.db") as rt:
        result = rt.predict_batch([["x"] * 30] * 50, on_error="skip")
        assert len(result.errors) == 50
    with MonitoringDatabase(tmp_path / "m.db") as db:
        assert db.status().quality["rejected"] == 50
