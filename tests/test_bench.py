"""The bench command on a tiny bundle with short durations: the shape of the output, not timings.

The max-QPS search, the verdicts of server runs, the progress fractions and the
offline sweep's time accounting are tested on made-up runs and clocks: their
decisions, never a measured time.
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
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
from edge_runtime.bench.cold_start import _launch, run_cold_start
from edge_runtime.bench.max_qps import search_max_qps
from edge_runtime.bench.offline import run_offline
from edge_runtime.bench.server import judged
from edge_runtime.bench.timing import ProgressTracker, stages, timed_loop
from edge_runtime.budgets.policy import BudgetState, ServiceLevel
from edge_runtime.cli import main
from edge_runtime.cli.bench import _print_bench
from edge_runtime.config import MonitoringConfig, RuntimeConfig
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
    assert r.budget_ms == 1000 and r.met_budget is True and r.why == () and 0 < t.p50_us <= t.p99_us <= t.max_us
    # Service time runs from issue, latency from the (earlier) scheduled arrival.
    assert r.service_p99_us is not None and 0 < r.service_p99_us <= t.p99_us + 1e-6
    # Lateness is measured inside the run, so it is bounded by the run's length.
    elapsed_us = r.answered / r.achieved_qps * 1e6
    assert 0 <= r.harness_late_p99_us <= elapsed_us
    assert r.offered_qps is not None and r.seconds > 0 and (r.cpu_wait_ms is None or r.cpu_wait_ms >= 0)
    too_few = run_benchmark(cancer_bundle, BenchSettings(scenario="server", qps=2000, budget_ms=50, **SHORT))
    assert isinstance(too_few.results, ServerRun)
    assert too_few.results.met_budget is None  # p99 of 400 queries is not reported, so not judged
    assert "p99 needs at least 1000 queries, 400 ran" in too_few.results.notes
    assert too_few.results.why == ("not judged: a p99 needs at least 1,000 answered queries, 400 were",)
    # --min-queries 100 is raised to the 1,000 a p99 needs, and said so; every miss says why.
    search = run_benchmark(cancer_bundle, BenchSettings(scenario="server", qps=4000, budget_ms=1000,
                                                        find_max_qps=True, duration_s=0.02, min_queries=100,
                                                        warmup_s=0, search_limit_s=30))
    s = search.results
    assert isinstance(s, ServerSearch) and s.budget_ms == 1000 and s.stopped
    assert s.notes == (("each probe runs at least 1,000 queries, the fewest a p99 is reported from "
                       "(--min-queries 100 raised)"),)
    assert s.probes[0].target_qps == 4000 and all(p.p99_us is not None for p in s.probes)
    assert all(bool(p.why) != bool(p.met_budget) for p in s.probes)
    assert s.max_qps is not None and s.at_max_qps is not None and s.at_max_qps.queries >= 1000
    assert s.at_max_qps.met_budget and s.at_max_qps.target_qps <= s.max_qps * (1 + 1e-9)
    assert sum(probed for _, _, probed in s.tally()) == len(s.probes)
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
        # at_max_qps is printed; probes of about 1,000 queries, the search within 10 s.
        "server --find-max-qps": ["--scenario", "server", "--find-max-qps", "--qps", "5000", "--budget-ms", "100",
                                  "--duration", "0.01", "--min-queries", "1000", "--search-limit", "10", *config],
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
    # Not compared: no raw keys.
    assert all(set(entry) == {"batch", "runtime_rows_per_s", "runtime_s"} for entry in doc["results"]["sweep"])
    assert list(doc) == ["scenario", "settings", "model", "machine", "versions", "monitoring", "rows", "results"]


# ------------------------------------------------------------------ text output
_STATS = Percentiles(p50_us=16.5, p90_us=24.75, p99_us=272.0, p99_9_us=None, max_us=660.0, mean_us=19.8)
_USAGE_VALUES = ResourceUsage(cpu_share=0.5, peak_rss_mb=250.25, rss_mb=240.0)
_FEW = Percentiles(p50_us=16.5, p90_us=24.75, p99_us=None, p99_9_us=None, max_us=660.0, mean_us=19.8)
_RUN = ServerRun(target_qps=4000.0, achieved_qps=3912.0, queries=1000, answered=1000, refused=0, latency=_STATS,
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
        ["target 4,000.0 qps, achieved 3,912.0; answered 1,000, refused 0",
         "latency from scheduled arrival: p50 16.5 us, p99 272.0 us, max 660.0 us; budget 50.0 ms: met",
         "service time p99 49.0 us; harness wake-up delay p99 69.4 us",
         "cpu share 0.50, peak rss 250.2 MB",
         "note: p99.9 needs at least 10000 queries, 1000 ran"]),
    "server, missed": (
        judged(ServerRun(target_qps=1000.0, offered_qps=1000.0, achieved_qps=990.0, queries=1024, answered=1024,
                         refused=0, latency=_STATS, harness_late_p99_us=69.4, service_p99_us=49.0,
                         usage=_USAGE_VALUES, seconds=1.03, cpu_wait_ms=41.0, budget_ms=0.1)),
        ["target 1,000.0 qps, achieved 990.0; answered 1,024, refused 0",
         ("latency from scheduled arrival: p50 16.5 us, p99 272.0 us, max 660.0 us; budget 0.1 ms: MISSED: "
         "p99 272 us over the budget 100 us; the process waited 41 ms for a CPU during the 1.0 s run "
         "(other processes were running)"),
         "service time p99 49.0 us; harness wake-up delay p99 69.4 us",
         "cpu share 0.50, peak rss 250.2 MB; waited 41.0 ms for a CPU"]),
    "server, too few queries": (
        judged(ServerRun(target_qps=1000.0, achieved_qps=990.0, queries=500, answered=500, refused=0,
                         latency=_FEW, harness_late_p99_us=69.4, service_p99_us=49.0, usage=_USAGE_VALUES,
                         seconds=0.5, budget_ms=1000.0)),
        ["target 1,000.0 qps, achieved 990.0; answered 500, refused 0",
         ("latency from scheduled arrival: p50 16.5 us, p99 - us, max 660.0 us; budget 1000.0 ms: "
         "not judged: a p99 needs at least 1,000 answered queries, 500 were"),
         "service time p99 49.0 us; harness wake-up delay p99 69.4 us",
         "cpu share 0.50, peak rss 250.2 MB"]),
    "server, no budget": (
        judged(ServerRun(target_qps=1000.0, achieved_qps=990.0, queries=1000, answered=1000, refused=0,
                         latency=_STATS, harness_late_p99_us=69.4, service_p99_us=49.0, usage=_USAGE_VALUES,
                         seconds=1.0)),
        ["target 1,000.0 qps, achieved 990.0; answered 1,000, refused 0",
         ("latency from scheduled arrival: p50 16.5 us, p99 272.0 us, max 660.0 us; "
         "no budget set (--budget-ms or [budgets] latency_ms)"),
         "service time p99 49.0 us; harness wake-up delay p99 69.4 us",
         "cpu share 0.50, peak rss 250.2 MB"]),
    "server --find-max-qps": (
        ServerSearch(max_qps=4200.0, at_max_qps=_RUN, budget_ms=50.0, interval_qps=(4000.0, 4410.0),
                     reversals_qps=(4000.0, 4362.0, 4000.0, 4362.0), seconds=12.34, cpu_wait_share=0.02,
                     stopped="precision reached: ...", notes=("each probe runs at least 1,000 queries ...",),
                     probes=(ServerProbe.from_run(_RUN),
                             ServerProbe(target_qps=8000.0, p99_us=None, met_budget=False, refused=300,
                                         why=(("300 of 1,000 queries refused (load shedding: the runtime turned "
                                              "them away to keep its budgets)"),)))),
        ["max qps holding p99 <= 50.0 ms: 4,200.0 (last met at 4,000 qps: p99 272.0 us, refused 0)",
         ("confidence: 95% interval 4,000 to 4,410 qps (within 5.0%, aim 5%) from 4 reversals; 2 probes in 12.3 s; "
         "the process waited for a CPU 2% of the time (other processes)"),
         "met the budget, by rate: 4,000 1/1, 8,000 0/1",
         "stopped: precision reached: ...",
         "  probe 4,000 qps: p99 272.0 us, met",
         ("  probe 8,000 qps: p99 - us, missed: 300 of 1,000 queries refused (load shedding: the runtime turned them "
         "away to keep its budgets)"),
         "note: each probe runs at least 1,000 queries ..."]),
    "server --find-max-qps, nothing held": (
        ServerSearch(max_qps=None, at_max_qps=None, budget_ms=0.5, stopped="halving the rate ...",
                     probes=(ServerProbe(target_qps=2000.0, p99_us=900.0, met_budget=False, refused=0,
                                         why=("p99 900 us over the budget 500 us",)),)),
        ["max qps holding p99 <= 0.5 ms: - (no probe met the budget)",
         "confidence: no interval: 0 reversals; 1 probes in 0.0 s",
         "met the budget, by rate: 2,000 0/1",
         "stopped: halving the rate ...",
         "  probe 2,000 qps: p99 900.0 us, missed: p99 900 us over the budget 500 us"]),
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
    scenario = case.split(",")[0].split(" ")[0]
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
                 "max_qps": 2, "report": 3, "run": 4, "__init__": 5}


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


# ------------------------------------------------------------------ why a server run missed
def _run(rate: float = 1000.0, *, p99_us: float | None = 500.0, budget_ms: float | None = 1.0, queries: int = 1000,
         answered: int | None = None, refused: int = 0, seconds: float | None = None,
         cpu_wait_ms: float | None = None, late_us: float = 10.0) -> ServerRun:
    """A judged run made up from its numbers: by default 1,000 queries issued on schedule."""
    stats = Percentiles(p50_us=100.0, p90_us=200.0, p99_us=p99_us, p99_9_us=None, max_us=p99_us or 300.0,
                        mean_us=120.0)
    answered = queries - refused if answered is None else answered
    seconds = queries / rate if seconds is None else seconds
    return judged(ServerRun(target_qps=rate, offered_qps=rate, achieved_qps=answered / seconds, queries=queries,
                            answered=answered, refused=refused, latency=stats, harness_late_p99_us=late_us,
                            service_p99_us=80.0, usage=_USAGE_VALUES, seconds=seconds, cpu_wait_ms=cpu_wait_ms,
                            budget_ms=budget_ms))


WHY_CASES: dict[str, tuple[ServerRun, bool | None, tuple[str, ...]]] = {
    "met": (_run(), True, ()),
    "no budget": (_run(budget_ms=None), None, ()),
    "p99 over the budget": (_run(p99_us=3127.5), False, ("p99 3,128 us over the budget 1,000 us",)),
    "p99 over, the machine busy": (
        _run(p99_us=3127.5, cpu_wait_ms=41.0, late_us=2202.0), False,
        ("p99 3,128 us over the budget 1,000 us",
         "the process waited 41 ms for a CPU during the 1.0 s run (other processes were running)",
         "the harness woke up 2,202 us late (p99) while the runtime was idle")),
    "a little waiting is not named": (_run(p99_us=3127.5, cpu_wait_ms=0.5), False,
                                      ("p99 3,128 us over the budget 1,000 us",)),
    "too few queries for a p99": (
        _run(p99_us=None, queries=500), None,
        ("not judged: a p99 needs at least 1,000 answered queries, 500 were",)),
    "refused": (
        _run(refused=12), False,
        ("12 of 1,000 queries refused (load shedding: the runtime turned them away to keep its budgets)",)),
    "refused, too few left": (
        _run(p99_us=None, refused=200), False,
        ("200 of 1,000 queries refused (load shedding: the runtime turned them away to keep its budgets)",
         "not judged on latency: a p99 needs at least 1,000 answered queries, 800 were")),
    "could not keep up": (
        # 1,000 queries offered at 4,000 qps took half a second: 2,000 qps, and the queue shows in the p99.
        _run(4000.0, p99_us=250_000.0, seconds=0.5, cpu_wait_ms=100.0), False,
        ("achieved 2,000 qps of the 4,000 offered: the harness and the runtime could not keep up",
         "p99 250,000 us over the budget 1,000 us")),
    "fell behind and was stopped": (
        _run(4000.0, p99_us=900_000.0, answered=600, seconds=1.5), False,
        ("fell behind the arrivals and was stopped after 1.5 s: 600 of 1,000 queries issued",
         "p99 900,000 us over the budget 1,000 us")),
}


@pytest.mark.parametrize("case", list(WHY_CASES))
def test_every_miss_says_why(case: str) -> None:
    run, met, why = WHY_CASES[case]
    assert (run.met_budget, run.why) == (met, why)
    assert run.to_dict()["why"] == list(why) and run.to_dict()["met_budget"] is met


# ------------------------------------------------------------------ the max-QPS search, on made-up probes
class FakeClock:
    """Seconds that move only when a fake probe says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _searcher(outcome: Callable[[float, int], ServerRun], *, start: float = 1000.0, limit_s: float = 1e6,
              seconds_per_probe: float = 1.0) -> tuple[ServerSearch, list[float], FakeClock]:
    """Run a search whose probes are ``outcome(rate, attempt)``, each taking ``seconds_per_probe`` of a fake clock."""
    clock = FakeClock()
    seen: list[float] = []
    track = ProgressTracker(seen.append)

    def probe(rate: float, attempt: int, progress: Callable[[float], None]) -> ServerRun:
        progress(0.5)
        clock.now += seconds_per_probe
        return outcome(rate, attempt)

    search = search_max_qps(probe, start_qps=start, budget_ms=1.0, planned_s=lambda rate: seconds_per_probe,
                            limit_s=limit_s, clock=clock, progress=track)
    return search, seen, clock


