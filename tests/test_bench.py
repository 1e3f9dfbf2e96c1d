"""The bench command on a tiny bundle with short durations: the shape of the output, not timings."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.bench import (
    BenchReport,
    BenchSettings,
    ColdStartResult,
    LayerTiming,
    Machine,
    ModelIdentity,
    OfflineEntry,
    OfflineResult,
    Percentiles,
    ResourceUsage,
    ServerProbe,
    ServerRun,
    ServerSearch,
    SingleStreamResult,
    Versions,
    percentiles,
    reference_rows,
    run_benchmark,
)
from edge_runtime.budgets.policy import BudgetState, ServiceLevel
from edge_runtime.cli import main
from edge_runtime.cli.bench import _print_bench
from edge_runtime.errors import ConfigError
from edge_runtime.monitoring.data_profile import load_reference
from edge_runtime.serving.bundle import load_bundle
from tests.test_json_contract import key_paths

SHORT = {"duration_s": 0.2, "min_queries": 200, "warmup_s": 0.05}
BENCH = Path(__file__).parent.parent / "edge_runtime" / "bench"


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
    assert values.p99_us is not None and values.p99_9_us is None
    assert notes == ["p99.9 needs at least 10000 queries, 1000 ran"]
    assert values.to_dict()["p99.9_us"] is None and values.to_dict()["p99_us"] == values.p99_us


def test_single_stream_with_raw_comparison(cancer_bundle: Path) -> None:
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="single-stream", compare_raw=True, **SHORT))
    r = report.results
    assert isinstance(r, SingleStreamResult)
    assert r.queries >= 200 and r.latency.p50_us is not None and r.latency.p50_us > 0
    assert (r.latency.p99_us is None) == (r.queries < 1000)
    assert r.harness_overhead_us > 0 and 0 < r.usage.cpu_share and r.usage.peak_rss_mb > 0
    assert [layer.name for layer in r.layers] == ["raw onnxruntime InferenceSession.run",
                                                  "Runtime.predict (no monitoring)",
                                                  "Runtime.predict (monitoring + log)"]
    assert r.layers[0].p50_vs_raw == 1.0
    assert report.monitoring is True  # the compared runtime logs to a temporary database
    assert len(report.model.sha256) == 64 and report.machine.cores is not None and report.machine.cores >= 1
    assert {"edge_runtime", "onnxruntime", "numpy"} <= set(report.to_dict()["versions"])
    assert report.to_dict()["results"] == r.to_dict() and list(r.to_dict()["layers"]) == [l.name for l in r.layers]


def test_server_scenario_and_max_qps_search(cancer_bundle: Path) -> None:
    # A 1 s budget on a model that answers in well under a millisecond, at a quarter
    # of a core: only a stall of a whole second could miss it.
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="server", qps=4000, budget_ms=1000, duration_s=0.2,
                                                        min_queries=1000, warmup_s=0.05))
    r = report.results
    assert isinstance(r, ServerRun)
    assert r.target_qps == 4000 and r.queries >= 1000
    assert r.refused == 0 and r.answered == r.queries  # no budgets configured: nothing is shed
    t = r.latency
    assert t.p50_us is not None and t.p99_us is not None and t.max_us is not None
    assert r.budget_ms == 1000 and r.met_budget is True and 0 < t.p50_us <= t.p99_us <= t.max_us
    # Service time runs from issue, latency from the (earlier) scheduled arrival.
    assert r.service_p99_us is not None and 0 < r.service_p99_us <= t.p99_us + 1e-6
    # Lateness is measured inside the run, so it is bounded by the run's length.
    elapsed_us = r.answered / r.achieved_qps * 1e6
    assert 0 <= r.harness_late_p99_us <= elapsed_us
    too_few = run_benchmark(cancer_bundle, BenchSettings(scenario="server", qps=2000, budget_ms=50, **SHORT))
    assert isinstance(too_few.results, ServerRun)
    assert too_few.results.met_budget is None  # p99 of 400 queries is not reported, so not judged
    assert "p99 needs at least 1000 queries, 400 ran" in too_few.results.notes
    # 100 queries a probe give no p99, so no probe can hold the budget: the search misses
    # at the starting rate, then bisects down towards zero (high rates keep the probes short).
    search = run_benchmark(cancer_bundle, BenchSettings(scenario="server", qps=200_000, budget_ms=0.5,
                                                        find_max_qps=True, duration_s=0.0005, min_queries=100,
                                                        warmup_s=0))
    s = search.results
    assert isinstance(s, ServerSearch)
    assert s.max_qps is None and s.at_max_qps is None and s.budget_ms == 0.5
    assert [p.target_qps for p in s.probes] == [200_000, 100_000, 50_000, 25_000, 12_500, 6_250, 3_125]
    assert all(p.p99_us is None and p.met_budget is None and p.refused == 0 for p in s.probes)
    with pytest.raises(ConfigError, match="needs a latency budget"):
        run_benchmark(cancer_bundle, BenchSettings(scenario="server", find_max_qps=True, **SHORT))


def test_offline_sweep(cancer_bundle: Path) -> None:
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="offline", batch_sizes=(1, 64), compare_raw=True,
                                                        **SHORT))
    r = report.results
    assert isinstance(r, OfflineResult)
    assert [e.batch for e in r.sweep] == [1, 64]
    assert all(e.runtime_rows_per_s > 0 and e.raw_rows_per_s and e.runtime_vs_raw for e in r.sweep)
    assert r.best_rows_per_s == max(e.runtime_rows_per_s for e in r.sweep) and r.best_batch in (1, 64)


def test_cold_start_in_a_fresh_process(cancer_bundle: Path) -> None:
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="cold-start", **SHORT))
    r = report.results
    assert isinstance(r, ColdStartResult)
    assert r.runs == 5 and r.first_answer_ms > r.import_ms > 0 and r.rss_mb > 0
    assert r.max_first_answer_ms >= r.first_answer_ms


# ------------------------------------------------------------------ the --json contract
# What ``edge-runtime bench --json`` printed before the report was typed, for every
# scenario. Other tools read it: every path must still be printed, with a value of one
# of the JSON types listed ("?" adds null). New keys may be added. ``[x]`` is a list of
# x; the key paths of list items are checked only where the list is not empty.
_PERCENTILES = {"p50_us": "number?", "p90_us": "number?", "p99_us": "number?", "p99.9_us": "number?",
                "max_us": "number?", "mean_us": "number?"}
_USAGE = {"cpu_share": "number", "peak_rss_mb": "number", "rss_mb": "number"}
_SERVER_RUN = {"target_qps": "number", "achieved_qps": "number", "queries": "number", "answered": "number",
               "refused": "number", **_PERCENTILES, "harness_late_p99_us": "number", "service_p99_us": "number?",
               **_USAGE, "notes": ["string"], "budget_ms": "number?", "met_budget": "bool?"}
_LAYER = {**_PERCENTILES, "queries": "number", "p50_vs_raw": "number?"}
_COMMON = {
    "scenario": "string",
    "settings": {"scenario": "string", "duration_s": "number", "min_queries": "number", "warmup_s": "number",
                 "qps": "number", "find_max_qps": "bool", "budget_ms": "number?", "compare_raw": "bool",
                 "batch_sizes": ["number"], "seed": "number"},
    "model": {"name": "string", "version": "string", "sha256": "string"},
    "machine": {"cpu": "string", "cores": "number", "logical_cores": "number", "arch": "string",
                "memory_bytes": "number", "python": "string"},
    "versions": {"edge_runtime": "string", "onnxruntime": "string", "numpy": "string"},
    "monitoring": "bool",
    "rows": "number",
    # Only with budgets configured; violation names are data, not keys.
    "budget": {"level": "string", "latency_ms": "number?", "cpu_share": "number?", "rss_mb": "number?",
               "admit_ratio": "number", "violations": "object", "checked_at": "number?"},
}
BENCH_JSON: dict[str, Any] = {
    "single-stream": {**_COMMON, "results": {
        "queries": "number", **_USAGE, **_PERCENTILES, "harness_overhead_us": "number", "notes": ["string"],
        "layers": {"raw onnxruntime InferenceSession.run": _LAYER, "Runtime.predict (no monitoring)": _LAYER,
                   "Runtime.predict (monitoring + log)": _LAYER}}},
    "server": {**_COMMON, "results": _SERVER_RUN},
    "server --find-max-qps": {**_COMMON, "results": {
        "max_qps": "number?", "at_max_qps": {**_SERVER_RUN},
        "probes": [{"target_qps": "number", "p99_us": "number?", "met_budget": "bool?", "refused": "number"}],
        "budget_ms": "number"}},
    "offline": {**_COMMON, "results": {
        "sweep": [{"batch": "number", "runtime_rows_per_s": "number", "raw_rows_per_s": "number",
                   "runtime_vs_raw": "number"}],
        "best_batch": "number", "best_rows_per_s": "number", **_USAGE}},
    "cold-start": {**_COMMON, "results": {
        "runs": "number", "first_answer_ms": "number", "import_ms": "number", "load_and_answer_ms": "number",
        "rss_mb": "number", "max_first_answer_ms": "number"}},
}


def _pinned(shape: Any, path: str = "") -> dict[str, set[str]]:
    """The key paths of a shape above, each with the JSON types allowed there."""
    if isinstance(shape, str):
        kind = shape.rstrip("?")
        return {path: {kind, "null"} if shape.endswith("?") else {kind}}
    if isinstance(shape, list):
        return {path: {"list"}, **_pinned(shape[0], f"{path}[]")}
    out: dict[str, set[str]] = {path: {"object"}}
    for key, child in shape.items():
        out.update(_pinned(child, f"{path}.{key}"))
    return out


def _bench_cli_args(budget_config: Path) -> dict[str, list[str]]:
    config = ["--config", str(budget_config)]
    return {
        "single-stream": ["--duration", "0.2", "--min-queries", "100", "--compare", "raw", *config],
        "server": ["--scenario", "server", "--qps", "4000", "--budget-ms", "50", "--duration", "0.2",
                   "--min-queries", "1000", *config],
        # The first probe (1,000 queries at 5,000 qps against a 100 ms budget) holds, so
        # at_max_qps is printed; the search ends within about a second.
        "server --find-max-qps": ["--scenario", "server", "--find-max-qps", "--qps", "5000", "--budget-ms", "100",
                                  "--duration", "0.01", "--min-queries", "1000", *config],
        "offline": ["--scenario", "offline", "--batch-sizes", "1,64", "--duration", "0.2", "--compare", "raw",
                    *config],
        "cold-start": ["--scenario", "cold-start", *config],
    }


@pytest.fixture(scope="module")
def bench_json(cancer_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``edge-runtime bench --json`` of every scenario, with budgets configured so ``budget`` is printed."""
    config = tmp_path_factory.mktemp("bench") / "device.toml"
    config.write_text("[budgets]\nlatency_ms = 1000.0\n")
    runner = CliRunner()
    outputs = {}
    for name, args in _bench_cli_args(config).items():
        result = runner.invoke(main, ["bench", str(cancer_bundle), *args, "--json"])
        assert result.exit_code == 0, result.output
        outputs[name] = json.loads(result.stdout)
    return outputs


