"""The exception tree of edge-runtime.

Every error the library raises on purpose derives from :class:`EdgeRuntimeError`,
so one ``except EdgeRuntimeError`` catches them all. Where callers already catch a
built-in for the same situation, the class inherits that too::

    EdgeRuntimeError
    ├── ConfigError (ValueError)            a config file or value is wrong
    ├── BundleError                         a bundle cannot be used
    │   ├── BundleIntegrityError            a file is missing, truncated or altered
    │   └── BundleFormatError               unknown format version or broken manifest
    │       └── BundleSchemaError           the manifest's schema does not fit the model graph
    ├── SchemaError (ValueError)            an input row does not fit the schema
    │   ├── FeatureCountError               wrong number of features
    │   ├── MissingFeatureError             a named feature is absent
    │   ├── UnknownFeatureError             a name the model does not know
    │   ├── InvalidValueError               a non-numeric value in a numeric feature
    │   ├── NonFiniteValueError             NaN or infinity where the policy rejects it
    │   ├── OutOfRangeValueError            a number the model's float32 input cannot hold
    │   ├── NonFiniteOutputError            the model answered NaN or infinity for the row
    │   └── UnseenCategoryError             a category never seen in training
    ├── InputFormatError (ValueError)       an input file cannot be parsed
    │   └── ColumnMismatchError             a file's columns do not match the model's features
    ├── StoreError                          the monitoring database cannot be used
    │   ├── StoreBusyError                  another writer held the lock past the timeout
    │   ├── StoreFullError                  the disk (or the database's size limit) is full
    │   └── StoreCorruptError               the file is not a sound SQLite database
    ├── InferenceError (RuntimeError)       onnxruntime failed while running
    ├── OverloadError                       refused to keep a budget (load shedding)
    ├── SyncError                           summaries cannot be sent upstream or accepted
    │   ├── PayloadError (ValueError)       a malformed, truncated, oversized or unknown-version message
    │   └── SignatureError                  a missing or wrong signature, or an unknown device
    └── ExportError                         a model cannot be turned into a bundle
        ├── UnsupportedModelError (TypeError)
        └── ParityError                     the ONNX model disagrees with the original

Examples
--------
>>> from edge_runtime.errors import NonFiniteValueError, SchemaError
>>> err = NonFiniteValueError("age", float("nan"))
>>> isinstance(err, SchemaError), isinstance(err, ValueError)
(True, True)
>>> print(err)
feature 'age': value nan is not finite (NaN or infinity is rejected by the input policy)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BundleError",
    "BundleFormatError",
    "BundleIntegrityError",
    "BundleSchemaError",
    "ColumnMismatchError",
    "ConfigError",
    "EdgeRuntimeError",
    "ExportError",
    "FeatureCountError",
    "InferenceError",
    "InputFormatError",
    "InvalidValueError",
    "MissingFeatureError",
    "NonFiniteOutputError",
    "NonFiniteValueError",
    "OutOfRangeValueError",
    "OverloadError",
    "ParityError",
    "PayloadError",
    "SchemaError",
    "SignatureError",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "SyncError",
    "UnknownFeatureError",
    "UnseenCategoryError",
    "UnsupportedModelError",
]


class EdgeRuntimeError(Exception):
    """Root of every error raised on purpose by edge-runtime."""


class ConfigError(EdgeRuntimeError, ValueError):
    """A configuration file or value is invalid."""


class BundleError(EdgeRuntimeError):
    """A bundle directory cannot be loaded."""


class BundleIntegrityError(BundleError):
    """A file of the bundle is missing, truncated or does not match its checksum.

    Parameters
    ----------
    filename : str
        The file inside the bundle, as listed in the manifest.
    reason : str
        What is wrong with it.
    """

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        super().__init__(f"bundle file '{filename}' {reason}")


class BundleFormatError(BundleError):
    """The manifest is unreadable or written by a newer, unknown format version."""


class BundleSchemaError(BundleFormatError):
    """The manifest's schema does not fit the ONNX graph (feature count, class labels, categories)."""


class SchemaError(EdgeRuntimeError, ValueError):
    """An input row does not fit the model's input schema.

    Attributes
    ----------
    feature : str or None
        The feature at fault, when one is.
    value : object
        The offending value, when there is one.
    row : int or None
        The row number within a batch, once known.
    """

    feature: str | None = None
    value: Any = None
    row: int | None = None

    def with_row(self, row: int) -> SchemaError:
        """Return this error tagged with its row number in a batch (mutates and returns self)."""
        self.row = row
        return self

    def __str__(self) -> str:
        message = super().__str__()
        return message if self.row is None else f"row {self.row}: {message}"