def _knee(at: float) -> Callable[[float, int], ServerRun]:
    """A quiet machine: the budget holds up to ``at`` qps; above it the harness falls behind."""
    return lambda rate, attempt: _run(rate) if rate <= at else _run(rate, p99_us=80_000.0, seconds=2000 / rate)


def test_search_on_a_quiet_machine_brackets_then_settles_between_two_grid_rates() -> None:
    search, _, _ = _searcher(_knee(5000.0))
    rates = [round(p.target_qps) for p in search.probes]
    # Doubling until 8,000 fell behind (settled at once: capacity), then the staircase from
    # the middle of [4,000, 8,000]: steps of 4 grid rates, then 2, then 1 (2^(1/8) apart).
    assert rates[:10] == [1000, 2000, 4000, 8000, 5657, 5657, 4000, 4000, 4757, 4757]
    assert set(rates[-16:]) == {5187, 4757}
    assert search.max_qps is not None and 4757 < search.max_qps < 5187
    assert search.interval_qps == pytest.approx((1000 * 2 ** (18 / 8), 1000 * 2 ** (19 / 8)))  # one grid step
    assert search.stopped.startswith("precision reached")
    assert search.at_max_qps is not None and round(search.at_max_qps.target_qps) == 4757
    assert all(not p.met_budget for p in search.probes if p.target_qps > 5000)
    assert len(search.reversals_qps) >= 8 and search.precision == 0.05