def test_bench_json_keeps_every_key(bench_json: dict[str, Any]) -> None:
    pinned = {path: kinds for name, shape in BENCH_JSON.items() for path, kinds in _pinned(shape, f".{name}").items()}
    assert len(pinned) == 307
    actual: dict[str, set[str]] = {}
    for name, output in bench_json.items():
        for path, kinds in key_paths(output, f".{name}").items():
            actual.setdefault(path, set()).update(kinds)
    # A path inside a list is required only where some list there had an item.
    missing = sorted(p for p in set(pinned) - set(actual) if p.rsplit("[]", 1)[0] + "[]" in actual or "[]" not in p)
    assert not missing, f"keys no longer printed: {missing}"
    for path, allowed in pinned.items():
        if path in actual:
            assert actual[path] <= allowed, f"{path}: allowed {sorted(allowed)}, printed {sorted(actual[path])}"


def test_bench_json_is_the_typed_report(cancer_bundle: Path) -> None:
    report = run_benchmark(cancer_bundle, BenchSettings(scenario="offline", batch_sizes=(1, 8), **SHORT))
    doc = report.to_dict()
    assert json.loads(json.dumps(doc)) == doc  # JSON-ready: no tuples, numpy scalars or paths left
    assert doc["settings"]["batch_sizes"] == [1, 8] and "budget" not in doc
    assert report.monitoring is False and doc["monitoring"] is False  # no database configured, none compared
    assert all(set(entry) == {"batch", "runtime_rows_per_s"} for entry in doc["results"]["sweep"])  # not compared
    assert list(doc) == ["scenario", "settings", "model", "machine", "versions", "monitoring", "rows", "results"]


