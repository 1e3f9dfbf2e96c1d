"""scikit-learn to ONNX with skl2onnx: the only module that imports skl2onnx.

Classifiers are converted without ZipMap, so probabilities come out as a plain
float tensor (one column per class) instead of a list of dicts.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from converters.features import infer_input_schema
>>> from converters.sklearn import convert
>>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
>>> model = LogisticRegression().fit(X, y)
>>> converted = convert(model, infer_input_schema(X))
>>> converted.output_schema.task.value, converted.output_schema.classes
('classification', (0, 1))
>>> converted.output_schema.label_output, converted.output_schema.score_output
('label', 'probabilities')
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

from edge_runtime.errors import ExportError, UnsupportedModelError
from edge_runtime.serving.results import plain_value
from edge_runtime.serving.schema import (
    FeatureKind,
    InputLayout,
    InputSchema,
    OutputSchema,
    Task,
)

__all__ = ["ConvertedModel", "convert", "final_estimator", "selects_columns"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertedModel:
    """An ONNX model with what the manifest needs to know about it."""

    onnx_bytes: bytes
    output_schema: OutputSchema
    producer: dict[str, Any]


def final_estimator(model: Any) -> Any:
    """The last step of (nested) pipelines: the estimator that predicts."""
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def selects_columns(model: Any) -> bool:
    """True when a ColumnTransformer sits anywhere in the model."""
    from sklearn.compose import ColumnTransformer

    if isinstance(model, ColumnTransformer):
        return True
    for _, step in getattr(model, "steps", []):
        if selects_columns(step):
            return True
    for _, step, *_ in getattr(model, "transformer_list", []):  # FeatureUnion
        if selects_columns(step):
            return True
    return False


def _initial_types(schema: InputSchema) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    if schema.layout is InputLayout.TENSOR:
        return [(schema.tensor_name, FloatTensorType([None, len(schema.features)]))]
    return [
        (f.name, StringTensorType([None, 1]) if f.kind is FeatureKind.CATEGORICAL else FloatTensorType([None, 1]))
        for f in schema.features
    ]


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("scikit-learn", "skl2onnx", "onnx", "protobuf"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are export deps
            versions[package] = "unknown"
    return versions


def convert(model: Any, schema: InputSchema) -> ConvertedModel:
    """Convert a fitted scikit-learn estimator or pipeline to ONNX.

    Parameters
    ----------
    model : estimator
        A fitted classifier or regressor, or a Pipeline ending in one.
    schema : InputSchema
        From :func:`converters.features.infer_input_schema`.

    Raises
    ------
    UnsupportedModelError
        Not a classifier or regressor, not fitted, or skl2onnx has no converter for a step.
    ExportError
        skl2onnx failed for another reason.
    """
    from skl2onnx import to_onnx
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    estimator = final_estimator(model)
    name = type(model).__name__
    if is_classifier(model):
        task = Task.CLASSIFICATION
    elif is_regressor(model):
        task = Task.REGRESSION
    else:
        raise UnsupportedModelError(f"{name} is neither a classifier nor a regressor")
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise UnsupportedModelError(f"{name} is not fitted: call fit() before export") from exc
    options = {id(estimator): {"zipmap": False}} if task is Task.CLASSIFICATION else None
    try:
        onnx_model = to_onnx(model, initial_types=_initial_types(schema), options=options)
    except Exception as exc:  # skl2onnx raises RuntimeError, TypeError, its own classes...
        message = str(exc)
        if "Expected an int, got a boolean" in message:
            raise ExportError(
                f"skl2onnx failed on {name}: {message}. This is the known protobuf 7 "
                "incompatibility; install 'protobuf<7' (the export extra pins it)"
            ) from exc
        unsupported = ("shape calculator", "converter", "not supported", "unable to find")
        if any(word in message.lower() for word in unsupported):
            raise UnsupportedModelError(f"skl2onnx cannot convert {name}: {message}") from exc
        raise ExportError(f"skl2onnx failed on {name}: {message}") from exc
    outputs = [o.name for o in onnx_model.graph.output]
    if task is Task.CLASSIFICATION:
        output_schema = OutputSchema(task=task, label_output=outputs[0], score_output=outputs[1],
                                     classes=tuple(plain_value(c) for c in estimator.classes_))
    else:
        output_schema = OutputSchema(task=task, score_output=outputs[0])
    producer = {
        "tool": "edge-runtime converters",
        "model_type": name,
        "estimator": type(estimator).__name__,
        "opset": {op.domain or "ai.onnx": op.version for op in onnx_model.opset_import},
        **_versions(),
    }
    return ConvertedModel(onnx_bytes=onnx_model.SerializeToString(), output_schema=output_schema,
                          producer=producer)