def test_search_gives_the_same_answer_from_any_starting_rate_on_the_grid() -> None:
    answers = {start: _searcher(_knee(5000.0), start=start)[0].max_qps for start in (125.0, 1000.0, 64_000.0)}
    assert len(set(answers.values())) == 1, answers


def test_a_lone_miss_is_probed_again_and_the_search_goes_on_up() -> None:
    """The issue's run: one unlucky probe at the start sent the old search down to 15.6 qps."""
    def outcome(rate: float, attempt: int) -> ServerRun:
        if rate == 1000.0 and attempt == 0:
            return _run(rate, p99_us=3127.5, cpu_wait_ms=41.0)
        return _knee(5000.0)(rate, attempt)

    search, _, _ = _searcher(outcome)
    assert [p.target_qps for p in search.probes[:3]] == [1000.0, 1000.0, 2000.0]
    assert [p.met_budget for p in search.probes[:2]] == [False, True]
    assert search.max_qps is not None and 4757 < search.max_qps < 5187


def test_the_staircase_is_not_moved_by_sporadic_misses() -> None:
    """Seeded noise, as measured on a shared 2-core machine: below the knee a quarter of the probes
    miss (another process took the CPU), above it the harness falls behind. Twenty searches
    agree within 20%."""
    answers = []
    for seed in range(20):
        rng = random.Random(seed)

        def outcome(rate: float, attempt: int, rng: random.Random = rng) -> ServerRun:
            if rate > 31_000:
                return _run(rate, p99_us=80_000.0, seconds=2000 / rate)
            return _run(rate, p99_us=15_000.0, cpu_wait_ms=300.0) if rng.random() < 0.25 else _run(rate)

        search, _, _ = _searcher(outcome)
        assert search.max_qps is not None
        answers.append(search.max_qps)
    assert max(answers) / min(answers) <= 1.2, sorted(round(a) for a in answers)
    assert all(26_000 < a < 34_000 for a in answers)


