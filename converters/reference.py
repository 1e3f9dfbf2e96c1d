"""The training-data reference profile stored in a bundle's manifest.

Per feature: count and missing; for numeric features mean, standard deviation,
min, max and a few quantiles; for categorical ones the most frequent categories.
The monitoring side compares live traffic against it.

Examples
--------
>>> import numpy as np
>>> from converters.reference import profile_features
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema
>>> schema = InputSchema(features=(FeatureSpec(name="x"),))
>>> prof = profile_features(np.array([[1.0], [2.0], [3.0], [np.nan]]), schema)
>>> prof["rows"], prof["features"]["x"]["missing"], prof["features"]["x"]["mean"]
(4, 1, 2.0)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from converters.features import boolean_values, is_dataframe
from edge_runtime.monitoring.data_profile import Profile, is_counted
from edge_runtime.monitoring.sketches import REFERENCE_K
from edge_runtime.serving.results import BatchResult
from edge_runtime.serving.schema import (
    FeatureKind,
    FeatureSpec,
    InputSchema,
    OutputSchema,
    Task,
    canonical_label,
)

__all__ = ["QUANTILES", "TOP_CATEGORIES", "profile_features", "reference_profile", "target_profile"]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 20


def _column(X: Any, index: int, spec: FeatureSpec) -> np.ndarray:
    column: Any = X[spec.name] if is_dataframe(X) else np.asarray(X)[:, index]
    if spec.kind is FeatureKind.BOOLEAN:
        return boolean_values(column)  # 1.0/0.0, as the model and the monitor see it
    return np.asarray(column.to_numpy()) if is_dataframe(X) else np.asarray(column)


def profile_features(X: Any, schema: InputSchema) -> dict[str, Any]:
    """Summarise each feature of the training data.

    Parameters
    ----------
    X : numpy.ndarray or pandas.DataFrame
    schema : InputSchema

    Returns
    -------
    dict
        ``{"rows": n, "features": {name: {...}}}``; the exporter adds
        ``sketches`` pointing at the bundle's binary reference profile.
    """
    features: dict[str, Any] = {}
    for i, spec in enumerate(schema.features):
        column = _column(X, i, spec)
        if spec.kind is not FeatureKind.CATEGORICAL:
            values = np.asarray(column, dtype=np.float64)
            present = values[~np.isnan(values)]
            entry: dict[str, Any] = {"kind": spec.kind.value, "count": int(values.size),
                                     "missing": int(values.size - present.size)}
            if present.size:
                entry.update(
                    mean=float(present.mean()), std=float(present.std()),
                    min=float(present.min()), max=float(present.max()),
                    quantiles={str(q): float(v) for q, v in zip(QUANTILES, np.quantile(present, QUANTILES))},
                )
            features[spec.name] = entry
        else:
            items = [v for v in column.tolist() if v is not None and v == v]  # v == v drops NaN
            counts = Counter(str(v) for v in items)
            top = counts.most_common(TOP_CATEGORIES)
            features[spec.name] = {
                "kind": "categorical", "count": len(column), "missing": len(column) - len(items),
                "top": dict(top), "other": len(items) - sum(c for _, c in top),
                "distinct": len(counts),
            }
    return {"rows": int(len(X)), "features": features}


def reference_profile(X: Any, schema: InputSchema, outputs: OutputSchema, answers: BatchResult | None, *,
                      k: int = REFERENCE_K) -> Profile:
    """Sketch every feature of the training data and the model's answers, for drift detection.

    Numeric features holding few distinct integers (booleans, small counts; see
    :func:`~edge_runtime.monitoring.data_profile.is_counted`) are counted
    exactly; the live windows follow the reference. A classifier's class
    probabilities are sketched too, for score drift.

    Parameters
    ----------
    X : numpy.ndarray or pandas.DataFrame
        Training features.
    schema, outputs : InputSchema, OutputSchema
    answers : BatchResult or None
        The bundled model's answers on reference rows (held-out rows when the
        user gave them: on training rows, scores are more confident than in use).
    k : int
        KLL accuracy parameter of the numeric sketches: the default
        (:data:`~edge_runtime.monitoring.sketches.REFERENCE_K`) keeps the
        reference's own error far below the live windows'.

    Examples
    --------
    >>> import numpy as np
    >>> from edge_runtime.serving.schema import FeatureSpec
    >>> schema = InputSchema(features=(FeatureSpec(name="x"),))
    >>> outputs = OutputSchema(task=Task.REGRESSION, score_output="y")
    >>> reference_profile(np.array([[0.5], [2.25]]), schema, outputs, None).features["x"].count
    2
    >>> reference_profile(np.array([[1.0], [0.0]]), schema, outputs, None).features["x"].counts  # counted
    {'0': 1, '1': 1}
    """
    columns: list[Any] = []
    counted: list[str] = []
    for i, spec in enumerate(schema.features):
        column = _column(X, i, spec)
        if spec.kind is not FeatureKind.CATEGORICAL:
            values = np.asarray(column, dtype=np.float32)
            columns.append(values)
            if spec.kind is FeatureKind.BOOLEAN or is_counted(values):
                counted.append(spec.name)
        else:
            columns.append([None if v is None or v != v else str(v) for v in column.tolist()])
    profile = Profile.for_schema(schema, outputs, k=k, counted=counted)
    profile.update_columns(columns)
    if answers is not None and len(answers):
        if outputs.task is Task.CLASSIFICATION and answers.scores is not None:
            profile.update_outputs(answers.labels.tolist(), answers.scores.max(axis=1), answers.scores)
        else:
            profile.update_outputs(None, np.asarray(answers.labels, dtype=np.float32))
    return profile


def target_profile(y: Any, *, classification: bool = False) -> dict[str, Any] | None:
    """Summarise the training target: mean and spread of a numeric one, counts of a categorical one.

    A classifier's target is counted by class, each keyed by the text of its canonical
    label (:func:`~edge_runtime.serving.schema.canonical_label`), as the monitoring counts are.

    >>> target_profile([0.5, 1.5])
    {'kind': 'numeric', 'count': 2, 'mean': 1.0, 'std': 0.5}
    >>> target_profile(["a", "b", "a"])["classes"]
    {'a': 2, 'b': 1}
    >>> target_profile([1.0, 0.0, 1.0], classification=True)["classes"]
    {'0': 1, '1': 2}
    """
    if y is None:
        return None
    values = np.asarray(y).reshape(-1)
    if classification:
        by_class = Counter(str(canonical_label(v)) for v in values.tolist())
        return {"kind": "categorical", "count": int(values.size), "classes": dict(sorted(by_class.items()))}
    if values.dtype.kind in "fc":
        return {"kind": "numeric", "count": int(values.size), "mean": float(np.nanmean(values)),
                "std": float(np.nanstd(values))}
    labels, counts = np.unique(values.astype(str), return_counts=True)
    return {"kind": "categorical", "count": int(values.size),
            "classes": {str(k): int(c) for k, c in zip(labels, counts)}}
