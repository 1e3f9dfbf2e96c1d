"""False-alarm rate of the drift decisions on stationary data.

A reference profile of 20,000 rows (three numeric features of different
shapes, one categorical, a binary prediction), then many live windows drawn
from the same distributions, built as the monitor builds them: blocks of
1,024 rows, numeric sketches thinned by the window's stride. Counts windows
with any warn or drift verdict.

Run: ``python benchmarks/false_alarms.py [--windows 200]``
"""

from __future__ import annotations

import argparse

import numpy as np

from edge_runtime.config import DriftPolicy, MonitoringConfig
from edge_runtime.monitoring.drift import DriftStatus, assess_window
from edge_runtime.monitoring.windows import window_stride
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.serving.schema import FeatureKind, FeatureSpec, InputLayout, InputSchema, OutputSchema, Task

INPUTS = InputSchema(
    features=(FeatureSpec(name="normal"), FeatureSpec(name="lognormal"), FeatureSpec(name="integer"),
              FeatureSpec(name="city", kind=FeatureKind.CATEGORICAL, categories=("x", "y", "z"))),
    layout=InputLayout.COLUMNS)
OUTPUTS = OutputSchema(task=Task.CLASSIFICATION, score_output="p", label_output="l", classes=(0, 1))


def profile(rng: np.random.Generator, n: int, *, stride: int = 1, block: int | None = None) -> Profile:
    p = Profile.for_schema(INPUTS, OUTPUTS, stride=stride)
    normal = rng.normal(0, 1, n)
    columns = [normal.astype(np.float32), rng.lognormal(0, 0.5, n).astype(np.float32),
               rng.integers(0, 10, n).astype(np.float32), rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]).tolist()]
    labels = (normal > 0).astype(int)
    scores = 0.5 + np.abs(rng.normal(0, 0.2, n)).clip(0, 0.5)
    step = block or n
    for a in range(0, n, step):
        p.update_columns([c[a:a + step] for c in columns])
        p.update_outputs(labels[a:a + step].tolist(), scores[a:a + step])
    return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    reference = profile(rng, 20_000)
    policy = DriftPolicy()
    print("| rows per window | stride | windows | windows with a drift verdict | windows with a warn | verdicts |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in (100, 1_000, 5_000, 100_000, 1_000_000):
        windows = args.windows if rows <= 5_000 else max(args.windows // (20 if rows < 1_000_000 else 100), 2)
        drift = warn = verdicts = 0
        stride = window_stride(MonitoringConfig(window_rows=rows))
        for _ in range(windows):
            result = assess_window(reference, profile(rng, rows, stride=stride, block=1024), policy)
            prediction = [result.prediction.status] if result.prediction is not None else []
            statuses = [f.status for f in result.features.values()] + prediction
            verdicts += len(statuses)
            drift += any(s is DriftStatus.DRIFT for s in statuses)
            warn += any(s is DriftStatus.WARN for s in statuses)
        print(f"| {rows:,} | {stride} | {windows} | {drift} ({drift / windows:.1%}) | {warn} ({warn / windows:.1%}) | "
              f"{verdicts} |")


if __name__ == "__main__":
    main()
