"""The bench command on a tiny bundle with short durations: the shape of the output, not timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.bench import BenchSettings, percentiles, reference_rows, run_benchmark
from edge_runtime.serving.bundle import load_bundle
from edge_runtime.cli import main
from edge_runtime.errors import ConfigError
from edge_runtime.monitoring.data_profile import load_reference

SHORT = {"duration_s": 0.2, "min_queries": 200, "warmup_s": 0.05}


def test_reference_rows_are_varied_and_follow_the_profile(cancer_bundle: Path, mixed_bundle: Path) -> None:
    bundle = load_bundle(cancer_bundle)
    rows = reference_rows(bundle.manifest.input_schema, load_reference(bundle), 2000, seed=1)
    matrix = np.vstack(rows)
    assert matrix.shape == (2000, 30) and len({r.tobytes() for r in rows}) == 2000
    radius = matrix[:, 0]
    assert 6.9 <= radius.min() and radius.max() <= 28.2 and 13 < np.median(radius) < 14
    mixed = load_bundle(mixed_bundle)
    dict_rows = reference_rows(mixed.manifest.input_schema, load_reference(mixed), 300, seed=1)
    assert set(dict_rows[0]) == {"age", "income", "visits", "city", "plan"}
    assert {r["city"] for r in dict_rows} == {"lyon", "nice", "paris"}


def test_percentiles_refuse_to_guess() -> None:
    values, notes = percentiles(np.arange(1000.0))
    assert values["p99_us"] is not None and values["p99.9_us"] is None
    assert notes == ["p99.9 needs at least 10000 queries, 1000 ran"]


def test_single_stream_with_raw_comparison(cancer_bundle: Path) -> None:
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="single-stream", compare_raw=True, **SHORT))
    r = report["results"]
    assert r["queries"] >= 200 and r["p50_us"] > 0
    assert (r["p99_us"] is None) == (r["queries"] < 1000)
    assert r["harness_overhead_us"] > 0 and 0 < r["cpu_share"] and r["peak_rss_mb"] > 0
    assert list(r["layers"]) == ["raw onnxruntime InferenceSession.run", "Runtime.predict (no monitoring)",
                                 "Runtime.predict (monitoring + log)"]
    assert r["layers"]["raw onnxruntime InferenceSession.run"]["p50_vs_raw"] == 1.0
    assert report["monitoring"] is True  # the compared runtime logs to a temporary database
    assert len(report["model"]["sha256"]) == 64 and report["machine"]["cores"] >= 1
    assert {"edge_runtime", "onnxruntime", "numpy"} <= set(report["versions"])


def test_server_scenario_and_max_qps_search(cancer_bundle: Path) -> None:
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="server", qps=4000, budget_ms=50, duration_s=0.2,
                                                        min_queries=1000, warmup_s=0.05))
    r = report["results"]
    assert r["target_qps"] == 4000 and r["answered"] + r["refused"] == r["queries"] >= 1000
    assert r["met_budget"] in (True, False) and r["budget_ms"] == 50
    assert r["service_p99_us"] > 0 and r["harness_late_p99_us"] >= 0
    too_few = run_benchmark(cancer_bundle, BenchSettings(scenario="server", qps=2000, budget_ms=50, **SHORT))
    assert too_few["results"]["met_budget"] is None  # p99 of 400 queries is not reported, so not judged
    assert "p99 needs at least 1000 queries, 400 ran" in too_few["results"]["notes"]
    search = run_benchmark(cancer_bundle, BenchSettings(scenario="server", qps=2000, budget_ms=0.5,
                                                        find_max_qps=True, duration_s=0.05, min_queries=100,
                                                        warmup_s=0))
    s = search["results"]
    assert s["max_qps"] is None or s["max_qps"] >= 1000
    assert s["probes"] and all({"target_qps", "p99_us", "met_budget"} <= set(p) for p in s["probes"])
    with pytest.raises(ConfigError, match="needs a latency budget"):
        run_benchmark(cancer_bundle, BenchSettings(scenario="server", find_max_qps=True, **SHORT))


def test_offline_sweep(cancer_bundle: Path) -> None:
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="offline", batch_sizes=(1, 64), compare_raw=True,
                                                        **SHORT))
    sweep = report["results"]["sweep"]
    assert [e["batch"] for e in sweep] == [1, 64]
    assert all(e["runtime_rows_per_s"] > 0 and e["raw_rows_per_s"] > 0 and e["runtime_vs_raw"] > 0 for e in sweep)


def test_cold_start_in_a_fresh_process(cancer_bundle: Path) -> None:
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="cold-start", **SHORT))
    r = report["results"]
    assert r["runs"] == 5 and r["first_answer_ms"] > r["import_ms"] > 0 and r["rss_mb"] > 0


def test_cli_bench_json_and_table(cancer_bundle: Path, tmp_path: Path, cancer_data: Any) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["bench", str(cancer_bundle), "--duration", "0.2", "--min-queries", "100", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert {"p50_us", "p90_us", "p99_us", "p99.9_us", "max_us"} <= set(report["results"])
    source = tmp_path / "rows.csv"
    cancer_data[0].iloc[:50].to_csv(source, index=False)
    table = runner.invoke(main, ["bench", str(cancer_bundle), "--duration", "0.2", "--min-queries", "100",
                                 "--input", str(source)])
    assert table.exit_code == 0
    assert table.stdout.startswith("edge-runtime bench: single-stream on cancer 1.0")
    assert "queries" in table.stdout and "harness overhead" in table.stdout
    cold = json.loads(runner.invoke(main, ["bench", str(cancer_bundle), "--scenario", "cold-start", "--json"]).stdout)
    assert cold["results"]["first_answer_ms"] > 0


def test_cli_bench_errors(cancer_bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["bench", str(cancer_bundle), "--scenario", "server", "--find-max-qps",
                                  "--duration", "0.1"])
    assert result.exit_code == 1
    assert result.stderr == "Error: --find-max-qps needs a latency budget: --budget-ms or [budgets] latency_ms\n"
    bad = runner.invoke(main, ["bench", str(cancer_bundle), "--scenario", "warp"])
    assert bad.exit_code == 2 and "Invalid value for '--scenario'" in bad.stderr
    missing = runner.invoke(main, ["bench", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and missing.stderr == f"Error: bundle directory '{tmp_path / 'nope'}' does not exist\n"
