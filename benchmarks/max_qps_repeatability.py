"""Does ``edge-runtime bench --find-max-qps`` give the same answer when run again?

Trains the demo model (a scaled logistic regression on the breast-cancer data,
30 numeric features), exports it, then runs the max-QPS search ``--runs`` times
in a row in this process, exactly as ``edge-runtime bench BUNDLE --scenario
server --find-max-qps`` does (same settings, including the warm-up the CLI
derives from ``--duration``). Prints each answer with its bracket, probes,
time and why it stopped, then the median and the max/min ratio of the
answers; the aim is a ratio of at most 1.2. Beside each run: the share of
the probes' time the process waited for a CPU while other processes ran, and
the machine's load average. On a shared machine these say which state the
machine was in, and the answers are summarized again for the runs where the
process waited less than 10% of the time (quiet) and the others (busy).

Run: ``python benchmarks/max_qps_repeatability.py [--runs 5] [--budget-ms 10] [--duration 0.5] [--qps 1000]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from converters import export
from edge_runtime.bench import BenchSettings, ServerSearch, run_benchmark

_QUIET = 0.10  # below this share of the time waiting for a CPU, a run counts as quiet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget-ms", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=0.5, help="seconds per probe, as bench --duration")
    parser.add_argument("--qps", type=float, default=1000.0, help="the starting rate, as bench --qps")
    parser.add_argument("--min-queries", type=int, default=1024)
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    # The CLI's own settings for these options (warm-up: a fifth of --duration, at most 1 s).
    settings = BenchSettings(scenario="server", find_max_qps=True, budget_ms=args.budget_ms,
                             duration_s=args.duration, qps=args.qps, min_queries=args.min_queries,
                             warmup_s=min(1.0, args.duration / 5))
    answers: list[float] = []
    by_state: dict[str, list[float]] = {"quiet": [], "busy": []}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export(model, X, y, name="logreg-breast-cancer", version="1", out_dir=Path(tmp) / "b").path
        for k in range(args.runs):
            load_before = os.getloadavg()[0]
            report = run_benchmark(bundle, settings)
            search = report.results
            assert isinstance(search, ServerSearch)
            if k == 0:
                m, v = report.machine, report.versions
                print(f"machine: {m.cpu}, {m.cores} cores, {m.arch}; python {m.python}, onnxruntime "
                      f"{v.onnxruntime}, numpy {v.numpy}, edge-runtime {v.edge_runtime}")
                print(f"settings: --budget-ms {args.budget_ms:g} --duration {args.duration:g} --qps {args.qps:g} "
                      f"--min-queries {args.min_queries} (search limit {settings.search_limit:g} s)")
            answer = f"{search.max_qps:,.0f}" if search.max_qps else "-"
            interval = (f"95% interval {search.interval_qps[0]:,.0f} to {search.interval_qps[1]:,.0f}"
                        if search.interval_qps else "no interval")
            waited = f"{search.cpu_wait_share:.0%}" if search.cpu_wait_share is not None else "-"
            print(f"run {k + 1}: max qps {answer} ({interval}, {len(search.reversals_qps)} reversals); "
                  f"{len(search.probes)} probes in {search.seconds:.1f} s; waited for a CPU {waited} of the time; "
                  f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
            print(f"       stopped: {search.stopped}")
            if search.max_qps is not None:
                answers.append(search.max_qps)
                quiet = search.cpu_wait_share is not None and search.cpu_wait_share < _QUIET
                by_state["quiet" if quiet else "busy"].append(search.max_qps)
    if not answers:
        print("no run found a rate that held the budget")
        return
    print(_summary("answers", answers)
          + (f"; {args.runs - len(answers)} run(s) found none" if len(answers) < args.runs else ""))
    for state, found in by_state.items():
        if found and len(found) < len(answers):
            print(_summary(f"  {state} runs (waited for a CPU {'<' if state == 'quiet' else '>='} "
                           f"{_QUIET:.0%} of the time)", found))


def _summary(label: str, answers: list[float]) -> str:
    ratio = max(answers) / min(answers)
    return (f"{label}: {', '.join(f'{a:,.0f}' for a in answers)} qps; median {statistics.median(answers):,.0f}; "
            f"max/min {ratio:.2f} ({'within' if ratio <= 1.2 else 'NOT within'} 20%)")


if __name__ == "__main__":
    main()
