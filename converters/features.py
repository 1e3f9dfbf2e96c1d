"""Infer a bundle's input schema from the training data, and read training CSVs the way the model needs.

A column that a fitted encoder consumes is categorical or numeric as the
encoder's categories are, not as its values look: a zip code "01000" that a
OneHotEncoder learned as a string stays the string "01000", where pandas
alone would read the number 1000.

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

A bool column (numpy or pandas bool, pandas' nullable ``boolean``, or a column of
only True/False and missing values, as pandas reads a CSV's True/False column)
is a boolean feature, which the model receives as 1.0/0.0:

>>> flags = pd.DataFrame({"age": [30.0, 40.0], "repaid": [True, False]})
>>> [f.kind.value for f in infer_input_schema(flags).features]
['numeric', 'boolean']
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import ExportError, UnsupportedModelError
from edge_runtime.serving.schema import (
    FeatureKind,
    FeatureSpec,
    InputLayout,
    InputSchema,
)

__all__ = [
    "CSV_TYPES",
    "TENSOR_INPUT_NAME",
    "EncodedColumn",
    "boolean_values",
    "csv_dtypes",
    "csv_header",
    "infer_input_schema",
    "is_dataframe",
    "read_csv_frame",
    "to_model_feeds",
]

TENSOR_INPUT_NAME = "X"

#: The types a CSV column can be read as (``--dtype COL=TYPE``).
CSV_TYPES = ("str", "float", "int")


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodedColumn:
    """An input column that a fitted encoder consumes (:func:`converters.sklearn.encoded_columns`).

    Parameters
    ----------
    encoder : str
        The encoder's class name, for messages.
    strings : bool
        Its categories are strings (the column is categorical); otherwise numbers
        (the column is numeric, and the encoder compares numbers).
    """

    encoder: str
    strings: bool

    @property
    def fitted_on(self) -> str:
        """``"strings"`` or ``"numbers"``, for messages."""
        return "strings" if self.strings else "numbers"


def is_dataframe(data: Any) -> bool:
    """True for a pandas DataFrame (checked by duck typing: pandas is optional)."""
    return hasattr(data, "columns") and hasattr(data, "dtypes") and hasattr(data, "iloc")


def _is_numeric(column: Any) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(column.dtype) or is_bool_dtype(column.dtype))


def _is_boolean(column: Any) -> bool:
    """A bool dtype, or an object column whose values are all True/False or missing (and one at least is not)."""
    from pandas.api.types import is_bool_dtype

    if is_bool_dtype(column.dtype):
        return True
    if column.dtype != object:
        return False
    present = column.dropna().tolist()
    return bool(present) and all(isinstance(v, (bool, np.bool_)) for v in present)


def boolean_values(column: Any) -> np.ndarray:
    """A boolean column (Series or array) as float64 1.0/0.0, NaN where a value is missing.

    >>> import pandas as pd
    >>> boolean_values(pd.Series([True, None, False], dtype="boolean")).tolist()
    [1.0, nan, 0.0]
    """
    if hasattr(column, "to_numpy"):
        try:
            return np.asarray(column.to_numpy(dtype=np.float64, na_value=np.nan))
        except (TypeError, ValueError):
            column = column.to_numpy(dtype=object)
    array = np.asarray(column)
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    return np.array([np.nan if _is_missing(v) else float(v) for v in array.tolist()], dtype=np.float64)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return type(value).__name__ == "NAType"


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
                       has_column_selection: bool = False,
                       encoded: Mapping[str, EncodedColumn] | None = None) -> InputSchema:
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
    encoded : mapping of str to EncodedColumn, optional
        The DataFrame columns that fitted encoders consume: each must hold what
        its encoder was fitted on, strings or numbers.

    Returns
    -------
    InputSchema
        The tensor layout when no column is categorical and nothing selects
        columns by name; the columns layout otherwise. Bool columns are boolean
        features (an array of dtype bool: every column).

    Raises
    ------
    ExportError
        An encoded column holds numbers where its encoder was fitted on strings,
        or the other way round.
    UnsupportedModelError
        An array that is not 2-D or not numeric.
    """
    if is_dataframe(X):
        specs = []
        for name in X.columns:
            column = X[name]
            if encoded and str(name) in encoded:
                _check_encoded(str(name), column, encoded[str(name)])
            if _is_boolean(column):
                specs.append(FeatureSpec(name=str(name), kind=FeatureKind.BOOLEAN,
                                         allows_missing=bool(column.isna().any())))
            elif _is_numeric(column):
                specs.append(_numeric_spec(str(name), column.to_numpy(dtype=np.float64, na_value=np.nan)))
            else:
                present = column.dropna()
                categories = tuple(sorted({str(v) for v in present.tolist()}))
                specs.append(FeatureSpec(name=str(name), kind=FeatureKind.CATEGORICAL,
                                         categories=categories,
                                         allows_missing=bool(len(present) < len(column))))
        all_numeric = all(s.kind is not FeatureKind.CATEGORICAL for s in specs)  # booleans are floats too
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
    if array.dtype.kind == "b":
        specs = [FeatureSpec(name=str(n), kind=FeatureKind.BOOLEAN) for n in names]
    else:
        specs = [_numeric_spec(str(n), array[:, i]) for i, n in enumerate(names)]
    return InputSchema(features=tuple(specs), layout=InputLayout.TENSOR, tensor_name=TENSOR_INPUT_NAME)


