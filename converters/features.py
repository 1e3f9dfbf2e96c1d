"""Infer a bundle's input schema from the training data.

Examples
--------
>>> import pandas as pd
>>> from converters.features import infer_input_schema
>>> frame = pd.DataFrame({"age": [30.0, None, 50.0], "city": ["lyon", "nice", "lyon"]})
>>> schema = infer_input_schema(frame, has_column_selection=True)
>>> schema.layout.value, [f.kind.value for f in schema.features]
('columns', ['numeric', 'categorical'])
>>> schema.features[0].allows_missing, schema.features[1].categories
(True, ('lyon', 'nice'))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.errors import UnsupportedModelError
from edge_runtime.serving.schema import (
    FeatureKind,
    FeatureSpec,
    InputLayout,
    InputSchema,
)

__all__ = ["TENSOR_INPUT_NAME", "infer_input_schema", "is_dataframe", "to_model_feeds"]

TENSOR_INPUT_NAME = "X"


def is_dataframe(data: Any) -> bool:
    """True for a pandas DataFrame (checked by duck typing: pandas is optional)."""
    return hasattr(data, "columns") and hasattr(data, "dtypes") and hasattr(data, "iloc")


def _is_numeric(column: Any) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(column.dtype) or is_bool_dtype(column.dtype))


def _numeric_spec(name: str, values: np.ndarray) -> FeatureSpec:
    values = values.astype(np.float64)
    finite = values[np.isfinite(values)]
    return FeatureSpec(
        name=name,
        kind=FeatureKind.NUMERIC,
        minimum=float(finite.min()) if finite.size else None,
        maximum=float(finite.max()) if finite.size else None,
        allows_missing=bool(np.isnan(values).any()),
    )


def infer_input_schema(X: Any, *, feature_names: list[str] | None = None,
                       has_column_selection: bool = False) -> InputSchema:
    """Build the input schema from training data.

    Parameters
    ----------
    X : numpy.ndarray or pandas.DataFrame
        Training features.
    feature_names : list of str, optional
        Names for an array's columns (default: the model's ``feature_names_in_``
        or ``x0``, ``x1``, ...).
    has_column_selection : bool
        The model selects columns by name (a ColumnTransformer), so each column
        must be its own ONNX input even when all are numeric.

    Returns
    -------
    InputSchema
        The tensor layout when every column is numeric and nothing selects
        columns by name; the columns layout otherwise.
    """
    if is_dataframe(X):
        specs = []
        for name in X.columns:
            column = X[name]
            if _is_numeric(column):
                specs.append(_numeric_spec(str(name), column.to_numpy(dtype=np.float64, na_value=np.nan)))
            else:
                present = column.dropna()
                categories = tuple(sorted({str(v) for v in present.tolist()}))
                specs.append(FeatureSpec(name=str(name), kind=FeatureKind.CATEGORICAL,
                                         categories=categories,
                                         allows_missing=bool(len(present) < len(column))))
        all_numeric = all(s.kind is FeatureKind.NUMERIC for s in specs)
        layout = InputLayout.TENSOR if all_numeric and not has_column_selection else InputLayout.COLUMNS
        return InputSchema(features=tuple(specs), layout=layout, tensor_name=TENSOR_INPUT_NAME)
    array = np.asarray(X)
    if array.ndim != 2:
        raise UnsupportedModelError(f"training data must be 2-D, got shape {array.shape}")
    if array.dtype.kind not in "fiub":
        raise UnsupportedModelError(
            f"training data of dtype {array.dtype} holds non-numeric values; "
            "pass a pandas DataFrame so each column keeps its own type"
        )
    names = feature_names or [f"x{i}" for i in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise UnsupportedModelError(f"{len(names)} feature names for {array.shape[1]} columns")
    specs = [_numeric_spec(str(n), array[:, i]) for i, n in enumerate(names)]
    return InputSchema(features=tuple(specs), layout=InputLayout.TENSOR, tensor_name=TENSOR_INPUT_NAME)


def to_model_feeds(X: Any, schema: InputSchema) -> Any:
    """Return ``X`` in the form :meth:`edge_runtime.Runtime.predict_batch` takes for this schema.

    A DataFrame is passed on with its columns in schema order; an array as float64.
    """
    if is_dataframe(X):
        return X[list(schema.names)]
    return np.asarray(X, dtype=np.float64)
