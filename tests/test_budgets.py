"""Budgets: the ordered degradation policy, driven by a fake clock and a fake CPU meter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sklearn.ensemble import RandomForestClassifier

from converters import export
from edge_runtime import Runtime, RuntimeConfig
from edge_runtime.budgets.policy import BudgetGovernor, ServiceLevel
from edge_runtime.config import BudgetConfig, MonitoringConfig
from edge_runtime.errors import ConfigError, OverloadError
from edge_runtime.monitoring.store import MonitorStore
from edge_runtime.testing import FakeClock, FakeMeter


def _governor(has_fallback: bool = False, **budget: Any) -> tuple[BudgetGovernor, FakeClock, FakeMeter, list]:
    clock, meter, changes = FakeClock(), FakeMeter(), []
    config = BudgetConfig(**{"check_every": 10, "check_interval_ms": 60_000, "recover_checks": 2, **budget})
    governor = BudgetGovernor(config, meter, clock, has_fallback=has_fallback,
                              on_change=lambda old, new, cause: changes.append((old, new, cause)))
    return governor, clock, meter, changes


def _run(governor: BudgetGovernor, clock: FakeClock, meter: FakeMeter, calls: int, *, cpu_per_call: float,
         latency_us: float = 100.0) -> int:
    """Simulate calls 10 ms apart; return how many were admitted."""
    admitted = 0
    for _ in range(calls):
        clock.advance(0.01)
        if governor.level is ServiceLevel.SHED_LOAD and not governor.admit():
            meter.burn(cpu_per_call * 0.05)  # a refusal is cheap
            continue
        admitted += 1
        meter.burn(cpu_per_call)
        governor.record(latency_us)
    return admitted


def test_cpu_overload_degrades_in_order_then_recovers_with_hysteresis() -> None:
    governor, clock, meter, changes = _governor(has_fallback=True, cpu_share=0.5, window_s=1.0)
    _run(governor, clock, meter, 10, cpu_per_call=0.009)  # 90% of a core, in calls 10 ms apart
    assert governor.level is ServiceLevel.SHED_OPTIONAL
    _run(governor, clock, meter, 110, cpu_per_call=0.009)  # each step waits one 1 s measurement window
    assert governor.level is ServiceLevel.FALLBACK
    _run(governor, clock, meter, 110, cpu_per_call=0.009)
    assert governor.level is ServiceLevel.SHED_LOAD
    admitted = _run(governor, clock, meter, 1000, cpu_per_call=0.009)
    assert 400 < admitted < 600 and governor.state().admit_ratio == pytest.approx(0.5, abs=0.05)
    assert 0.4 < governor.state().cpu_share <= 0.5  # held at ~90% of the budget
    assert [c[1] for c in changes] == [ServiceLevel.SHED_OPTIONAL, ServiceLevel.FALLBACK, ServiceLevel.SHED_LOAD]
    assert "cpu share 0.90 > 0.5" in changes[0][2]
    # the load goes away: admission opens up first, then levels come back one at a time
    _run(governor, clock, meter, 1000, cpu_per_call=0.001)
    assert governor.level is ServiceLevel.NORMAL
    ups = [c[1] for c in changes[3:]]
    assert ups == [ServiceLevel.FALLBACK, ServiceLevel.SHED_OPTIONAL, ServiceLevel.NORMAL]
    assert all(c[2].startswith("recovered: cpu at") for c in changes[3:])


def test_no_flapping_inside_the_hysteresis_band() -> None:
    governor, clock, meter, changes = _governor(cpu_share=0.5, window_s=1.0)
    _run(governor, clock, meter, 10, cpu_per_call=0.009)
    assert governor.level is ServiceLevel.SHED_OPTIONAL
    _run(governor, clock, meter, 500, cpu_per_call=0.0045)  # 90% of the budget: under it, above 80%
    assert governor.level is ServiceLevel.SHED_OPTIONAL and len(changes) == 1


def test_without_fallback_the_fallback_level_is_skipped() -> None:
    governor, clock, meter, changes = _governor(latency_ms=1.0, window_s=0.1)
    _run(governor, clock, meter, 30, cpu_per_call=0.0, latency_us=3000.0)
    assert [c[1] for c in changes] == [ServiceLevel.SHED_OPTIONAL, ServiceLevel.SHED_LOAD]
    assert "latency p99 3.000 ms > 1.0 ms" in changes[0][2]
    assert governor.state().violations == {"latency": 3}


def test_memory_budget() -> None:
    governor, clock, meter, changes = _governor(rss_mb=30.0)
    meter.rss = 45_000_000
    _run(governor, clock, meter, 10, cpu_per_call=0.0)
    assert governor.level is ServiceLevel.SHED_OPTIONAL and "rss 45.0 MB > 30.0 MB" in changes[0][2]
    assert governor.state().rss_mb == pytest.approx(45.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"cpu_share": -1}, "'cpu_share' parameter of BudgetConfig must be a float in [0.0, 256.0]"),
    ({"shed_mode": "drop"}, "'shed_mode' parameter of BudgetConfig must be one of refuse, defer"),
    ({"latency_percentile": 100}, "'latency_percentile' parameter of BudgetConfig must be a float in [50.0, 99.99]"),
])
def test_budget_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BudgetConfig(**kwargs)
    assert message in str(info.value)
    assert not BudgetConfig().enabled


@pytest.fixture(scope="module")
def forest_bundle(tmp_path_factory: pytest.TempPathFactory, cancer_data: Any) -> Path:
    X, y = cancer_data
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    return export(model, X, y, name="forest", version="2", out_dir=tmp_path_factory.mktemp("b") / "forest").path


def test_runtime_degrades_in_the_documented_order_and_records_events(
        tmp_path: Path, forest_bundle: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    clock, meter = FakeClock(), FakeMeter()
    config = RuntimeConfig(
        monitoring=MonitoringConfig(db=tmp_path / "m.db", window_rows=100, flush_rows=16),
        budgets=BudgetConfig(cpu_share=0.5, window_s=1.0, check_every=10, check_interval_ms=60_000,
                             recover_checks=2, shed_log_rate=0.25, fallback_bundle=cancer_bundle))
    rows = cancer_data[0].to_numpy()
    seen: list[tuple[ServiceLevel, str]] = []
    refused = refused_later = 0
    with Runtime(forest_bundle, config=config, clock=clock, meter=meter) as rt:
        for i in range(600):  # overloaded: 90% of a core
            clock.advance(0.01)
            meter.burn(0.009)
            level = rt.service_level
            try:
                p = rt.predict(rows[i % len(rows)])
                seen.append((level, p.model_name))
            except OverloadError as exc:
                refused += 1
                assert "cpu share" in exc.cause
        assert rt.service_level is ServiceLevel.SHED_LOAD
        for i in range(1000):  # the load goes away
            clock.advance(0.01)
            meter.burn(0.001)
            try:
                rt.predict(rows[i % len(rows)])
            except OverloadError:
                refused_later += 1  # still shedding while admission opens up again
        assert rt.service_level is ServiceLevel.NORMAL
        assert rt.budget_state is not None and rt.budget_state.cpu_share == pytest.approx(0.1, abs=0.02)
    assert refused > 0
    models = {level: {m for lv, m in seen if lv is level} for level in ServiceLevel}
    assert models[ServiceLevel.NORMAL] == {"forest"} and models[ServiceLevel.FALLBACK] == {"cancer"}
    store = MonitorStore(tmp_path / "m.db")
    events = [(e["name"], e["message"]) for e in store.events(100) if e["kind"] == "budget"]
    assert [name for name, _ in events] == ["normal->shed_optional", "shed_optional->fallback",
                                           "fallback->shed_load", "shed_load->fallback",
                                           "fallback->shed_optional", "shed_optional->normal"]
    assert events[0][1].startswith("cpu share 0.90 > 0.5")
    assert sum(w["quality"]["rejected"].get("OverloadError", 0) for w in store.windows()) == refused + refused_later
    budgets = [w["budget"] for w in store.windows()]
    assert budgets[0]["level"] in ("shed_optional", "fallback", "shed_load") and budgets[0]["violations"]["cpu"] >= 1
    logged_models = {r["model"] for r in store.tail(5000)}
    assert logged_models == {"forest", "cancer"}  # decisions name the model that answered
    store.close()


def test_shed_optional_work_samples_the_log(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    clock, meter = FakeClock(), FakeMeter()
    config = RuntimeConfig(
        monitoring=MonitoringConfig(db=tmp_path / "m.db", window_rows=10_000),
        budgets=BudgetConfig(latency_ms=1e-6, check_every=10, check_interval_ms=60_000, shed_log_rate=0.1,
                             shed_mode="defer", window_s=0.1))
    row = cancer_data[0].to_numpy()[0]
    answers = []
    with Runtime(cancer_bundle, config=config, clock=clock, meter=meter) as rt:
        for _ in range(210):
            clock.advance(0.01)
            answers.append(rt.predict(row))
        assert rt.service_level is ServiceLevel.SHED_LOAD  # every latency is over a 1 ns budget
    deferred = [p for p in answers if p.deferred]
    assert deferred and all(p.label is None for p in deferred)
    store = MonitorStore(tmp_path / "m.db")
    assert store.decision_count() < 100  # sampled down after the first check
    store.close()


def test_fallback_must_fit(tmp_path: Path, cancer_bundle: Path, regression_bundle: Path) -> None:
    config = RuntimeConfig(budgets=BudgetConfig(cpu_share=0.5, fallback_bundle=regression_bundle))
    with pytest.raises(ConfigError, match="has other inputs than the main bundle"):
        Runtime(cancer_bundle, config=config)


def test_int8_variant_is_exported_checked_and_used_as_fallback(tmp_path: Path, cancer_data: Any) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = cancer_data
    mlp = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0))
    result = export(mlp.fit(X, y), X, y, name="mlp", version="1", out_dir=tmp_path / "mlp", quantize=True)
    variant = result.manifest.variants["int8"]
    assert variant["file"] == "model.int8.onnx" and "model.int8.onnx" in result.manifest.files
    assert variant["parity"]["passed"] and variant["parity"]["label_agreement"] >= 0.99
    assert variant["bytes"] < (result.path / "model.onnx").stat().st_size
    with Runtime(result.path, variant="int8") as rt:
        assert rt.info.version == "1+int8" and rt.predict(X.iloc[0].to_numpy()).label in (0, 1)
    clock, meter = FakeClock(), FakeMeter()
    config = RuntimeConfig(budgets=BudgetConfig(cpu_share=0.5, window_s=1.0, check_every=10))
    with Runtime(result.path, config=config, clock=clock, meter=meter) as rt:
        versions = set()
        for _ in range(300):
            clock.advance(0.01)
            meter.burn(0.009)
            try:
                versions.add(rt.predict(X.iloc[0].to_numpy()).model_version)
            except OverloadError:
                pass
        assert versions == {"1", "1+int8"}  # the bundle's own variant is the fallback
    linear = export(LogisticRegression(max_iter=2000).fit(X, y), X, y, name="lr", version="1",
                    out_dir=tmp_path / "lr", quantize=True)
    assert "int8" not in linear.manifest.variants and "nothing to quantize" in linear.manifest.variants["note"]
    assert not (linear.path / "model.int8.onnx").exists()


def test_refused_batches_count_their_rows(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    """status counts refused rows, as `edge-runtime predict` reports them, not refused calls."""
    clock, meter = FakeClock(), FakeMeter()
    config = RuntimeConfig(
        monitoring=MonitoringConfig(db=tmp_path / "m.db", window_rows=100_000, flush_rows=16),
        budgets=BudgetConfig(cpu_share=0.5, window_s=1.0, check_every=10, check_interval_ms=60_000))
    rows = cancer_data[0].to_numpy()
    refused_rows = 0
    with Runtime(cancer_bundle, config=config, clock=clock, meter=meter) as rt:
        for i in range(2000):
            clock.advance(0.01)
            meter.burn(0.009)
            try:
                rt.predict_batch(rows[:50])
            except OverloadError:
                refused_rows += 50
        assert rt.service_level is ServiceLevel.SHED_LOAD
    assert refused_rows > 0
    store = MonitorStore(tmp_path / "m.db")
    assert sum(w["quality"]["rejected"].get("OverloadError", 0) for w in store.windows()) == refused_rows
    store.close()