# ------------------------------------------------------------------ text output
_STATS = Percentiles(p50_us=16.5, p90_us=24.75, p99_us=272.0, p99_9_us=None, max_us=660.0, mean_us=19.8)
_USAGE_VALUES = ResourceUsage(cpu_share=0.5, peak_rss_mb=250.25, rss_mb=240.0)
_RUN = ServerRun(target_qps=4000.0, achieved_qps=3912.0, queries=1000, answered=990, refused=10, latency=_STATS,
                 harness_late_p99_us=69.4, service_p99_us=49.0, usage=_USAGE_VALUES,
                 notes=("p99.9 needs at least 10000 queries, 1000 ran",), budget_ms=50.0, met_budget=True)
_HEADER = ["edge-runtime bench: {scenario} on cancer 1.0 (model sha256 a8470368b77b, monitoring {monitoring})",
           "machine: AMD EPYC, 2 cores, x86_64; python 3.11.7, onnxruntime 1.32.0, numpy 2.4.6, edge-runtime 0.1.0"]
TEXT_CASES: dict[str, tuple[Any, list[str]]] = {
    "single-stream": (
        SingleStreamResult(queries=4217, usage=_USAGE_VALUES, latency=_STATS, harness_overhead_us=0.13,
                           notes=("p99.9 needs at least 10000 queries, 4217 ran",),
                           layers=(LayerTiming(name="raw onnxruntime InferenceSession.run", latency=_STATS,
                                               queries=4000, p50_vs_raw=1.0),)),
        ["queries 4,217: p50 16.5 us, p90 24.8 us, p99 272.0 us, p99.9 - us, max 660.0 us",
         "harness overhead 0.13 us/query; cpu share 0.50, peak rss 250.2 MB",
         "  raw onnxruntime InferenceSession.run     p50 16.5 us  p99 272.0 us  1.00x raw",
         "note: p99.9 needs at least 10000 queries, 4217 ran"]),
    "server": (
        _RUN,
        ["target 4,000.0 qps, achieved 3,912.0; answered 990, refused 10",
         "latency from scheduled arrival: p50 16.5 us, p99 272.0 us, max 660.0 us; budget 50.0 ms: met",
         "service time p99 49.0 us; harness wake-up delay p99 69.4 us",
         "cpu share 0.50, peak rss 250.2 MB",
         "note: p99.9 needs at least 10000 queries, 1000 ran"]),
    "server --find-max-qps": (
        ServerSearch(max_qps=4000.0, at_max_qps=_RUN, budget_ms=50.0,
                     probes=(_RUN.probe(), ServerProbe(target_qps=8000.0, p99_us=None, met_budget=None, refused=0))),
        ["max qps holding p99 <= 50.0 ms: 4,000.0 (p99 there 272.0 us, refused 10)",
         "  probe 4,000 qps: p99 272.0 us, met",
         "  probe 8,000 qps: p99 - us, missed"]),
    "server --find-max-qps, nothing held": (
        ServerSearch(max_qps=None, at_max_qps=None, budget_ms=0.5,
                     probes=(ServerProbe(target_qps=2000.0, p99_us=None, met_budget=None, refused=0),)),
        ["max qps holding p99 <= 0.5 ms: - (p99 there - us, refused -)",
         "  probe 2,000 qps: p99 - us, missed"]),
    "offline": (
        OfflineResult(usage=_USAGE_VALUES, sweep=(OfflineEntry(batch=1, runtime_rows_per_s=15350.0,
                                                               raw_rows_per_s=64885.0),
                                                  OfflineEntry(batch=64, runtime_rows_per_s=167906.0))),
        ["  batch     1: 15,350 rows/s, raw 64,885 rows/s (24%)",
         "  batch    64: 167,906 rows/s",
         "best: batch 64 at 167,906 rows/s; cpu share 0.50, peak rss 250.2 MB"]),
    "cold-start": (
        ColdStartResult(runs=5, first_answer_ms=280.2, import_ms=227.7, load_and_answer_ms=6.4, rss_mb=66.9,
                        max_first_answer_ms=300.0),
        [("first answer 280.2 ms after process launch (median of 5; import 227.7 ms, load and answer 6.4 ms); "
          "rss 66.9 MB")]),
}


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_text_lines_of_every_scenario(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The same lines the dict-based printer wrote, from the typed report (values made up, exact output)."""
    results, lines = TEXT_CASES[case]
    scenario = case.split(" ")[0]
    budget = BudgetState(level=ServiceLevel.SHED_OPTIONAL, latency_ms=0.3, cpu_share=None, rss_mb=None,
                         admit_ratio=1.0, violations={"latency": 2})
    report = BenchReport(settings=BenchSettings(scenario=scenario), results=results, rows=4096, monitoring=False,
                         model=ModelIdentity(name="cancer", version="1.0", sha256="a8470368b77b" + "0" * 52),
                         machine=Machine(cpu="AMD EPYC", cores=2, logical_cores=2, arch="x86_64",
                                         memory_bytes=8_000_000_000, python="3.11.7"),
                         versions=Versions(edge_runtime="0.1.0", onnxruntime="1.32.0", numpy="2.4.6"),
                         budget=budget if scenario == "cold-start" else None)
    _print_bench(report)
    header = [line.format(scenario=scenario, monitoring="off") for line in _HEADER]
    footer = ["budget state: level shed_optional, violations {'latency': 2}"] if scenario == "cold-start" else []
    assert capsys.readouterr().out.splitlines() == header + lines + footer


# ------------------------------------------------------------------ the command
def test_cli_bench_json_and_table(cancer_bundle: Path, tmp_path: Path, cancer_data: Any,
                                  bench_json: dict[str, Any]) -> None:
    assert {"p50_us", "p90_us", "p99_us", "p99.9_us", "max_us"} <= set(bench_json["single-stream"]["results"])
    assert bench_json["cold-start"]["results"]["first_answer_ms"] > 0
    source = tmp_path / "rows.csv"
    cancer_data[0].iloc[:50].to_csv(source, index=False)
    table = CliRunner().invoke(main, ["bench", str(cancer_bundle), "--duration", "0.2", "--min-queries", "100",
                                      "--input", str(source)])
    assert table.exit_code == 0
    assert table.stdout.startswith("edge-runtime bench: single-stream on cancer 1.0")
    assert "queries" in table.stdout and "harness overhead" in table.stdout


def test_cli_bench_errors(cancer_bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["bench", str(cancer_bundle), "--scenario", "server", "--find-max-qps",
                                  "--duration", "0.1"])
    assert result.exit_code == 1
    assert result.stderr == "Error: --find-max-qps needs a latency budget: --budget-ms or [budgets] latency_ms\n"
    bad = runner.invoke(main, ["bench", str(cancer_bundle), "--scenario", "warp"])
    assert bad.exit_code == 2 and "Invalid value for '--scenario'" in bad.stderr
    missing = runner.invoke(main, ["bench", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert missing.stderr == f"Error: bundle directory '{tmp_path / 'nope'}' does not exist\n"


# ------------------------------------------------------------------ layout
_BENCH_LAYERS = {"settings": 0, "rows": 0, "timing": 0,
                 "single_stream": 1, "server": 1, "offline": 1, "cold_start": 1,
                 "report": 2, "run": 3, "__init__": 4}


@pytest.mark.parametrize("module", sorted(_BENCH_LAYERS))
def test_bench_modules_import_one_way(module: str) -> None:
    tree = ast.parse((BENCH / f"{module}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    for name in imported:
        assert not name.startswith(("click", "edge_runtime.cli")), f"bench.{module} imports {name}"
        if name.startswith("edge_runtime.bench."):
            target = name.split(".")[2]
            assert _BENCH_LAYERS[target] < _BENCH_LAYERS[module], f"bench.{module} imports bench.{target}"
    assert sorted(p.stem for p in BENCH.glob("*.py")) == sorted(_BENCH_LAYERS)
