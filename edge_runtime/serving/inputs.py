"""Turning rows into model inputs, checking them against the schema on the way.

Single rows go through an optimistic fast path: pack the values straight into a
preallocated float32 buffer, then one cheap finiteness test. Only when that
fails does the slow path look value by value to name the feature at fault.
Batches are checked column by column, so one bad row costs its own rejection
and never the batch.

A finite number too large for float32 (beyond ±3.4028235e38) is refused with
:class:`~edge_runtime.errors.OutOfRangeValueError` on every path, whatever the
non-finite policy: the cast would turn it into an infinity the input did not have.

A boolean feature reaches the model as float32 1.0 or 0.0 and accepts True/False,
true/false, TRUE/FALSE, 1/0 (as numbers or text, ``1.0``/``0.0`` too) and numpy
bools; anything else is refused naming the feature and the value. A missing value
(None, NaN, an empty CSV cell) follows the feature's missing policy, as for numbers.

Examples
--------
>>> import numpy as np
>>> from edge_runtime.config import InputPolicy
>>> from edge_runtime.serving.inputs import InputEncoder
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema
>>> schema = InputSchema(features=(FeatureSpec(name="a"), FeatureSpec(name="b")))
>>> encoder = InputEncoder(schema, InputPolicy())
>>> buf = np.zeros(2, dtype=np.float32)
>>> encoder.fill_tensor_row({"a": 1.5, "b": 2}, buf)
>>> buf
array([1.5, 2. ], dtype=float32)
>>> encoder.fill_tensor_row({"a": 1.5, "b": "high"}, buf)
Traceback (most recent call last):
...
edge_runtime.errors.InvalidValueError: feature 'b': value 'high' is not a number
>>> encoder.fill_tensor_row({"a": 1e300, "b": 2}, buf)
Traceback (most recent call last):
...
edge_runtime.errors.OutOfRangeValueError: feature 'a': value 1e+300 is outside the float32 range the model reads (±3.4e38)
>>> batch = encoder.encode_batch([[1, 2], [3, float("inf")], [5, 6]])
>>> batch.rows.tolist(), [str(e) for e in batch.errors]
([0, 2], ["row 1: feature 'b': value inf is not finite (NaN or infinity is rejected by the input policy)"])
>>> from edge_runtime.serving.schema import FeatureKind
>>> flags = InputEncoder(InputSchema(features=(FeatureSpec(name="a"),
...                                              FeatureSpec(name="ok", kind=FeatureKind.BOOLEAN))), InputPolicy())
>>> flags.fill_tensor_row({"a": 1.5, "ok": "False"}, buf)
>>> buf
array([1.5, 0. ], dtype=float32)
>>> flags.fill_tensor_row({"a": 1.5, "ok": "yes"}, buf)
Traceback (most recent call last):
...
edge_runtime.errors.InvalidValueError: feature 'ok': value 'yes' is not a boolean (True/False, true/false or 1/0)
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.config import InputPolicy, NonFinitePolicy, UnseenCategoryPolicy
from edge_runtime.errors import (
    FeatureCountError,
    InvalidValueError,
    MissingFeatureError,
    NonFiniteValueError,
    OutOfRangeValueError,
    SchemaError,
    UnknownFeatureError,
    UnseenCategoryError,
)
from edge_runtime.serving.results import plain_value
from edge_runtime.serving.schema import (
    FeatureKind,
    FeatureSpec,
    InputLayout,
    InputSchema,
)

__all__ = ["EncodedBatch", "InputEncoder"]

_ABSENT = object()

# The smallest magnitude that float32 rounds to infinity: 2**128 - 2**103, half a
# step above the largest float32 (3.4028235e38). Below it a value rounds to a finite float32.
_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103

# Numpy rows of these types are copied with numpy: none of their values can overflow float32.
_NARROW_TYPES: frozenset[type] = frozenset({
    np.float32, np.float16, np.bool_, np.int8, np.int16, np.int32, np.int64, np.longlong,
    np.uint8, np.uint16, np.uint32, np.uint64, np.ulonglong})

# Longer values are shown cut short in error messages: a 100 KB CSV field must not fill the terminal.
_SHOWN_CHARS = 60

# What a boolean feature accepts, and the float32 value the model gets for it. Being a
# dict, it also matches True, 1, 1.0 and numpy's bools and numbers, which hash and
# compare equal to 1 (or 0): one lookup serves every type.
_BOOLEAN_VALUES: dict[Any, float] = {
    True: 1.0, False: 0.0,
    "True": 1.0, "true": 1.0, "TRUE": 1.0, "1": 1.0, "1.0": 1.0,
    "False": 0.0, "false": 0.0, "FALSE": 0.0, "0": 0.0, "0.0": 0.0,
}
_BOOLEAN_EXPECTED = "a boolean (True/False, true/false or 1/0)"


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """The model feeds for the good rows of a batch, and what was wrong with the rest.

    Attributes
    ----------
    feeds : dict of str to numpy.ndarray
        Inputs for the good rows only, in their original order.
    rows : numpy.ndarray
        Indices (into the submitted batch) of the rows in ``feeds``.
    errors : list of SchemaError
        One error per rejected row, each with ``row`` set.
    """

    feeds: dict[str, np.ndarray]
    rows: np.ndarray
    errors: list[SchemaError]


class InputEncoder:
    """Checks rows against an :class:`InputSchema` and lays them out for the model.

    Not thread-safe: single rows reuse preallocated buffers. Use one per thread.

    Parameters
    ----------
    schema : InputSchema
    policy : InputPolicy
    """

    def __init__(self, schema: InputSchema, policy: InputPolicy) -> None:
        self.schema = schema
        self.policy = policy
        self.names = schema.names
        self.width = len(schema.features)
        self._index = {name: i for i, name in enumerate(self.names)}
        # itemgetter of one key returns the value, not a 1-tuple.
        getter = operator.itemgetter(*self.names) if self.names else (lambda row: ())
        self._pick: Callable[[Mapping[str, Any]], Any] = (
            getter if self.width != 1 else (lambda row: (getter(row),)))
        self._categories = {
            f.name: frozenset(f.categories)
            for f in schema.features
            if f.kind is FeatureKind.CATEGORICAL
        }
        self._allow_non_finite = policy.non_finite is NonFinitePolicy.ALLOW
        self._finite_mask = np.empty(self.width, dtype=bool)
        # Standard-size float32 ('=' prefix): packing refuses a finite value beyond float32
        # with OverflowError, where a numpy cast (or struct's native 'f') makes it inf and
        # warns. Packing a tuple of floats also costs half of numpy's slice assignment.
        self._pack_into: Callable[..., None] = struct.Struct(f"={self.width}f").pack_into
        self._allow_unseen = policy.unseen_category is UnseenCategoryPolicy.ALLOW
        # Boolean features (their positions): a value given for one must be 0 or 1 (or missing).
        self._booleans = tuple(i for i, f in enumerate(schema.features) if f.kind is FeatureKind.BOOLEAN)

    # ----------------------------------------------------------------- one row
    def fill_tensor_row(self, row: Any, out: np.ndarray) -> None:
        """Write one row of a tensor-layout model into ``out`` (1-D float32).

        Parameters
        ----------
        row : numpy.ndarray, sequence or mapping
            Values in schema order, or a mapping of feature name to value.
        out : numpy.ndarray
            Buffer of shape (n_features,), overwritten.

        Raises
        ------
        SchemaError
            A subclass naming the feature and the value.
        """
        # The numpy check comes first: isinstance against the Mapping ABC is the slower test.
        if isinstance(row, np.ndarray):
            array = row[0] if row.ndim == 2 and row.shape[0] == 1 else row
            if array.shape != (self.width,):
                raise FeatureCountError(self.width, int(array.size))
            if array.dtype.type in _NARROW_TYPES:
                np.copyto(out, array, casting="unsafe")
                if self._booleans:
                    self._check_booleans(out, array)
                if not self._allow_non_finite:
                    self._check_buffer(out, array)
                return
            # float64 above all: packed like a list, so a value beyond float32 raises
            # instead of becoming inf with a numpy RuntimeWarning.
            values: Any = array.tolist()
            python_floats = array.dtype.type is np.float64
        else:
            if isinstance(row, Mapping):
                if len(row) != self.width:
                    self._raise_for_keys(row)
                try:
                    values = self._pick(row)
                except KeyError:
                    self._raise_for_keys(row)
            else:
                try:
                    count = len(row)
                except TypeError:
                    raise _not_a_row(row) from None
                if count != self.width:
                    if isinstance(row, (str, bytes)):
                        raise _not_a_row(row)
                    raise FeatureCountError(self.width, count)
                values = row
            python_floats = False
        try:
            self._pack_into(out, 0, *values)
        except (struct.error, OverflowError, TypeError, ValueError):
            # None, numeric strings, or a value beyond float32: the slow path names it or converts.
            self._fill_converted(values, out)
            return
        if self._booleans:
            self._check_booleans(out, values)
        if not self._allow_non_finite:
            # NaN or an infinity makes the sum non-finite, and no float32 value can
            # make it overflow. sum() of plain floats is the cheapest test (2.5x less
            # than numpy's isfinite + count_nonzero on 30 values); fsum() takes any
            # number without numpy scalar arithmetic, which warns on overflow.
            try:
                total = sum(values) if python_floats else math.fsum(values)
            except ValueError:  # fsum of inf and -inf
                total = math.nan
            if total - total != 0.0:
                self._check_finite(out, values)

    def columns_row_feeds(self, row: Any) -> dict[str, np.ndarray]:
        """Return per-column feeds (each of shape (1, 1)) for one row of a columns-layout model."""
        if isinstance(row, Mapping):
            if len(row) != self.width:
                self._raise_for_keys(row)
            try:
                values = [row[name] for name in self.names]
            except KeyError:
                self._raise_for_keys(row)
        else:
            values = _row_values(row)
            if len(values) != self.width:
                raise FeatureCountError(self.width, len(values))
        feeds = {}
        for spec, value in zip(self.schema.features, values):
            if spec.kind is FeatureKind.CATEGORICAL:
                feeds[spec.name] = np.array([[self._category(spec, value)]], dtype=object)
            else:
                feeds[spec.name] = np.array([[self._number(spec, value)]], dtype=np.float32)
        return feeds

    # ------------------------------------------------------------------ batch
    def encode_batch(self, rows: Any) -> EncodedBatch:
        """Check a batch and build feeds for its good rows.

        Parameters
        ----------
        rows : 2-D numpy.ndarray, pandas.DataFrame, or sequence of rows
            Rows may be sequences in schema order or mappings by feature name.

        Raises
        ------
        SchemaError
            When the batch as a whole does not fit (wrong width of a 2-D array,
            missing or unknown DataFrame columns). Problems of single rows are
            reported in :attr:`EncodedBatch.errors` instead.
        """
        if hasattr(rows, "columns") and hasattr(rows, "to_numpy"):
            columns = self._dataframe_columns(rows)
            n_rows = len(rows)
            row_errors: dict[int, SchemaError] = {}
        elif isinstance(rows, np.ndarray):
            if rows.ndim == 1:
                rows = rows.reshape(1, -1)
            if rows.ndim != 2 or rows.shape[1] != self.width:
                raise FeatureCountError(self.width, int(rows.shape[-1]) if rows.ndim else 0)
            if self.schema.layout is InputLayout.TENSOR and rows.dtype.kind in "fiub":
                return self._encode_numeric_matrix(rows)
            columns = [rows[:, i] for i in range(self.width)]
            n_rows = rows.shape[0]
            row_errors = {}
        else:
            columns, n_rows, row_errors = self._sequence_columns(rows)
        return self._encode_columns(columns, n_rows, row_errors)

    def _encode_numeric_matrix(self, rows: np.ndarray) -> EncodedBatch:
        # A value beyond float32 becomes inf here; it is found below and named, never warned about.
        with np.errstate(over="ignore"):
            matrix = rows.astype(np.float32)
        errors: list[SchemaError] = []
        good = np.arange(matrix.shape[0])
        suspect: np.ndarray | None = None
        # One reduction over the whole matrix first: the per-row one costs 5x more
        # and is needed only when something is not finite.
        if not np.isfinite(matrix).all():
            if self._allow_non_finite:
                suspect = np.isinf(matrix) & np.isfinite(rows)  # only an overflow is refused
            else:
                suspect = ~np.isfinite(matrix)
        if self._booleans:
            # Compared as given: a float32 cast would round 1.0000001 to 1.
            booleans = list(self._booleans)
            given = rows[:, booleans]
            no_boolean = np.zeros(matrix.shape, dtype=bool)
            no_boolean[:, booleans] = (given != 0) & (given != 1)
            suspect = no_boolean if suspect is None else suspect | no_boolean
        bad_rows = np.flatnonzero(suspect.any(axis=1)) if suspect is not None else None
        if suspect is not None and bad_rows is not None and bad_rows.size:
            keep = np.ones(matrix.shape[0], dtype=bool)
            for r in bad_rows.tolist():
                try:
                    for i in np.flatnonzero(suspect[r]).tolist():
                        self._number(self.schema.features[i], rows[r, i])  # raises what is wrong, if anything
                except SchemaError as exc:
                    errors.append(exc.with_row(r))
                    keep[r] = False
            good = np.flatnonzero(keep)
            matrix = matrix[keep]
        return EncodedBatch({self.schema.tensor_name: matrix}, good, errors)

    def _dataframe_columns(self, frame: Any) -> list[np.ndarray]:
        present = [str(c) for c in frame.columns]
        for name in present:
            if name not in self._index:
                raise UnknownFeatureError(name)
        for name in self.names:
            if name not in present:
                raise MissingFeatureError(name)
        return [frame[name].to_numpy() for name in self.names]

    def _sequence_columns(self, rows: Sequence[Any]) -> tuple[list[np.ndarray], int, dict[int, SchemaError]]:
        rows = list(rows)
        errors: dict[int, SchemaError] = {}
        table: list[list[Any]] = [[None] * len(rows) for _ in range(self.width)]
        for r, row in enumerate(rows):
            try:
                if isinstance(row, Mapping):
                    if len(row) != self.width or any(name not in row for name in self.names):
                        self._raise_for_keys(row)
                    values = [row[name] for name in self.names]
                else:
                    values = _row_values(row)
                    if len(values) != self.width:
                        raise FeatureCountError(self.width, len(values))
            except SchemaError as exc:
                errors[r] = exc.with_row(r)
                continue
            for c, value in enumerate(values):
                table[c][r] = value
        # fromiter, not np.array: a value that is itself a list must stay one cell, not become a dimension.
        columns = [np.fromiter(col, dtype=object, count=len(rows)) for col in table]
        return columns, len(rows), errors

    def _encode_columns(self, columns: list[np.ndarray], n_rows: int,
                        errors: dict[int, SchemaError]) -> EncodedBatch:
        encoded: list[np.ndarray] = []
        for spec, column in zip(self.schema.features, columns):
            if spec.kind is FeatureKind.CATEGORICAL:
                encoded.append(self._category_column(spec, column, errors))
            elif spec.kind is FeatureKind.BOOLEAN:
                encoded.append(self._boolean_column(spec, column, errors))
            else:
                encoded.append(self._number_column(spec, column, errors))
        keep = np.ones(n_rows, dtype=bool)
        keep[list(errors)] = False
        good = np.flatnonzero(keep)
        if self.schema.layout is InputLayout.TENSOR:
            matrix = np.column_stack(encoded).astype(np.float32) if encoded else np.zeros((n_rows, 0), np.float32)
            feeds = {self.schema.tensor_name: np.ascontiguousarray(matrix[keep])}
        else:
            feeds = {name: col[keep].reshape(-1, 1) for name, col in zip(self.names, encoded)}
        ordered = [errors[r] for r in sorted(errors)]
        return EncodedBatch(feeds, good, ordered)

    def _number_column(self, spec: FeatureSpec, column: np.ndarray,
                       errors: dict[int, SchemaError]) -> np.ndarray:
        try:
            if column.dtype.kind not in "fiubOUS":
                raise TypeError(column.dtype)  # complex, dates: value by value
            # A value beyond float32 becomes inf here; it is found below and named, never warned about.
            with np.errstate(over="ignore"):
                values = np.asarray(column, dtype=np.float32)
        except (ValueError, TypeError, OverflowError, np.exceptions.ComplexWarning):
            # ComplexWarning: a numpy complex scalar in an object column, when warnings are errors.
            values = np.zeros(len(column), dtype=np.float32)
            for r, value in enumerate(column):
                if r in errors:
                    continue
                try:
                    values[r] = self._number(spec, value)
                except SchemaError as exc:
                    errors[r] = exc.with_row(r)
            return values
        suspect = np.isinf(values) if self._allow_non_finite else ~np.isfinite(values)
        for r in np.flatnonzero(suspect).tolist():
            if r in errors:
                continue
            try:
                self._number(spec, column[r])  # raises what is wrong with the value, if anything
            except SchemaError as exc:
                errors[r] = exc.with_row(r)
        return values

    def _boolean_column(self, spec: FeatureSpec, column: np.ndarray,
                        errors: dict[int, SchemaError]) -> np.ndarray:
        if column.dtype.kind == "b":
            return np.asarray(column, dtype=np.float32)
        suspect: Iterable[int]
        if column.dtype.kind in "iuf":
            # Compared as given, not after a float32 cast that would round 1.0000001 to 1.
            values = np.asarray(column == 1, dtype=np.float32)
            suspect = np.flatnonzero((column != 0) & (column != 1)).tolist()
        else:
            values = np.zeros(len(column), dtype=np.float32)
            suspect = range(len(column))
        for r in suspect:
            if r in errors:
                continue
            try:
                values[r] = self._boolean(spec, column[r])
            except SchemaError as exc:
                errors[r] = exc.with_row(r)
        return values

    def _category_column(self, spec: FeatureSpec, column: np.ndarray,
                         errors: dict[int, SchemaError]) -> np.ndarray:
        values = np.empty(len(column), dtype=object)
        for r, value in enumerate(column):
            if r in errors:
                values[r] = ""
                continue
            try:
                values[r] = self._category(spec, value)
            except SchemaError as exc:
                errors[r] = exc.with_row(r)
                values[r] = ""
        return values

    # ------------------------------------------------------------- diagnosis
    def _number(self, spec: FeatureSpec, value: Any) -> float:
        """The value as a float, or the SchemaError that names what is wrong with it."""
        if spec.kind is FeatureKind.BOOLEAN:
            return self._boolean(spec, value)
        if value is None:
            number = math.nan
        elif isinstance(value, (complex, np.complexfloating)):
            raise _value_error(InvalidValueError, spec.name, value, "a number")
        elif isinstance(value, (str, bytes, int, float, np.number, np.bool_, bool)):
            try:
                number = float(value)
            except ValueError as exc:
                raise _value_error(InvalidValueError, spec.name, value, "a number") from exc
            except OverflowError as exc:  # an int beyond even float64
                raise _value_error(OutOfRangeValueError, spec.name, value) from exc
        else:
            raise _value_error(InvalidValueError, spec.name, value, "a number")
        if not math.isfinite(number):
            if not self._allow_non_finite and not (spec.allows_missing and math.isnan(number)):
                raise _value_error(NonFiniteValueError, spec.name, value)
        elif abs(number) >= _FLOAT32_OVERFLOW:
            raise _value_error(OutOfRangeValueError, spec.name, value)
        return number

    def _boolean(self, spec: FeatureSpec, value: Any) -> float:
        """A boolean feature's value as 1.0 or 0.0 (NaN when missing), or the SchemaError naming it."""
        try:
            number = _BOOLEAN_VALUES.get(value)
        except TypeError:  # unhashable: a list, a dict
            number = None
        if number is not None:
            return number
        if _is_missing(value):
            if not (self._allow_non_finite or spec.allows_missing):
                raise _value_error(NonFiniteValueError, spec.name, value)
            return math.nan
        raise _value_error(InvalidValueError, spec.name, value, _BOOLEAN_EXPECTED)

    def _check_booleans(self, out: np.ndarray, values: Any) -> None:
        """Raise for a boolean feature given a number other than 0 or 1 (2, 0.5, inf), or NaN the policy refuses.

        The given values are compared, not the packed ones: float32 rounds 1.0000001 to 1.
        """
        for i in self._booleans:
            value = values[i]
            if value != 0 and value != 1:
                out[i] = self._boolean(self.schema.features[i], value)

    def _category(self, spec: FeatureSpec, value: Any) -> str:
        if isinstance(value, (str, int, np.integer, np.str_)) and not isinstance(value, bool):
            text = str(value)
        else:
            raise _value_error(InvalidValueError, spec.name, value, "a category (a string)")
        if not self._allow_unseen and text not in self._categories[spec.name]:
            raise _value_error(UnseenCategoryError, spec.name, value, len(self._categories[spec.name]))
        return text

    def _raise_for_keys(self, row: Mapping[str, Any]) -> Any:
        for name in row:
            if name not in self._index:
                raise UnknownFeatureError(_shown_text(name if isinstance(name, str) else repr(_Shown.of(name))))
        for name in self.names:
            if name not in row:
                raise MissingFeatureError(name)
        raise FeatureCountError(self.width, len(row))  # pragma: no cover - unreachable

    def _fill_converted(self, values: Any, out: np.ndarray) -> None:
        """Fill ``out`` from values that are not all plain numbers (None, numeric strings), or name the bad one."""
        if self._booleans:
            # "True", "false"... are booleans' own spellings, which numpy does not parse.
            converted = list(values)
            try:
                for i in self._booleans:
                    converted[i] = self._boolean(self.schema.features[i], converted[i])
            except SchemaError as exc:
                self._raise_for_values(values, exc)  # names the first feature at fault, in schema order
            values = converted
        try:
            # float64 holds every float32 value and more: numpy parses the strings and
            # makes None NaN, and packing refuses what float32 cannot hold.
            self._pack_into(out, 0, *np.array(values, dtype=np.float64).tolist())
        except (ValueError, TypeError, OverflowError, struct.error, np.exceptions.ComplexWarning) as exc:
            self._raise_for_values(values, exc)
        if not self._allow_non_finite:
            self._check_buffer(out, values)

    def _check_buffer(self, out: np.ndarray, values: Any) -> None:
        """Raise for a non-finite value in a filled row buffer that the policy does not excuse."""
        # isfinite into a preallocated mask + count_nonzero costs half of
        # np.isfinite(out).all() on short rows; a dot-product test is a little
        # faster still but emits overflow and invalid-value RuntimeWarnings.
        np.isfinite(out, out=self._finite_mask)
        if np.count_nonzero(self._finite_mask) != self.width:
            self._check_finite(out, values)

    def _raise_for_values(self, values: Any, cause: Exception) -> Any:
        if isinstance(values, (str, bytes)):
            raise _not_a_row(values) from cause
        for spec, value in zip(self.schema.features, values):
            self._number(spec, value)  # raises, naming the first feature at fault
        # Every value passed on its own: name the row, since no single feature is to blame.
        raise _value_error(InvalidValueError, "(row)", values, f"a row of numbers ({cause})") from cause

    def _check_finite(self, encoded: np.ndarray, original: Any) -> None:
        """Raise for the first non-finite value in ``encoded`` that its input value does not excuse."""
        for i in np.flatnonzero(~np.isfinite(encoded)).tolist():
            self._number(self.schema.features[i], original[i])


