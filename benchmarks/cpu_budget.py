"""Does the CPU budget hold under sustained overload?

A 300-tree random forest (about 0.1 ms of CPU per prediction here) is offered
Poisson traffic at a rate that needs more CPU than the budget allows, for 30 s,
through ``edge-runtime bench``'s server scenario (the harness sleeps between
arrivals, so idle time is really idle). The runtime's budget governor sheds
optional work, then load; the process's CPU share over the whole run is
compared with the budget, and the level changes are listed.

Run: ``python benchmarks/cpu_budget.py [--seconds 30] [--budget 0.5] [--qps 8000]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from converters import export
from edge_runtime import RuntimeConfig
from edge_runtime.bench import BenchSettings, run_benchmark
from edge_runtime.config import BudgetConfig, MonitoringConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--budget", type=float, default=0.5, help="CPU share of one core")
    parser.add_argument("--qps", type=float, default=8000.0)
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)
    model = RandomForestClassifier(n_estimators=300, random_state=0).fit(X, y)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export(model, X, y, name="rf300", version="1", out_dir=Path(tmp) / "rf300").path
        config = RuntimeConfig(
            monitoring=MonitoringConfig(db=Path(tmp) / "m.db"),
            budgets=BudgetConfig(cpu_share=args.budget, window_s=2.0, check_every=256, check_interval_ms=200))
        report = run_benchmark(bundle, BenchSettings(scenario="server", qps=args.qps, duration_s=args.seconds,
                                                     min_queries=1000, warmup_s=0.5), config=config).to_dict()
        from edge_runtime.monitoring.store import MonitorStore

        store = MonitorStore(Path(tmp) / "m.db", create=False)
        events = [e for e in store.events(100) if e["kind"] == "budget"]
        store.close()
    r = report["results"]
    share = r["cpu_share"]
    print(f"budget {args.budget:.2f} of a core; offered {args.qps:,.0f} qps for {args.seconds:.0f} s")
    print(f"answered {r['answered']:,}, refused {r['refused']:,}; process cpu share over the run {share:.3f} "
          f"({share / args.budget - 1:+.1%} vs budget); p99 of answers {r['p99_us']:,.0f} us")
    for e in events:
        print(f"  event {e['name']}: {e['message']}")
    print(f"final state: {report['budget']}")


if __name__ == "__main__":
    main()
