"""Old against new: ``assess_window``, ``encode_drift`` and the summary of a revision against the tree's.

A speed change to ``drift.py`` or ``windows.py`` must not change a verdict.
This script loads both modules as they are at ``--rev`` (read with ``git
show``, imported under other names, on top of the rest of the tree) and
compares them with the tree's on the same windows: classifier (three classes
and binary) and regressor windows of 0 to 60,000 rows, thinned or not, with
counted (boolean, small integer), categorical, partly missing and empty
features, class probabilities, three policies (the default, zero KS floors and
7 PSI bins: edges off the grid), the multivariate verdict, and 5,000-row
windows of breast-cancer rows through a logistic regression, as
``benchmarks/window_close.py`` fills them.

Statuses, names, kinds, decisive metrics, stored layouts and codes, and
events must be equal; every number equal to 1e-12 (relative).

Run: ``PYTHONPATH=$PWD python benchmarks/assess_parity.py [--rev b782e9d]``
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from converters.multivariate import fit_multivariate
from edge_runtime.config import DriftPolicy
from edge_runtime.monitoring import drift as new_drift
from edge_runtime.monitoring import windows as new_windows
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.multivariate import add_errors
from edge_runtime.monitoring.sketches import REFERENCE_K, NumericSketch
from edge_runtime.serving.schema import FeatureKind, FeatureSpec, InputLayout, InputSchema, OutputSchema, Task

ROOT = Path(__file__).resolve().parent.parent
INPUTS = InputSchema(features=(
    FeatureSpec(name="a"), FeatureSpec(name="b"), FeatureSpec(name="c"),
    FeatureSpec(name="city", kind=FeatureKind.CATEGORICAL, categories=("x", "y", "z")),
    FeatureSpec(name="flag"), FeatureSpec(name="d")), layout=InputLayout.COLUMNS)
OUTPUTS = {
    "classes": OutputSchema(task=Task.CLASSIFICATION, score_output="p", label_output="l", classes=(0, 1, 2)),
    "binary": OutputSchema(task=Task.CLASSIFICATION, score_output="p", label_output="l", classes=(0, 1)),
    "regression": OutputSchema(task=Task.REGRESSION, score_output="y")}
POLICIES = (DriftPolicy(), DriftPolicy(ks_warn=0.0, ks_drift=0.0), DriftPolicy(psi_bins=7))


def old_modules(rev: str, work: Path) -> tuple[ModuleType, ModuleType]:
    """``drift.py`` and ``windows.py`` at ``rev``, importable beside the tree's."""
    def source(path: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout

    (work / "drift_before.py").write_text(source("edge_runtime/monitoring/drift.py"))
    (work / "windows_before.py").write_text(source("edge_runtime/monitoring/windows.py").replace(
        "from edge_runtime.monitoring.drift import", "from drift_before import"))
    sys.path.insert(0, str(work))
    modules = []
    for name in ("drift_before", "windows_before"):
        spec = importlib.util.spec_from_file_location(name, work / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        modules.append(module)
    return modules[0], modules[1]


def same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), (where, list(a), list(b))
        for key in a:
            same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, float) and isinstance(b, float):
        close = a == b or abs(a - b) <= 1e-12 * max(1.0, abs(a)) or (math.isnan(a) and math.isnan(b))
        assert close, (where, a, b)
    else:
        assert a == b, (where, a, b)


def compare(old: tuple[ModuleType, ModuleType], reference: Profile, live: Profile, policy: DriftPolicy,
            where: str, multivariate: Any = None) -> list[str]:
    """Both versions on one window; the statuses."""
    old_drift, old_windows = old
    before = old_drift.assess_window(reference, live, policy, multivariate=multivariate)
    after = new_drift.assess_window(reference, live, policy, multivariate=multivariate)
    pairs = list(zip(before.verdicts(), after.verdicts(), strict=True))
    for b, a in pairs:
        assert (b.name, b.kind) == (a.name, a.kind), where
        same(b.to_dict(), a.to_dict(), f"{where}:{a.name}")
    same(before.summary(), after.summary(), f"{where}:summary")
    assert before.worst(10) == after.worst(10), where
    stored_b, events_b = old_windows.encode_drift(before, 1.0)
    stored_a, events_a = new_windows.encode_drift(after, 1.0)
    assert stored_b is not None and stored_a is not None
    assert stored_b.layout == stored_a.layout and stored_b.codes == stored_a.codes, where
    numbers_b, numbers_a = np.frombuffer(stored_b.numbers), np.frombuffer(stored_a.numbers)
    assert numbers_b.shape == numbers_a.shape, where
    assert np.allclose(numbers_b, numbers_a, rtol=1e-12, atol=1e-15), where
    assert events_b == events_a, where
    return [a.status.value for a in after.verdicts()]


def profile(rng: np.random.Generator, n: int, outputs: OutputSchema, *, like: Profile | None = None,
            stride: int = 1, k: int = 200, shift: float = 0.0, mix: tuple[float, ...] = (0.5, 0.3, 0.2, 0.0),
            flag: float = 0.3, scale: float = 1.0, missing: float = 0.0) -> Profile:
    """A window (or, without ``like``, a reference) of ``n`` seeded rows, fed in blocks of 512."""
    counted = () if like else ("flag",)
    out = Profile.for_schema(INPUTS, outputs, stride=stride, k=k, like=like, counted=counted)
    columns: list[Any] = [
        rng.normal(0, scale, n).astype(np.float32), (rng.lognormal(0, 0.5, n) + shift).astype(np.float32),
        rng.integers(0, 10, n).astype(np.float32) * 1.5, rng.choice(["x", "y", "z", "w"], n, p=mix).tolist(),
        (rng.random(n) < flag).astype(np.float32), np.round(rng.normal(100, 5, n)).astype(np.float32)]
    columns[0][rng.random(n) < missing] = np.nan
    classes = len(outputs.classes) if outputs.task is Task.CLASSIFICATION else 0
    for start in range(0, n, 512):
        part = [column[start:start + 512] for column in columns]
        out.update_columns(part)
        if classes:
            probabilities = rng.dirichlet(np.ones(classes), len(part[0]))
            labels = probabilities.argmax(axis=1).tolist()
            out.update_outputs(labels, probabilities.max(axis=1), probabilities)
        else:
            out.update_outputs(None, part[1].astype(np.float64))
    return out