def _is_missing(value: Any) -> bool:
    """None, a float NaN, or pandas' NA (known by its type's name: pandas is no device dependency)."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return type(value).__name__ == "NAType"


def _row_values(row: Any) -> list[Any]:
    """The values of a positional row, or the SchemaError of something that is no row."""
    if isinstance(row, (str, bytes)):
        raise _not_a_row(row)
    if isinstance(row, np.ndarray) and row.ndim == 1:
        values: list[Any] = row.tolist()  # Python values: a complex one is refused, where numpy's cast warns
        return values
    try:
        return list(row)
    except TypeError:
        raise _not_a_row(row) from None


def _not_a_row(row: Any) -> SchemaError:
    return _value_error(InvalidValueError, "(row)", row, "a row (a sequence, a mapping or a numpy array)")


def _value_error(kind: type[SchemaError], feature: str, value: Any, *args: Any) -> SchemaError:
    """``kind(feature, value, *args)`` with a long value shown cut short in the message; ``.value`` keeps it whole."""
    plain = plain_value(value)
    error = kind(feature, _Shown.of(plain), *args)
    error.value = plain
    return error


def _shown_text(text: str) -> str:
    """A name, cut short for a message when it is long."""
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}… ({len(text):,} characters)"


class _Shown:
    """A value whose repr is cut short: ``'aaaa…'… (100,000 characters)``."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    @classmethod
    def of(cls, value: Any) -> Any:
        """The value itself when its repr is short, else a stand-in with a short repr."""
        if isinstance(value, int) and value.bit_length() > 200:
            # Python refuses to print an int of more than 4,300 digits, and one of 61 is long enough.
            return cls(f"<an int of {value.bit_length() * 0.30103:,.0f} digits>")
        if isinstance(value, (float, int, bool)) or value is None:
            return value
        if isinstance(value, (str, bytes)):
            if len(value) <= _SHOWN_CHARS:
                return value
            return cls(f"{value[:_SHOWN_CHARS]!r}… ({len(value):,} characters)")
        try:
            text = repr(value)
        except Exception:  # a repr that fails (a list holding a huge int) must not hide the real error
            return cls(f"<a {type(value).__name__}>")
        if len(text) <= _SHOWN_CHARS + 20:
            return value
        return cls(f"{text[:_SHOWN_CHARS]}… ({len(text):,} characters)")

    def __repr__(self) -> str:
        return self._text
