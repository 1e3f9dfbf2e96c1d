"""Input and output schemas of a bundled model, as small frozen value objects.

The schema is written by the exporter into ``manifest.json`` and read back on the
device, so every class here converts to and from plain JSON-ready dicts.

Examples
--------
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema
>>> schema = InputSchema(features=(FeatureSpec(name="x", minimum=0.0, maximum=1.0),))
>>> schema.names
('x',)
>>> InputSchema.from_dict(schema.to_dict()) == schema
True

Class labels are kept in one canonical form (:func:`canonical_label`): an
integer-valued float is the int it holds, so a target stored as 0.0/1.0 has the
classes 0 and 1 everywhere (the graph, ``Prediction.label``, the probabilities'
keys, the monitoring counts).

>>> from edge_runtime.serving.schema import OutputSchema, Task
>>> OutputSchema(task=Task.CLASSIFICATION, score_output="p", classes=(0.0, 1.0)).classes
(0, 1)
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.errors import BundleFormatError

__all__ = [
    "FeatureKind",
    "FeatureSpec",
    "InputLayout",
    "InputSchema",
    "OutputSchema",
    "Task",
    "canonical_classes",
    "canonical_label",
    "field_error",
]


def field_error(where: str, expected: str, value: Any) -> BundleFormatError:
    """The error for a manifest field of the wrong type or value, naming the field and the value.

    >>> print(field_error("output_schema.task", "'classification' or 'regression'", "ranking"))
    manifest field 'output_schema.task' must be 'classification' or 'regression', got 'ranking'
    """
    text = repr(value)
    if len(text) > 80:  # a hostile manifest must not flood the message
        text = text[:77] + "..."
    return BundleFormatError(f"manifest field '{where}' must be {expected}, got {text}")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise field_error(where, "an object", value)
    return value


def _string(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise field_error(where, "a non-empty string" + (" or null" if optional else ""), value)
    return value


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer beyond the float range
        number = math.nan
    if not math.isfinite(number):
        raise field_error(where, "a finite number or null", value)
    return number


def _enum(kind: type[enum.Enum], value: Any, where: str) -> Any:
    choices = [member.value for member in kind]
    if value not in choices or not isinstance(value, str):
        raise field_error(where, " or ".join(repr(c) for c in choices), value)
    return kind(value)


def _is_label(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):  # bool too; an integer label is an int64 in the graph
        return -(1 << 63) <= value < 1 << 63
    return isinstance(value, str)


def canonical_label(value: Any) -> Any:
    """A class label in its one canonical form: the training target's type, an integer-valued float as an int.

    Numpy scalars become the Python value they hold. Wherever a label becomes text
    (JSON keys, ``proba_<label>`` columns, the monitoring counts), it is ``str()``
    of this value: ``"0"``, ``"True"``, ``"churn"``, ``"0.5"``.

    >>> canonical_label(1.0), canonical_label(True), canonical_label("yes"), canonical_label(0.5)
    (1, True, 'yes', 0.5)
    >>> import numpy as np
    >>> canonical_label(np.float64(-2.0)), canonical_label(np.bool_(False)), canonical_label(np.str_("a"))
    (-2, False, 'a')
    """
    if isinstance(value, np.generic):
        value = value.item()
    # The graph holds integer labels as int64: a float beyond it stays a float (and is refused as a label).
    if isinstance(value, float) and value.is_integer() and -_INT64_LIMIT <= value < _INT64_LIMIT:
        return int(value)
    return value


def canonical_classes(classes: Any) -> tuple[Any, ...]:
    """Each class label in its canonical form (:func:`canonical_label`), in the same order.

    >>> canonical_classes([0.0, 1.0, 2.0])
    (0, 1, 2)
    """
    return tuple(canonical_label(c) for c in classes)


_INT64_LIMIT = float(1 << 63)


def _first_repeat(values: Any) -> Any:
    seen = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise field_error(where, "a list", value)
    return value


class FeatureKind(str, enum.Enum):
    """What kind of values a feature takes."""

    NUMERIC = "numeric"  # fed to the model as float32
    CATEGORICAL = "categorical"  # fed to the model as a string
    # True/False, fed to the model as float32 1.0/0.0: what scikit-learn made of the
    # bool column it was trained on, and what skl2onnx's float input expects (format 3).
    BOOLEAN = "boolean"


class InputLayout(str, enum.Enum):
    """How a row is laid out for the ONNX graph."""

    TENSOR = "tensor"  # one float32 input of shape [N, n_features]
    COLUMNS = "columns"  # one [N, 1] input per feature, named after it (mixed-type pipelines)


class Task(str, enum.Enum):
    """What the model predicts."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureSpec:
    """One input feature.

    Parameters
    ----------
    name : str
        Column name in the training data.
    kind : FeatureKind
        Numeric, categorical or boolean.
    categories : tuple of str
        Categories seen in training (categorical features only).
    minimum, maximum : float or None
        Range seen in training (numeric features only). A boolean feature's range
        is always [0.0, 1.0], the values the model receives; the manifest does not
        record it.
    allows_missing : bool
        True when the training data had missing values in this feature, so the
        model was built to handle them and NaN passes the default input policy.

    Examples
    --------
    >>> spec = FeatureSpec(name="repaid", kind=FeatureKind.BOOLEAN)
    >>> spec.to_dict()
    {'name': 'repaid', 'kind': 'boolean', 'allows_missing': False}
    >>> spec.minimum, spec.maximum, FeatureSpec.from_dict(spec.to_dict()) == spec
    (0.0, 1.0, True)
    """

    name: str
    kind: FeatureKind = FeatureKind.NUMERIC
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    allows_missing: bool = False

    def __post_init__(self) -> None:
        if self.kind is FeatureKind.BOOLEAN:
            object.__setattr__(self, "minimum", 0.0)
            object.__setattr__(self, "maximum", 1.0)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value}
        if self.kind is FeatureKind.CATEGORICAL:
            out["categories"] = list(self.categories)
        elif self.kind is FeatureKind.BOOLEAN:
            pass  # its range is [0, 1] by definition
        else:
            out["min"] = self.minimum
            out["max"] = self.maximum
        out["allows_missing"] = self.allows_missing
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "feature") -> FeatureSpec:
        """Build from the dict written by :meth:`to_dict`, refusing fields of the wrong type.

        ``where`` names the entry in messages (``input_schema.features[2]``).
        """
        data = _object(data, where)
        name = _string(data.get("name"), f"{where}.name")
        categories = _list(data.get("categories", []), f"{where}.categories")
        for i, category in enumerate(categories):
            if not isinstance(category, str):
                raise field_error(f"{where}.categories[{i}]", "a string", category)
        minimum = _number(data.get("min"), f"{where}.min")
        maximum = _number(data.get("max"), f"{where}.max")
        if minimum is not None and maximum is not None and minimum > maximum:
            raise field_error(f"{where}.min", f"at most max ({maximum!r})", minimum)
        allows_missing = data.get("allows_missing", False)
        if not isinstance(allows_missing, bool):
            raise field_error(f"{where}.allows_missing", "true or false", allows_missing)
        kind = _enum(FeatureKind, data.get("kind", "numeric"), f"{where}.kind")
        if kind is FeatureKind.BOOLEAN and categories:
            raise field_error(f"{where}.categories", "empty for a boolean feature", categories)
        return cls(name=str(name), kind=kind, categories=tuple(categories), minimum=minimum, maximum=maximum,
                   allows_missing=allows_missing)


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSchema:
    """The ordered input features and how they reach the ONNX graph.

    Parameters
    ----------
    features : tuple of FeatureSpec
        In the order the model expects them.
    layout : InputLayout
        A single float tensor, or one input per column.
    tensor_name : str
        Name of the ONNX input for the tensor layout.
    """

    features: tuple[FeatureSpec, ...]
    layout: InputLayout = InputLayout.TENSOR
    tensor_name: str = "X"
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(f.name for f in self.features)
        if len(set(names)) != len(names):
            twice = _first_repeat(names)
            raise BundleFormatError(f"feature names are not unique: {twice!r} appears more than once")
        if self.layout is InputLayout.TENSOR and any(
            f.kind is FeatureKind.CATEGORICAL for f in self.features
        ):
            raise BundleFormatError("the tensor layout holds numeric features only")
        object.__setattr__(self, "names", names)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "layout": self.layout.value,
            "tensor_name": self.tensor_name,
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "input_schema") -> InputSchema:
        """Build from the dict written by :meth:`to_dict`, refusing fields of the wrong type."""
        data = _object(data, where)
        if "features" not in data:
            raise field_error(f"{where}.features", "a list of features", None)
        features = _list(data["features"], f"{where}.features")
        if not features:
            raise field_error(f"{where}.features", "a non-empty list", features)
        return cls(
            features=tuple(FeatureSpec.from_dict(f, f"{where}.features[{i}]") for i, f in enumerate(features)),
            layout=_enum(InputLayout, data.get("layout", "tensor"), f"{where}.layout"),
            tensor_name=str(_string(data.get("tensor_name", "X"), f"{where}.tensor_name")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSchema:
    """What the model returns and under which ONNX output names.

    Parameters
    ----------
    task : Task
        Classification or regression.
    classes : tuple
        Class labels in the order of the probability columns (classifiers), each
        in its canonical form (:func:`canonical_label`; an integer-valued float is
        stored as the int).
    label_output : str or None
        ONNX output holding the predicted label (classifiers).
    score_output : str
        ONNX output holding probabilities (classifiers) or the predicted value.
    """

    task: Task
    score_output: str
    label_output: str | None = None
    classes: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        # One representation from export to the monitoring counts, whoever built the
        # schema: an exporter, or the runtime reading an older manifest that lists 0.0/1.0.
        object.__setattr__(self, "classes", canonical_classes(self.classes))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "task": self.task.value,
            "classes": list(self.classes),
            "label_output": self.label_output,
            "score_output": self.score_output,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "output_schema") -> OutputSchema:
        """Build from the dict written by :meth:`to_dict`, refusing fields of the wrong type.

        Classes are strings, numbers or booleans (they key probabilities and the
        monitoring vocabulary), each once.
        """
        data = _object(data, where)
        if "task" not in data:
            raise field_error(f"{where}.task", "'classification' or 'regression'", None)
        classes = _list(data.get("classes", []), f"{where}.classes")
        for i, label in enumerate(classes):
            if not _is_label(label):
                raise field_error(f"{where}.classes[{i}]", "a string, a finite number or a boolean", label)
        if len(set(classes)) != len(classes):
            twice = _first_repeat(classes)
            raise field_error(f"{where}.classes", "a list of distinct labels", twice)
        return cls(
            task=_enum(Task, data["task"], f"{where}.task"),
            classes=tuple(classes),
            label_output=_string(data.get("label_output"), f"{where}.label_output", optional=True),
            score_output=str(_string(data.get("score_output"), f"{where}.score_output")),
        )