def synthetic(old: tuple[ModuleType, ModuleType], rng: np.random.Generator) -> list[str]:
    statuses = []
    cases: list[dict[str, Any]] = [
        dict(n=5000, stride=4), dict(n=5000, stride=4, shift=0.3), dict(n=500),
        dict(n=100, shift=2.0, mix=(0.2, 0.3, 0.5, 0.0)), dict(n=60_000, stride=8, shift=0.05), dict(n=1),
        dict(n=0), dict(n=3, stride=4),
        dict(n=2000, flag=0.6, scale=1.3), dict(n=5000, stride=4, missing=0.2),
        dict(n=5000, stride=4, mix=(0.3, 0.3, 0.3, 0.1)), dict(n=20_000, stride=8, shift=1.0),
        # Near the thresholds: warnings.
        dict(n=5000, stride=4, shift=0.04), dict(n=5000, stride=4, scale=1.06), dict(n=5000, flag=0.32),
        dict(n=5000, stride=4, mix=(0.48, 0.3, 0.22, 0.0))]
    for kind, outputs in OUTPUTS.items():
        reference = profile(rng, 20_000, outputs, k=REFERENCE_K)
        for case in cases:
            live = profile(rng, like=reference, outputs=outputs, **case)
            for policy in POLICIES:
                statuses += compare(old, reference, live, policy, f"{kind} {case} {policy}")
        live = profile(rng, 3000, outputs, like=reference)
        live.features["a"] = NumericSketch()  # a feature without a value among full ones
        statuses += compare(old, reference, live, DriftPolicy(), f"{kind} empty feature")
    return statuses


def multivariate(old: tuple[ModuleType, ModuleType], rng: np.random.Generator) -> list[str]:
    def skewed(n: int) -> np.ndarray:
        a = rng.lognormal(0, 0.6, n)
        others = [rng.gamma(2.0, 1.0, n) for _ in range(4)]
        return np.column_stack([a, 0.7 * a + rng.normal(0, 0.3, n), *others])

    inputs = InputSchema(features=tuple(FeatureSpec(name=f"f{i}") for i in range(6)))
    rows = skewed(20_000)
    model = fit_multivariate(rows, inputs)
    assert model is not None
    reference = Profile.for_schema(inputs, OUTPUTS["regression"], k=REFERENCE_K).update_matrix(
        rows.astype(np.float32), scores=rows[:, 0].astype(np.float32))
    statuses = []
    for n, bend in ((100, 0.0), (5000, 0.0), (5000, 1.0)):
        block = skewed(n).astype(np.float32)
        block[:, 1] += bend
        live = Profile.for_schema(inputs, OUTPUTS["regression"], multivariate=True, like=reference,
                                  stride=4 if n > 1000 else 1)
        for start in range(0, n, 512):
            live.update_matrix(block[start:start + 512].copy(), scores=block[start:start + 512, 0].copy())
        assert live.multivariate is not None
        add_errors(live.multivariate, model.errors(block))
        statuses += compare(old, reference, live, DriftPolicy(), f"multivariate {n} {bend}", model)
    return statuses


def breast_cancer(old: tuple[ModuleType, ModuleType], work: Path, windows: int) -> list[str]:
    """The windows of ``benchmarks/window_close.py``: 5,000 rows in batches of 500, logistic regression."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import export
    from edge_runtime import Runtime, RuntimeConfig
    from edge_runtime.config import MonitoringConfig

    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    bundle = export(model, X, y, name="logreg", version="1", out_dir=work / "bundle").path
    rng = np.random.default_rng(2)
    batches = [X[rng.integers(0, len(X), 500)].astype(np.float32) for _ in range(10)]
    closed: list[bytes] = []
    config = RuntimeConfig(monitoring=MonitoringConfig(db=work / "parity.db", window_rows=5000,
                                                       background=False))
    with Runtime(bundle, config=config) as rt:
        monitor: Any = rt.monitor
        close = monitor._close_window

        def keep(*, partial: bool, now: float) -> None:
            closed.append(monitor._window.profile.to_bytes())
            close(partial=partial, now=now)

        monitor._close_window = keep
        for _ in range(windows):
            for batch in batches:
                rt.predict_batch(batch)
        reference, policy = monitor.reference, monitor.policy
    return [status for data in closed for status in
            compare(old, reference, Profile.from_bytes(data), policy, "breast cancer")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the revision to compare with (default: HEAD)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        old = old_modules(args.rev, Path(tmp))
        statuses = synthetic(old, rng) + multivariate(old, rng) + breast_cancer(old, Path(tmp), 10)
    counts = {status: statuses.count(status) for status in ("ok", "warn", "drift")}
    print(f"{len(statuses)} verdicts equal to {args.rev}'s ({counts})")


if __name__ == "__main__":
    main()
