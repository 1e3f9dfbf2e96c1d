"""Which models export, with what parity and how fast: writes docs/model-support.md.

Every classifier and regressor that ``sklearn.utils.all_estimators`` lists, with
its default parameters (``random_state=0`` where it has one), plus XGBoost,
LightGBM and CatBoost models of 100 trees (estimators and native Boosters), is
fitted on a standard data set (breast cancer for classifiers, diabetes for
regressors; 75 % of the rows, seeded), exported with :func:`converters.export`
and checked on the other 25 %. For each model the table records whether it
exported and, if not, the one-line error; label agreement (classifiers) or the
share of rows within tolerance (regressors); the maximum difference; and the
single-row p50 latency of ``Runtime.predict`` against the model's own
``predict_proba`` (classifiers) or ``predict`` (regressors), both called on the
same validation rows one at a time in this process, alternating in blocks of 50 rows.
Estimators whose constructor needs arguments (meta-estimators) are listed as
"needs arguments".

Run: ``PYTHONPATH=$PWD python benchmarks/model_support.py`` (a few minutes) to
rewrite docs/model-support.md; ``--quick`` runs a small subset (CI), ``--out``
writes elsewhere, ``--json`` prints the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from single_row import machine
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.utils import all_estimators

from converters import export
from converters.boosting import library_version
from edge_runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "model-support.md"
COMMAND = "PYTHONPATH=$PWD python benchmarks/model_support.py"
TREES = 100
#: The subset --quick runs: a few scikit-learn estimators and one model per boosting library.
QUICK = {"LogisticRegression", "RandomForestClassifier", "HistGradientBoostingClassifier", "LinearSVC", "SVC",
         "LinearRegression", "RandomForestRegressor", "ClassifierChain",
         "XGBClassifier", "LGBMRegressor", "CatBoostClassifier"}
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "onnxmltools", "xgboost", "lightgbm", "catboost",
             "numpy", "protobuf")


@dataclass(slots=True)
class Row:
    """One model's line in the table."""

    family: str  # "scikit-learn classifier", "xgboost", ...
    model: str
    task: str  # "classification" or "regression"
    exported: bool
    reason: str = ""
    agreement: float | None = None
    max_abs_diff: float | None = None
    rows_beyond_tolerance: int | None = None
    runtime_p50_us: float | None = None
    native_p50_us: float | None = None

    @property
    def with_parity(self) -> bool:
        """Exported, every validation row with the same label (or value), every difference within tolerance."""
        return self.exported and self.agreement == 1.0 and self.rows_beyond_tolerance == 0

    @property
    def speedup(self) -> float | None:
        if self.runtime_p50_us and self.native_p50_us:
            return self.native_p50_us / self.runtime_p50_us
        return None


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _data(task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    loader = load_breast_cancer if task == "classification" else load_diabetes
    data = loader()
    X_fit, X_val, y_fit, y_val = train_test_split(data.data, data.target, test_size=0.25, random_state=0)
    return X_fit, X_val, y_fit, y_val, [str(n) for n in data.feature_names]


def _p50s(runtime: Runtime, native: Callable[[Any], Any], X: np.ndarray, rows: int,
          block: int = 50) -> tuple[float, float]:
    """Median single-row latency of the runtime and the native model on the same rows.

    The two alternate block by block (as in single_row.py): row by row, each would
    run with the caches the other just filled, which slows the small one most.
    """
    ours: list[int] = []
    theirs: list[int] = []
    for i in range(min(block, len(X))):  # warm-up: first calls allocate
        runtime.predict(X[i])
        native(X[i].reshape(1, -1))
    for first in range(0, rows, block):
        batch = [X[i % len(X)] for i in range(first, min(first + block, rows))]
        for row in batch:
            start = time.perf_counter_ns()
            runtime.predict(row)
            ours.append(time.perf_counter_ns() - start)
        for row in batch:
            shaped = row.reshape(1, -1)
            start = time.perf_counter_ns()
            native(shaped)
            theirs.append(time.perf_counter_ns() - start)
    return float(np.median(ours)) / 1000, float(np.median(theirs)) / 1000


def measure(family: str, name: str, task: str, make: Callable[[], Any], *, fit: Callable[..., Any] | None = None,
            native: Callable[[Any], Callable[[Any], Any]] | None = None, timing_rows: int = 300) -> Row:
    """Fit, export, check and time one model; every failure becomes the row's reason."""
    X_fit, X_val, y_fit, _, names = _data(task)
    try:
        model = make()
    except TypeError as exc:
        if "required" in str(exc) or "missing" in str(exc):
            return Row(family, name, task, False, "needs arguments")
        return Row(family, name, task, False, _one_line(exc))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = fit(model, X_fit, y_fit) if fit is not None else model.fit(X_fit, y_fit)
    except Exception as exc:  # the estimator's own fit: recorded, not raised
        return Row(family, name, task, False, "fit failed: " + _one_line(exc))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = export(model, X_fit, y_fit, name="m", version="1", out_dir=Path(tmp) / "b", X_val=X_val,
                                feature_names=names)
        except Exception as exc:
            return Row(family, name, task, False, _one_line(exc))
        parity = result.parity or {}
        row = Row(family, name, task, True, agreement=parity.get("label_agreement", parity.get("agreement")),
                  max_abs_diff=parity.get("max_abs_diff"), rows_beyond_tolerance=parity.get("rows_beyond_tolerance"))
        predict = (native(model) if native is not None
                   else model.predict_proba if task == "classification" else model.predict)
        with Runtime(result.path) as runtime, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row.runtime_p50_us, row.native_p50_us = _p50s(runtime, predict, X_val, timing_rows)
    return row


def _with_seed(cls: type) -> Callable[[], Any]:
    def make() -> Any:
        model = cls()
        if "random_state" in model.get_params():
            model.set_params(random_state=0)
        return model

    return make


def sklearn_rows(quick: bool, timing_rows: int) -> list[Row]:
    rows = []
    for kind, task in (("classifier", "classification"), ("regressor", "regression")):
        for name, cls in all_estimators(type_filter=kind):
            if quick and name not in QUICK:
                continue
            print(f"  {name}", file=sys.stderr, flush=True)
            rows.append(measure(f"scikit-learn {kind}", name, task, _with_seed(cls), timing_rows=timing_rows))
    return rows


def boosting_rows(quick: bool, timing_rows: int) -> list[Row]:
    """XGBoost, LightGBM and CatBoost models of 100 trees, single-threaded like the runtime."""
    rows: list[Row] = []
    import catboost
    import lightgbm
    import xgboost

    def xgb_booster(objective: str) -> Callable[..., Any]:
        def fit(_: Any, X: Any, y: Any) -> Any:
            return xgboost.train({"objective": objective, "nthread": 1, "seed": 0}, xgboost.DMatrix(X, y), TREES)
        return fit

    def lgb_booster(objective: str) -> Callable[..., Any]:
        def fit(_: Any, X: Any, y: Any) -> Any:
            return lightgbm.train({"objective": objective, "verbose": -1, "num_threads": 1, "seed": 0},
                                  lightgbm.Dataset(X, y), TREES)
        return fit

    def xgb_native(booster: Any) -> Callable[[Any], Any]:
        return lambda row: booster.inplace_predict(row)  # XGBoost's fastest single-row path (no DMatrix)

    cases: list[tuple[str, str, str, Callable[[], Any], Any, Any]] = [
        ("xgboost", "XGBClassifier", "classification",
         lambda: xgboost.XGBClassifier(n_estimators=TREES, nthread=1, random_state=0), None, None),
        ("xgboost", "XGBRegressor", "regression",
         lambda: xgboost.XGBRegressor(n_estimators=TREES, nthread=1, random_state=0), None, None),
        ("xgboost", "xgboost.Booster (binary:logistic)", "classification", lambda: None,
         xgb_booster("binary:logistic"), xgb_native),
        ("lightgbm", "LGBMClassifier", "classification",
         lambda: lightgbm.LGBMClassifier(n_estimators=TREES, n_jobs=1, random_state=0, verbose=-1), None, None),
        ("lightgbm", "LGBMRegressor", "regression",
         lambda: lightgbm.LGBMRegressor(n_estimators=TREES, n_jobs=1, random_state=0, verbose=-1), None, None),
        ("lightgbm", "lightgbm.Booster (binary)", "classification", lambda: None, lgb_booster("binary"),
         # One thread, as the runtime: OpenMP's default team stalls for milliseconds on a busy machine.
         lambda booster: lambda row: booster.predict(row, num_threads=1)),
        ("catboost", "CatBoostClassifier", "classification",
         lambda: catboost.CatBoostClassifier(iterations=TREES, thread_count=1, random_seed=0, verbose=0,
                                             allow_writing_files=False), None, None),
        ("catboost", "CatBoostRegressor", "regression",
         lambda: catboost.CatBoostRegressor(iterations=TREES, thread_count=1, random_seed=0, verbose=0,
                                            allow_writing_files=False), None, None),
    ]
    for family, name, task, make, fit, native in cases:
        if quick and name not in QUICK:
            continue
        print(f"  {name}", file=sys.stderr, flush=True)
        rows.append(measure(family, name, task, make, fit=fit, native=native, timing_rows=timing_rows))
    return rows


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _table(rows: list[Row]) -> list[str]:
    lines = ["| model | exported | agreement | max abs diff | rows beyond tol. | runtime p50 (µs) | "
             "native p50 (µs) | speed-up | why not |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reason = r.reason.replace("|", "\\|")
        lines.append(f"| {r.model} | {'yes' if r.exported else 'no'} | {_number(r.agreement, '.4f')} | "
                     f"{_number(r.max_abs_diff, '.2e')} | {_number(r.rows_beyond_tolerance, 'd')} | "
                     f"{_number(r.runtime_p50_us, '.1f')} | {_number(r.native_p50_us, '.1f')} | "
                     f"{'' if r.speedup is None else format(r.speedup, '.1f') + '×'} | {reason} |")
    return lines


def _versions() -> str:
    found = []
    for package in LIBRARIES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            try:  # a model library installed under another distribution name (xgboost-cpu)
                found.append(f"{package} {library_version(package)}")
            except ImportError:
                found.append(f"{package} (not installed)")
    return ", ".join(found)


def render(rows: list[Row], quick: bool, seconds: float) -> str:
    """The Markdown page."""
    info = machine()
    sk = [r for r in rows if r.family.startswith("scikit-learn")]
    listed = [r for r in sk if r.reason != "needs arguments"]
    boosted = [r for r in rows if not r.family.startswith("scikit-learn")]
    lines = [
        "# Model support: what exports, with what parity, how fast",
        "",
        "<!-- Generated by benchmarks/model_support.py: do not edit by hand. -->",
        "",
        f"Generated by `{COMMAND}{' --quick' if quick else ''}` in {seconds:.0f} s on "
        f"{info['cpu']} ({info['arch']}, {info['cores']} cores), Python {info['python']}; {_versions()}.",
        "",
        f"**{sum(r.with_parity for r in sk)} of the {len(listed)} scikit-learn classifiers and regressors** that "
        "build with default parameters export with full parity (every validation row: the same label, and every "
        f"probability or value within tolerance); {sum(r.exported for r in sk)} export at all "
        f"({sum(r.exported and not r.with_parity for r in sk)} with rows beyond tolerance). "
        f"{len(sk) - len(listed)} more need constructor arguments (meta-estimators). "
        f"**{sum(r.with_parity for r in boosted)} of the {len(boosted)} XGBoost, LightGBM and CatBoost models** "
        "export with full parity; single-row speed-up of the runtime over the library's own predict: "
        + ", ".join(f"{r.model} {r.speedup:.0f}×" for r in boosted if r.speedup is not None) + ".",
        "",
        "How to read it: classifiers are fitted on 75 % of breast cancer (569 rows, 30 features), regressors on "
        "75 % of diabetes (442 rows, 10 features), with default parameters (`random_state=0`); the other 25 % "
        "are the validation rows of the export's parity check (`converters.export(..., X_val=...)`). "
        "*agreement* is the label agreement (classifiers) or the share of rows within `atol=1e-4, rtol=1e-3` "
        "(regressors); *max abs diff* is over probabilities or values; *rows beyond tol.* counts rows whose "
        "difference exceeds `atol` (float32 split thresholds can move single rows). Export refuses below "
        "agreement 0.99 (`ParityPolicy`), and *why not* is then the one-line error. "
        "Latency: single-row p50 of `Runtime.predict(row)` (a float64 row, monitoring off) against the "
        "model's own `predict_proba` (classifiers) or `predict` (regressors; a native Booster's `predict`, "
        "XGBoost's `inplace_predict`) on the same rows as (1, n) "
        "arrays, alternating in blocks of 50 rows in one process after a warm-up; the boosting models have "
        "100 trees and one thread.",
        "",
        "## XGBoost, LightGBM and CatBoost",
        "",
        *_table(boosted),
        "",
        "## scikit-learn classifiers (breast cancer)",
        "",
        *_table([r for r in sk if r.task == "classification"]),
        "",
        "## scikit-learn regressors (diabetes)",
        "",
        *_table([r for r in sk if r.task == "regression"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a small subset (CI)")
    parser.add_argument("--out", type=Path, default=DOC, help="the Markdown file to write")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--timing-rows", type=int, default=None, help="single-row calls timed per model")
    args = parser.parse_args(argv)
    timing_rows = args.timing_rows or (100 if args.quick else 400)
    start = time.perf_counter()
    print("boosting libraries:", file=sys.stderr)
    rows = boosting_rows(args.quick, timing_rows)
    print("scikit-learn:", file=sys.stderr)
    rows += sklearn_rows(args.quick, timing_rows)
    args.out.write_text(render(rows, args.quick, time.perf_counter() - start), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(r) | {"speedup": r.speedup} for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