def test_search_stops_going_down_when_the_p99_does_not_fall_with_the_rate() -> None:
    """Misses from stalls, not load: halving the rate does not help, so the search stops."""
    search, _, _ = _searcher(lambda rate, attempt: _run(rate, p99_us=3700.0 + attempt, cpu_wait_ms=80.0))
    # Three misses at each rate in the bracket, then a fourth at both before giving up.
    assert [p.target_qps for p in search.probes] == [1000.0] * 3 + [500.0] * 3 + [1000.0, 500.0]
    assert search.max_qps is None and search.at_max_qps is None and search.interval_qps is None
    assert search.stopped.startswith("halving the rate from 1,000 to 500 qps did not lower the p99 (3,700 then "
                                     "3,700 us, the best of each)")
    assert all(p.why[0].endswith("over the budget 1,000 us") for p in search.probes)


def test_search_bounds_at_the_top_and_the_bottom() -> None:
    top, _, _ = _searcher(lambda rate, attempt: _run(rate))
    assert top.max_qps == 1000.0 * 2**12 and top.stopped.startswith("every rate up to 4,096,000 qps held")
    # The p99 falls with the rate (by 11% a halving) but never enough: the search halves down to --qps / 1024.
    bottom, _, _ = _searcher(lambda rate, attempt: _run(rate, p99_us=4004.0 * (rate / 1000) ** (1 / 6)))
    assert bottom.max_qps is None and bottom.stopped.startswith("no rate down to 1 qps held")
    assert min(p.target_qps for p in bottom.probes) == 1000.0 / 2**10


