"""The parity check: does the bundled ONNX model answer like the original?

The check runs the bundle through the device runtime itself (input encoding
included), so it covers the whole path a device takes. One number is not
enough: float32 split thresholds can send a single row down another tree
branch, so the report counts rows beyond tolerance besides the maximum.

Examples
--------
>>> from converters.parity import ParityPolicy
>>> ParityPolicy().min_agreement
0.99
>>> ParityPolicy(min_agreement=2)
Traceback (most recent call last):
...
edge_runtime.errors.ConfigError: The 'min_agreement' parameter of ParityPolicy must be a float in [0.0, 1.0]. Got 2 instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from converters.features import is_dataframe, to_model_feeds
from edge_runtime.config import check_float, check_int
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.runtime import Runtime
from edge_runtime.serving.schema import Task

__all__ = ["ParityPolicy", "check_parity", "sample_rows"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParityPolicy:
    """Tolerances and thresholds of the export parity check.

    Parameters
    ----------
    atol : float
        Absolute tolerance on a probability or predicted value.
    rtol : float
        Relative tolerance on a predicted value (regressors).
    min_agreement : float
        Export fails below this share of rows: same label (classifiers) or within
        tolerance (regressors).
    sample_rows : int
        Rows drawn from the training data when no validation set is given.
    seed : int
        Seed of that draw.
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    min_agreement: float = 0.99
    sample_rows: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        check_float("ParityPolicy", "atol", self.atol, 0.0, math.inf)
        check_float("ParityPolicy", "rtol", self.rtol, 0.0, math.inf)
        check_float("ParityPolicy", "min_agreement", self.min_agreement, 0.0, 1.0)
        check_int("ParityPolicy", "sample_rows", self.sample_rows, 1, 10**9)


def sample_rows(X: Any, n: int, seed: int) -> Any:
    """Draw up to ``n`` rows of ``X`` without replacement, in their original order."""
    total = len(X)
    if total <= n:
        return X
    index = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    return X.iloc[index] if is_dataframe(X) else np.asarray(X)[index]


def check_parity(model: Any, runtime: Runtime, X: Any, policy: ParityPolicy, *,
                 source: str) -> dict[str, Any]:
    """Compare the original model with the bundle served by ``runtime`` on ``X``.

    Returns
    -------
    dict
        The report stored in the manifest; ``passed`` says whether it met
        ``policy.min_agreement``.

    Raises
    ------
    UnsupportedModelError
        A classifier without ``predict_proba`` (nothing to compare the scores with).
    """
    result = runtime.predict_batch(to_model_feeds(X, runtime.manifest.input_schema), on_error="skip")
    served = result.rows
    X_served = X.iloc[served] if is_dataframe(X) else np.asarray(X)[served]
    report: dict[str, Any] = {
        "source": source,
        "rows": int(len(X)),
        "rejected_rows": len(result.errors),
        "atol": policy.atol,
        "rtol": policy.rtol,
        "min_agreement": policy.min_agreement,
    }
    if served.size == 0:
        report.update(agreement=0.0, passed=False, max_abs_diff=None, rows_beyond_tolerance=None)
        return report
    if is_dataframe(X_served) and not hasattr(model, "feature_names_in_"):
        # Fitted on an array: the frame's values, so that scikit-learn does not warn
        # "X has feature names, but ... was fitted without feature names".
        X_served = X_served.to_numpy()
    if runtime.task is Task.CLASSIFICATION:
        if not hasattr(model, "predict_proba"):
            raise UnsupportedModelError(
                f"{type(model).__name__} has no predict_proba, and export compares class probabilities: "
                "use probability=True (SVC), loss='log_loss' (SGDClassifier) or wrap it in CalibratedClassifierCV")
        # CatBoost's multiclass predict answers a column, shape (n, 1).
        expected_labels = np.asarray(model.predict(X_served)).reshape(-1)
        expected = np.asarray(model.predict_proba(X_served), dtype=np.float64)
        got = np.asarray(result.scores, dtype=np.float64)
        diff = np.abs(expected - got).max(axis=1)
        agree = float(np.mean([a == b for a, b in zip(expected_labels.tolist(), result.labels.tolist())]))
        beyond = int((diff > policy.atol).sum())
        report["label_agreement"] = agree
    else:
        expected = np.asarray(model.predict(X_served), dtype=np.float64).reshape(-1)
        got = np.asarray(result.labels, dtype=np.float64)
        diff = np.abs(expected - got)
        beyond = int((diff > policy.atol + policy.rtol * np.abs(expected)).sum())
        agree = 1.0 - beyond / served.size
    report.update(
        agreement=agree,
        max_abs_diff=float(diff.max()),
        rows_beyond_tolerance=beyond,
        passed=bool(agree >= policy.min_agreement),
    )
    return report