class FeatureCountError(SchemaError):
    """A positional row has the wrong number of values."""

    def __init__(self, expected: int, got: int) -> None:
        self.value = got
        super().__init__(f"expected {expected} features, got {got}")


class MissingFeatureError(SchemaError):
    """A mapping row lacks a feature the model needs."""

    def __init__(self, feature: str) -> None:
        self.feature = feature
        super().__init__(f"feature '{feature}' is missing")


class UnknownFeatureError(SchemaError):
    """A mapping row names a feature the model does not have."""

    def __init__(self, feature: str) -> None:
        self.feature = feature
        super().__init__(f"feature '{feature}' is not an input of this model")


class InvalidValueError(SchemaError):
    """A value of the wrong kind, such as text in a numeric feature."""

    def __init__(self, feature: str, value: Any, expected: str) -> None:
        self.feature = feature
        self.value = value
        super().__init__(f"feature '{feature}': value {value!r} is not {expected}")


class NonFiniteValueError(SchemaError):
    """NaN or infinity in a numeric feature whose policy rejects it."""

    def __init__(self, feature: str, value: float) -> None:
        self.feature = feature
        self.value = value
        super().__init__(
            f"feature '{feature}': value {value!r} is not finite "
            "(NaN or infinity is rejected by the input policy)"
        )


class OutOfRangeValueError(SchemaError):
    """A finite number too large for the model's float32 input (beyond ±3.4e38)."""

    def __init__(self, feature: str, value: Any) -> None:
        self.feature = feature
        self.value = value
        super().__init__(f"feature '{feature}': value {value!r} is outside the float32 range the model "
                         "reads (±3.4e38)")


class NonFiniteOutputError(SchemaError):
    """The model answered NaN or infinity for a row whose values it cannot compute with.

    Values within float32's range can still overflow inside the model (a linear
    model's dot product past 3.4e38): the answer would be meaningless, so the row
    is refused like any other bad row. ``feature`` and ``value`` name the row's
    value of largest magnitude, the likely cause.
    """

    def __init__(self, feature: str, value: Any, output: str) -> None:
        self.feature = feature
        self.value = value
        shown = f"{value:.7g}" if isinstance(value, float) else repr(value)
        super().__init__(f"the model's output is not finite ({output}) for this row; its largest value, "
                         f"feature '{feature}' = {shown}, is likely beyond what the model computes in float32")


class UnseenCategoryError(SchemaError):
    """A categorical value that never occurred in the training data."""

    def __init__(self, feature: str, value: Any, known: int) -> None:
        self.feature = feature
        self.value = value
        super().__init__(
            f"feature '{feature}': category {value!r} was never seen in training "
            f"({known} known categories)"
        )


class InputFormatError(EdgeRuntimeError, ValueError):
    """An input file cannot be parsed as the format given."""


class ColumnMismatchError(InputFormatError):
    """An input file's header lacks features of the model, or has columns it does not know."""


class StoreError(EdgeRuntimeError):
    """The monitoring database cannot be opened or written."""


class StoreBusyError(StoreError):
    """Another writer held the database's lock for longer than the timeout."""


class StoreFullError(StoreError):
    """The disk, or the database's size limit, is full."""


class StoreCorruptError(StoreError):
    """The database file is damaged or is not a SQLite database."""


class InferenceError(EdgeRuntimeError, RuntimeError):
    """onnxruntime raised while running the model."""


class OverloadError(EdgeRuntimeError):
    """The runtime refused a request to keep its latency, CPU or memory budget.

    Attributes
    ----------
    cause : str
        The budget violation that put the runtime in load-shedding mode.
    """

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(f"request refused to keep the budget ({cause}); retry later")


class SyncError(EdgeRuntimeError):
    """Window summaries cannot be sent upstream, or a collector cannot accept them."""


class PayloadError(SyncError, ValueError):
    """A sync message is malformed, truncated, oversized or of a version this code does not read.

    Attributes
    ----------
    reason : str
        ``"malformed"``, ``"truncated"``, ``"oversized"`` or ``"version"``: what a
        collector counts rejections by, and how it answers (400, 413, 422).
    """

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class SignatureError(SyncError):
    """A sync message's signature is missing or wrong, or its device is not registered."""


class ExportError(EdgeRuntimeError):
    """A model cannot be exported to a bundle."""


class UnsupportedModelError(ExportError, TypeError):
    """The converter does not support this estimator or input."""


class ParityError(ExportError):
    """The exported ONNX model disagrees with the original beyond the allowed threshold."""