def test_search_never_starts_a_probe_that_could_run_past_its_time_limit() -> None:
    # Each probe plans 1 s and may run 3 s (twice its plan plus a second) before it is stopped.
    search, _, clock = _searcher(_knee(5000.0), limit_s=12.0)
    assert clock.now == 10.0 and len(search.probes) == 10  # the 11th could have run from 10 s to 13 s
    assert search.stopped == ("time limit: a probe at 5,657 qps could run past 12 s (--search-limit); "
                              "the answer rests on the 10 probes made")
    # No reversal yet: the highest rate where most probes met the budget.
    assert search.max_qps == 1000 * 2 ** (18 / 8) and search.interval_qps is None
    assert search.seconds == 10.0


def test_search_progress_grows_and_stays_below_one() -> None:
    search, seen, _ = _searcher(_knee(5000.0))
    assert len(seen) > len(search.probes)  # during every probe, not only between them
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert 0 < seen[0] and seen[-1] < 1.0


# ------------------------------------------------------------------ progress
def test_progress_tracker_never_goes_back_and_reaches_one_only_at_the_end() -> None:
    seen: list[float] = []
    track = ProgressTracker(seen.append)
    first, second = stages(track, [1.0, 3.0])
    assert first is not None and second is not None
    first(0.5), first(1.0), second(0.0), second(2.0), first(0.2)  # second(2.0) overshoots its stage
    assert seen == [0.125, 0.25, 0.999]
    track.finish()
    assert seen[-1] == 1.0 and stages(None, [1.0]) == [None]