def _check_encoded(name: str, column: Any, encoded: EncodedColumn) -> None:
    numeric = _is_numeric(column)
    if encoded.strings and numeric:
        raise ExportError(
            f"column '{name}' holds numbers ({column.dtype}) but the model's {encoded.encoder} was fitted on "
            f"strings; pass it as strings, e.g. pandas.read_csv(..., dtype={{'{name}': str}}), which keeps "
            "leading zeros such as '01000'")
    if not encoded.strings and not numeric:
        present = column.dropna()
        example = f" (e.g. {present.iloc[0]!r})" if len(present) else ""
        raise ExportError(f"column '{name}' holds text{example} but the model's {encoded.encoder} was fitted "
                          "on numbers")


def csv_dtypes(encoded: Mapping[str, EncodedColumn], columns: Collection[str], *,
               categorical: Collection[str] = (), dtypes: Mapping[str, str] | None = None,
               source: str | Path = "the CSV") -> dict[str, str]:
    """How to read each column of a training CSV whose type is known: ``"str"``, ``"float"`` or ``"int"``.

    Parameters
    ----------
    encoded : mapping of str to EncodedColumn
        The columns the model's encoders consume: those fitted on strings are read
        as ``"str"``; those fitted on numbers are left to pandas unless ``dtypes``
        says otherwise.
    columns : collection of str
        The CSV's header.
    categorical : collection of str
        Columns to read as strings, for models whose encoders cannot tell
        (CLI ``--categorical``).
    dtypes : mapping of str to str, optional
        Column to one of :data:`CSV_TYPES` (CLI ``--dtype COL=TYPE``).
    source : str or Path
        The CSV, for messages.

    Returns
    -------
    dict
        Column to type, for :func:`read_csv_frame`.

    Raises
    ------
    ExportError
        A named column is not in the CSV, a type is unknown, or the options
        contradict each other or the model's encoder; the message names the column.

    Examples
    --------
    >>> from converters.features import EncodedColumn, csv_dtypes
    >>> encoded = {"zip": EncodedColumn(encoder="OneHotEncoder", strings=True)}
    >>> csv_dtypes(encoded, ["zip", "age", "code"], categorical=["code"])
    {'zip': 'str', 'code': 'str'}
    >>> csv_dtypes(encoded, ["zip", "age"], dtypes={"zip": "int"})
    Traceback (most recent call last):
    ...
    edge_runtime.errors.ExportError: column 'zip': --dtype zip=int contradicts the model's OneHotEncoder, which was fitted on strings
    """
    requested: dict[str, str] = {}
    for name, kind in (dtypes or {}).items():
        if kind not in CSV_TYPES:
            raise ExportError(f"column '{name}': type '{kind}' is not one of {', '.join(CSV_TYPES)}")
        requested[name] = kind
    for name in categorical:
        if requested.get(name, "str") != "str":
            raise ExportError(f"column '{name}': --categorical {name} and --dtype {name}={requested[name]} "
                              "contradict each other")
        requested[name] = "str"
    present = set(columns)
    for name, kind in requested.items():
        given_as_dtype = name in (dtypes or {})
        if name not in present:
            close = difflib.get_close_matches(name, list(columns), n=1)
            raise ExportError(f"{'--dtype' if given_as_dtype else '--categorical'} column '{name}' is not in "
                              f"{source}" + (f" (did you mean '{close[0]}'?)" if close else ""))
        if name in encoded and (kind == "str") != encoded[name].strings:
            option = f"--dtype {name}={kind}" if given_as_dtype else f"--categorical {name}"
            raise ExportError(f"column '{name}': {option} contradicts the model's {encoded[name].encoder}, "
                              f"which was fitted on {encoded[name].fitted_on}")
    found = {name: "str" for name, column in encoded.items() if column.strings and name in present}
    return found | requested


