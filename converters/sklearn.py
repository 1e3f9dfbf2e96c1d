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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from converters.boosting import adapt_native
from converters.features import EncodedColumn
from converters.input_names import restore_input_names
from edge_runtime.errors import ExportError, UnsupportedModelError
from edge_runtime.serving.schema import (
    FeatureKind,
    InputLayout,
    InputSchema,
    OutputSchema,
    Task,
    canonical_classes,
)

__all__ = [
    "ConvertedModel",
    "convert",
    "encoded_columns",
    "final_estimator",
    "load_estimator",
    "require_estimator",
    "require_fitted",
    "selects_columns",
]


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


def _is_estimator(obj: Any) -> bool:
    # Duck-typed like scikit-learn's own checks: XGBoost and LightGBM models are not BaseEstimators.
    return not isinstance(obj, type) and hasattr(obj, "fit") and hasattr(obj, "get_params")


def _is_fitted(model: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        return False
    return True


def _a(obj: Any) -> str:
    """What ``obj`` is, in words: "a dict", "an unfitted LogisticRegression", "the class Ridge"."""
    if obj is None:
        return "None"
    if isinstance(obj, type):
        return f"the class {obj.__name__} (not a fitted instance)"
    name = type(obj).__name__
    if _is_estimator(obj) and not _is_fitted(obj):
        name = f"unfitted {name}"
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _estimator_inside(obj: Any) -> str:
    """Where a container holds an estimator, as a hint: " (its key 'model' holds a Pipeline: ...)"."""
    if isinstance(obj, dict):
        items: list[tuple[str, Any]] = [(f"key {k!r}", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(f"item {i}", v) for i, v in enumerate(obj)]
    else:
        return ""
    for where, value in items:
        if _is_estimator(value):
            return f" (its {where} holds {_a(value)}: save that object alone)"
    return ""


def require_estimator(model: Any) -> None:
    """Raise unless ``model`` is a scikit-learn-style estimator (fitted or not: :func:`convert` says).

    Raises
    ------
    UnsupportedModelError
        A dict, a list, a class, or anything else without ``fit`` and ``get_params``.

    Examples
    --------
    >>> from converters.sklearn import require_estimator
    >>> require_estimator({"model": None})
    Traceback (most recent call last):
    ...
    edge_runtime.errors.UnsupportedModelError: export needs a fitted scikit-learn classifier or regressor, got a dict
    """
    if not _is_estimator(model):
        raise UnsupportedModelError(
            f"export needs a fitted scikit-learn classifier or regressor, got {_a(model)}{_estimator_inside(model)}")


def require_fitted(model: Any) -> None:
    """Raise unless ``model`` is fitted, before anything asks it for what fitting makes.

    Raises
    ------
    UnsupportedModelError
        An unfitted estimator (XGBoost, LightGBM and CatBoost would otherwise raise
        their own errors on the first question).
    """
    if not _is_fitted(model):
        raise UnsupportedModelError(f"{type(model).__name__} is not fitted: call fit() before export")


def load_estimator(path: str | Path) -> Any:
    """Unpickle a fitted estimator saved with joblib or pickle.

    Unpickling runs code from the file: only load files you trust.

    Parameters
    ----------
    path : str or Path
        The file, named as given in every message.

    Raises
    ------
    UnsupportedModelError
        The file holds something else than a fitted estimator: a dict, a list,
        an unfitted estimator, an object whose class cannot be imported here.
    ExportError
        The file is not a pickle (random bytes, truncated, empty).
    OSError
        The file cannot be opened.
    """
    import joblib

    try:
        obj = joblib.load(path)
    except OSError:
        raise  # cannot open or read the file: the CLI reports it as it is
    except (ImportError, AttributeError) as exc:
        # The pickle names a class this interpreter cannot find: a package not installed
        # here, or a class defined in the script that saved the model (its __main__).
        hint = ("a class defined in the script that saved it: move the class to a module both can import, "
                "or call converters.export() from that script" if "__main__" in str(exc)
                else "install the package that defines it")
        raise UnsupportedModelError(
            f"'{path}' holds an object whose class cannot be loaded here ({_one_line(exc)}); {hint}") from exc
    except EOFError as exc:
        raise ExportError(f"'{path}' ends before its pickle does (empty or truncated)") from exc
    except Exception as exc:  # pickle raises KeyError, IndexError, UnpicklingError... on bytes it cannot read
        reason = _one_line(exc)
        raise ExportError(f"'{path}' is not a readable pickle or joblib file "
                          f"({type(exc).__name__}{': ' + reason if reason else ''})") from exc
    obj = adapt_native(obj)  # a native XGBoost/LightGBM Booster
    if not _is_estimator(obj) or not _is_fitted(obj):
        raise UnsupportedModelError(
            f"'{path}' holds {_a(obj)}, not a fitted scikit-learn estimator{_estimator_inside(obj)}")
    return obj


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def encoded_columns(model: Any) -> dict[str, EncodedColumn]:
    """The input columns that fitted encoders consume, and whether on strings or numbers.

    Any step with ``categories_`` (OneHotEncoder, OrdinalEncoder, TargetEncoder...)
    counts, when it is the model itself, in a ColumnTransformer, in a FeatureUnion,
    or in a Pipeline behind steps that keep the number of columns (a SimpleImputer).
    Columns are known by name only for a model fitted on a DataFrame.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.compose import make_column_transformer
    >>> from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
    >>> from converters.sklearn import encoded_columns
    >>> X = pd.DataFrame({"zip": ["01000", "02100"], "code": [3, 7], "age": [30.0, 40.0]})
    >>> ct = make_column_transformer((OneHotEncoder(), ["zip"]), (OrdinalEncoder(), ["code"]),
    ...                              remainder="passthrough").fit(X)
    >>> {name: column.fitted_on for name, column in encoded_columns(ct).items()}
    {'zip': 'strings', 'code': 'numbers'}
    """
    found: dict[str, EncodedColumn] = {}
    names = getattr(model, "feature_names_in_", None)
    _find_encoders(model, [str(n) for n in names] if names is not None else None, found)
    return found


def _find_encoders(step: Any, columns: list[str] | None, found: dict[str, EncodedColumn]) -> None:
    if columns is None or step is None or isinstance(step, str):  # "drop", "passthrough"
        return
    if hasattr(step, "transformers_"):  # ColumnTransformer
        for _, transformer, selected in step.transformers_:
            _find_encoders(transformer, _selected_columns(selected, columns), found)
    elif hasattr(step, "transformer_list"):  # FeatureUnion
        for _, transformer in step.transformer_list:
            _find_encoders(transformer, columns, found)
    elif hasattr(step, "steps"):  # Pipeline
        for _, sub in step.steps:
            if sub is None or isinstance(sub, str):
                continue
            if getattr(sub, "n_features_in_", len(columns)) != len(columns):
                break  # an earlier step changed the columns: names no longer apply
            _find_encoders(sub, columns, found)
            if any(hasattr(sub, a) for a in ("categories_", "transformers_", "transformer_list", "steps")):
                break
    elif getattr(step, "categories_", None) is not None and len(step.categories_) == len(columns):
        for name, categories in zip(columns, step.categories_):
            found[name] = EncodedColumn(encoder=type(step).__name__, strings=_are_strings(categories))


def _selected_columns(selected: Any, columns: list[str]) -> list[str] | None:
    """A ColumnTransformer's fitted column selection as names (callables are already resolved)."""
    import numpy as np

    if isinstance(selected, slice):
        return columns[selected]
    if isinstance(selected, (str, int, np.integer)):
        selected = [selected]
    items = list(np.asarray(selected).tolist()) if not isinstance(selected, Sequence) else list(selected)
    if items and all(isinstance(i, bool) for i in items):
        return [c for c, keep in zip(columns, items) if keep]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (int, np.integer)) and -len(columns) <= item < len(columns):
            out.append(columns[int(item)])
        else:
            return None
    return out


def _are_strings(categories: Any) -> bool:
    """True when the non-missing categories are strings (numpy ``U`` or Python ``str`` in an object array)."""
    if categories.dtype.kind in "iufb":
        return False
    present = [c for c in categories.tolist()
               if c is not None and not (isinstance(c, float) and math.isnan(c))]
    return not present or any(isinstance(c, str) for c in present)


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


def convert(model: Any, schema: InputSchema, *, target_opset: dict[str, int] | None = None) -> ConvertedModel:
    """Convert a fitted scikit-learn estimator or pipeline to ONNX.

    Parameters
    ----------
    model : estimator
        A fitted classifier or regressor, or a Pipeline ending in one.
    schema : InputSchema
        From :func:`converters.features.infer_input_schema`.
    target_opset : dict, optional
        Opset per domain, for converters registered from other libraries
        (:func:`converters.boosting.prepare_conversion`); skl2onnx's default otherwise.

    Raises
    ------
    UnsupportedModelError
        Not an estimator, not a classifier or regressor, not fitted, or skl2onnx
        has no converter for a step.
    ExportError
        skl2onnx failed for another reason.
    """
    from skl2onnx import to_onnx
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    require_estimator(model)
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
        onnx_model = to_onnx(model, initial_types=_initial_types(schema), options=options,
                             target_opset=target_opset)
    except Exception as exc:  # skl2onnx raises RuntimeError, TypeError, its own classes...
        message = str(exc)
        if "Expected an int, got a boolean" in message:
            raise ExportError(
                f"skl2onnx failed on {name}: {message}. This is the known protobuf 7 "
                "incompatibility; install 'protobuf<7' (the export extra pins it)"
            ) from exc
        unsupported = ("shape calculator", "converter", "not supported", "unable to find")
        # One line: skl2onnx's messages run to a dozen lines of advice; the cause keeps them.
        first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        if any(word in message.lower() for word in unsupported):
            raise UnsupportedModelError(f"skl2onnx cannot convert {name}: {first}") from exc
        raise ExportError(f"skl2onnx failed on {name}: {first}") from exc
    if schema.layout is InputLayout.COLUMNS:
        restore_input_names(onnx_model, schema.names)  # skl2onnx made "plan type" "plan_type"
    outputs = [o.name for o in onnx_model.graph.output]
    if task is Task.CLASSIFICATION:
        output_schema = OutputSchema(task=task, label_output=outputs[0], score_output=outputs[1],
                                     # 0.0/1.0 become 0/1, as the graph's labels are (docs/serving.md)
                                     classes=canonical_classes(estimator.classes_))
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