def test_timed_loop_reports_the_lesser_of_time_and_count() -> None:
    """The old loop reported the greater: 1,024 fast queries put the bar at 100% of a 10 s run."""
    ticks = iter(range(0, 10**12, 10_000))  # a clock that moves 10 us per reading: 20 us per call
    seen: list[float] = []
    latencies = timed_loop(lambda row: None, [0], duration_s=0.1, min_queries=1024, progress=seen.append,
                           clock=lambda: next(ticks))
    assert len(latencies) == 5000  # 0.1 s of 20 us calls
    assert seen == sorted(seen) and seen[-1] < 1.0
    assert seen[:3] == pytest.approx([256 / 1024 * 0.2048, 0.1024, 0.1536], abs=1e-3)  # by time, not by count


@pytest.mark.parametrize("scenario", ["single-stream", "server", "server --find-max-qps", "offline", "cold-start"])
def test_progress_of_every_scenario_is_monotonic_and_ends_at_one(cancer_bundle: Path, scenario: str) -> None:
    name, _, flag = scenario.partition(" ")
    settings = BenchSettings(scenario=name, find_max_qps=bool(flag), duration_s=0.3, min_queries=300,
                             warmup_s=0.1, qps=4000, budget_ms=1000, compare_raw=name in ("single-stream", "offline"),
                             batch_sizes=(1, 64), search_limit_s=20)
    seen: list[float] = []
    run_benchmark(cancer_bundle, settings, progress=seen.append)
    assert len(seen) >= 3, seen
    assert seen == sorted(seen) and seen[-1] == 1.0 and max(seen[:-1]) < 1.0