def csv_header(path: str | Path) -> list[str]:
    """The column names of a CSV's header row.

    Raises
    ------
    ExportError
        The file is empty or not a CSV pandas can parse.
    """
    import pandas as pd

    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except ValueError as exc:  # pandas' EmptyDataError and ParserError are ValueErrors, and so is UnicodeDecodeError
        raise ExportError(f"{path} cannot be read as a CSV: {' '.join(str(exc).split())}") from exc


def read_csv_frame(path: str | Path, dtypes: Mapping[str, str] | None = None) -> Any:
    """Read a CSV with a header row into a DataFrame, the columns in ``dtypes`` as their type.

    A ``"str"`` column keeps every value as written (``"01000"``, ``"NA"``,
    ``"null"``); only an empty cell is missing, as on the device. The other
    columns are read by pandas as usual.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    dtypes : mapping of str to str, optional
        Column to ``"str"``, ``"float"`` or ``"int"``, from :func:`csv_dtypes`.
        A column that is not in the file is ignored.

    Raises
    ------
    ExportError
        A value cannot be read as its column's type (the message names the
        column, the row and the value), or the file is not a CSV pandas can parse.
    """
    import pandas as pd

    header = csv_header(path)
    typed = {name: kind for name, kind in (dtypes or {}).items() if name in header}
    try:
        # Read the typed columns as text first: pandas' own conversion names neither column nor value.
        frame = pd.read_csv(path, dtype={name: str for name in typed})
        strings = [name for name, kind in typed.items() if kind == "str"]
        if strings:
            # A second pass for the string columns: pandas' default missing-value words
            # ("NA", "null", "None", ...) are real categories to the device, which treats
            # only an empty cell as missing.
            exact = pd.read_csv(path, usecols=strings, dtype=str, keep_default_na=False, na_values=[""])
            for name in strings:
                frame[name] = exact[name]
    except ValueError as exc:
        raise ExportError(f"{path} cannot be read as a CSV: {' '.join(str(exc).split())}") from exc
    for name, kind in typed.items():
        if kind != "str":
            frame[name] = _to_number(frame[name], name, kind, path)
    return frame


def _to_number(column: Any, name: str, kind: str, path: str | Path) -> Any:
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if kind == "int":
        bad = bad | numbers.isna() | (numbers != numbers.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = column.iloc[row]
        held = "a missing value (read it as float to allow them)" if pd.isna(value) else repr(value)
        raise ExportError(f"column '{name}' of {path} is read as {kind}, but row {row + 1} holds {held}")
    return numbers.astype(np.int64 if kind == "int" else np.float64)


def to_model_feeds(X: Any, schema: InputSchema) -> Any:
    """Return ``X`` in the form :meth:`edge_runtime.Runtime.predict_batch` takes for this schema.

    A DataFrame is passed on with its columns in schema order; an array as float64.
    """
    if is_dataframe(X):
        return X[list(schema.names)]
    return np.asarray(X, dtype=np.float64)
