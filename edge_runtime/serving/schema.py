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
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.errors import BundleFormatError

__all__ = ["FeatureKind", "FeatureSpec", "InputLayout", "InputSchema", "OutputSchema", "Task"]


class FeatureKind(str, enum.Enum):
    """What kind of values a feature takes."""

    NUMERIC = "numeric"  # fed to the model as float32
    CATEGORICAL = "categorical"  # fed to the model as a string


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
        Numeric or categorical.
    categories : tuple of str
        Categories seen in training (categorical features only).
    minimum, maximum : float or None
        Range seen in training (numeric features only).
    allows_missing : bool
        True when the training data had missing values in this feature, so the
        model was built to handle them and NaN passes the default input policy.
    """

    name: str
    kind: FeatureKind = FeatureKind.NUMERIC
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    allows_missing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value}
        if self.kind is FeatureKind.CATEGORICAL:
            out["categories"] = list(self.categories)
        else:
            out["min"] = self.minimum
            out["max"] = self.maximum
        out["allows_missing"] = self.allows_missing
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Build from the dict written by :meth:`to_dict`."""
        try:
            return cls(
                name=str(data["name"]),
                kind=FeatureKind(data.get("kind", "numeric")),
                categories=tuple(str(c) for c in data.get("categories", ())),
                minimum=data.get("min"),
                maximum=data.get("max"),
                allows_missing=bool(data.get("allows_missing", False)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleFormatError(f"invalid feature entry {data!r}: {exc}") from exc


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
            raise BundleFormatError(f"feature names are not unique: {names}")
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
    def from_dict(cls, data: dict[str, Any]) -> InputSchema:
        """Build from the dict written by :meth:`to_dict`."""
        try:
            return cls(
                features=tuple(FeatureSpec.from_dict(f) for f in data["features"]),
                layout=InputLayout(data.get("layout", "tensor")),
                tensor_name=str(data.get("tensor_name", "X")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleFormatError(f"invalid input schema: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSchema:
    """What the model returns and under which ONNX output names.

    Parameters
    ----------
    task : Task
        Classification or regression.
    classes : tuple
        Class labels in the order of the probability columns (classifiers).
    label_output : str or None
        ONNX output holding the predicted label (classifiers).
    score_output : str
        ONNX output holding probabilities (classifiers) or the predicted value.
    """

    task: Task
    score_output: str
    label_output: str | None = None
    classes: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "task": self.task.value,
            "classes": list(self.classes),
            "label_output": self.label_output,
            "score_output": self.score_output,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputSchema:
        """Build from the dict written by :meth:`to_dict`."""
        try:
            return cls(
                task=Task(data["task"]),
                classes=tuple(data.get("classes", ())),
                label_output=data.get("label_output"),
                score_output=str(data["score_output"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleFormatError(f"invalid output schema: {exc}") from exc