# ------------------------------------------------------------------ offline: --duration per batch size
class FakeBatchRuntime:
    """``predict_batch`` and its raw twin cost 1/64 s and 1/256 s of a fake clock per call (exact in binary)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, int]] = []

    def predict_batch(self, batch: Any) -> None:
        self.clock.now += 1 / 64
        self.calls.append(("runtime", len(batch)))

    def raw(self, feeds: Any) -> None:
        self.clock.now += 1 / 256
        self.calls.append(("raw", len(feeds["x"])))

    def encode(self, batch: Any) -> Any:
        return SimpleNamespace(feeds={"x": np.asarray(batch)})


def test_offline_spends_duration_on_each_batch_size_and_again_on_raw() -> None:
    clock = FakeClock()
    fake = FakeBatchRuntime(clock)
    rows = [np.zeros(3) + i for i in range(100)]
    seen: list[tuple[float, float]] = []
    result = run_offline(fake, rows, BenchSettings(scenario="offline", duration_s=1.0, batch_sizes=(1, 8)),  # type: ignore[arg-type]
                         lambda fraction: seen.append((clock.now, fraction)), fake.raw, clock=clock)
    # Each batch size and each path: one unmeasured call, then calls until 1 s has passed.
    assert [e.batch for e in result.sweep] == [1, 8]
    assert [e.runtime_s for e in result.sweep] == [1.0, 1.0]
    assert [e.runtime_rows_per_s for e in result.sweep] == [64.0, 512.0]
    assert [e.raw_rows_per_s for e in result.sweep] == [256.0, 2048.0]
    assert clock.now == 4 * 1.0 + 2 / 64 + 2 / 256
    assert [kind for kind, _ in fake.calls].count("runtime") == 2 * (64 + 1)
    # Progress follows the fake clock: the fraction of the 4 s planned.
    assert [f for _, f in seen] == sorted(f for _, f in seen) and max(f for _, f in seen) < 1.0
    assert all(abs(f - now / 4.0) < 0.02 for now, f in seen)


# ------------------------------------------------------------------ cold start
def test_cold_start_children_get_a_config_object(cancer_bundle: Path, tmp_path: Path) -> None:
    db = tmp_path / "children.db"
    result = run_cold_start(cancer_bundle, RuntimeConfig(monitoring=MonitoringConfig(db=db)), np.zeros(30).tolist(),
                            runs=1)
    assert result.runs == 1 and db.exists()  # only the child opened a runtime, with the monitoring it was given


_NOISY_CHILD = """
import json, sys
sys.stderr.write("w" * 200_000)
sys.stderr.flush()
print(json.dumps({"import_ms": 1.0, "load_and_answer_ms": 1.0, "rss_mb": 1.0}), flush=True)
sys.exit(int(sys.argv[3] == '"fail"'))
"""


def test_cold_start_child_may_write_megabytes_to_stderr(tmp_path: Path) -> None:
    """More than a pipe holds: with stderr on a pipe the child blocked until the 120 s timeout."""
    sample = _launch(tmp_path, None, "{}", code=_NOISY_CHILD, timeout_s=60)
    assert sample["import_ms"] == 1.0 and sample["first_answer_ms"] > 0
    with pytest.raises(ConfigError) as failed:
        _launch(tmp_path, None, '"fail"', code=_NOISY_CHILD, timeout_s=60)
    message = str(failed.value)
    assert message.startswith("the cold-start child failed: ...www") and len(message) < 4100


def test_cold_start_child_that_never_answers_is_stopped(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^the cold-start child gave no answer within 1 s: waiting$"):
        _launch(tmp_path, None, "{}", code="import sys, time; sys.stderr.write('waiting'); sys.stderr.flush(); "
                                           "time.sleep(60)", timeout_s=1)


# ------------------------------------------------------------------ the command: search and help
def test_cli_search_raises_min_queries_and_says_why_each_probe_missed(cancer_bundle: Path) -> None:
    result = CliRunner().invoke(main, ["bench", str(cancer_bundle), "--scenario", "server", "--find-max-qps",
                                       "--budget-ms", "1000", "--qps", "4000", "--duration", "0.02",
                                       "--min-queries", "500", "--search-limit", "20"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2].startswith("max qps holding p99 <= 1000.0 ms: ") and lines[3].startswith("confidence: ")
    assert lines[4].startswith("met the budget, by rate: 4,000 1/1") and lines[5].startswith("stopped: ")
    probes = [line for line in lines if line.startswith("  probe ")]
    assert probes and all(line.endswith(", met") or ", missed: " in line for line in probes)
    assert lines[-1] == ("note: each probe runs at least 1,000 queries, the fewest a p99 is reported from "
                         "(--min-queries 500 raised)")


def test_cli_help_states_the_search_bound_and_what_duration_means() -> None:
    text = " ".join(CliRunner().invoke(main, ["bench", "--help"]).stdout.split())
    assert "--search-limit SECONDS" in text and "(default: 60 x --duration, at least 120)" in text
    assert "offline: of each batch size, and as long again for raw onnxruntime with --compare raw" in text
    assert "A --find-max-qps probe runs at least 1,000, the fewest a p99 needs." in text
