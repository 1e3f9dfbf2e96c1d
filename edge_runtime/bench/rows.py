"""The input rows a benchmark feeds: varied rows drawn from the reference profile, and raw feeds.

Every scenario runs on varied rows, never one repeated row, so that caches and
branch predictors see what a device sees.

Examples
--------
>>> from edge_runtime.bench.rows import reference_rows
>>> from edge_runtime.serving.schema import FeatureKind, FeatureSpec, InputLayout, InputSchema
>>> schema = InputSchema(layout=InputLayout.COLUMNS, features=(
...     FeatureSpec(name="age", kind=FeatureKind.NUMERIC, minimum=18.0, maximum=90.0),
...     FeatureSpec(name="plan", kind=FeatureKind.CATEGORICAL, categories=("basic", "pro"))))
>>> rows = reference_rows(schema, None, 3, seed=0)
>>> [sorted(row) for row in rows] == [["age", "plan"]] * 3, all(18 <= row["age"] <= 90 for row in rows)
(True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.sketches import CategoricalSketch, NumericSketch
from edge_runtime.runtime import Runtime
from edge_runtime.serving.results import plain_value
from edge_runtime.serving.schema import FeatureKind, InputLayout, InputSchema

__all__ = ["raw_feeds", "reference_rows"]


def reference_rows(schema: InputSchema, profile: Profile | None, n: int, seed: int) -> list[Any]:
    """Draw ``n`` varied rows from the reference profile, each feature from its own distribution.

    Numeric features by inverse-CDF sampling of their quantile sketch, categorical
    ones by their training frequencies. Without a profile, uniform within the
    schema's training range.

    Parameters
    ----------
    schema : InputSchema
        The bundle's input schema: feature order, kinds and layout.
    profile : Profile or None
        The bundle's reference profile.
    n : int
        How many rows.
    seed : int
        Seed of the draw.

    Returns
    -------
    list
        float64 arrays in schema order for a tensor layout, else dicts keyed by feature name.
    """
    rng = np.random.default_rng(seed)
    columns: list[np.ndarray] = []
    for spec in schema.features:
        sketch = profile.features.get(spec.name) if profile is not None else None
        if spec.kind is FeatureKind.CATEGORICAL:
            if isinstance(sketch, CategoricalSketch) and sketch.counts:
                keys = list(sketch.counts)
                weights = np.array([sketch.counts[k] for k in keys], dtype=float)
                columns.append(rng.choice(np.array(keys, dtype=object), size=n, p=weights / weights.sum()))
            else:
                columns.append(rng.choice(np.array(spec.categories or ("",), dtype=object), size=n))
        elif isinstance(sketch, NumericSketch) and sketch.count:
            columns.append(sketch.quantiles(np.sort(rng.random(n)))[rng.permutation(n)])
        elif spec.kind is FeatureKind.BOOLEAN:  # 1.0 or 0.0: a uniform draw in [0, 1] would be refused
            columns.append(rng.integers(0, 2, n).astype(np.float64))
        else:
            low = spec.minimum if spec.minimum is not None else 0.0
            high = spec.maximum if spec.maximum is not None else 1.0
            columns.append(rng.uniform(low, high, n))
    if schema.layout is InputLayout.TENSOR:
        matrix = np.column_stack(columns).astype(np.float64)
        return [matrix[i] for i in range(n)]
    # Rows read from CSV or JSON lines hold plain Python values; drawn rows look the same to the runtime.
    return [dict(zip(schema.names, (plain_value(c[i]) for c in columns))) for i in range(n)]


def raw_feeds(batch: Any, runtime: Runtime) -> dict[str, np.ndarray]:
    """What a hand-written onnxruntime caller would feed: float32 arrays, prepared in advance.

    Parameters
    ----------
    batch : array or list
        Rows as the runtime takes them.
    runtime : Runtime
        Lays the rows out exactly as its own ``predict_batch`` would.

    Returns
    -------
    dict
        Input name to array, ready for ``InferenceSession.run``.
    """
    return runtime.encode(batch).feeds
