"""Gradient-boosted trees from XGBoost, LightGBM and CatBoost: what export needs to know about them.

The three libraries stay optional and on the workstation: this module imports
none of them at module level, and a library is imported only when export is
handed one of its models (decided by the model's module name). The per-library
modules (:mod:`converters.xgboost_converter`, :mod:`converters.lightgbm_converter`,
:mod:`converters.catboost_converter`) register their ONNX converters with
skl2onnx, so a scikit-learn ``Pipeline`` ending in one of these models converts
like any other pipeline.

What export does differently for them:

- a native ``xgboost.Booster`` or ``lightgbm.Booster`` becomes a scikit-learn
  style estimator (:func:`adapt_native`);
- feature names are the user's: LightGBM replaces spaces with ``_``, and the
  names are mapped back to the DataFrame's (:func:`fitted_feature_names`);
- NaN is "missing" to these libraries, so the input schema lets numeric features
  be missing (:func:`allow_missing`), and the graphs route NaN as the library does.

Examples
--------
>>> from sklearn.linear_model import LogisticRegression
>>> from converters.boosting import library_of
>>> library_of(LogisticRegression()) is None
True
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Collection
from importlib import metadata
from typing import Any

from converters.features import is_dataframe
from edge_runtime.errors import ExportError
from edge_runtime.serving.schema import FeatureKind, InputSchema

__all__ = [
    "LIBRARIES",
    "MIN_CONVERTER_VERSIONS",
    "TARGET_OPSET",
    "adapt_native",
    "allow_missing",
    "check_converter_versions",
    "fitted_feature_names",
    "library_of",
    "library_version",
    "prepare_conversion",
]

#: The libraries whose models export converts, by top-level module name.
LIBRARIES = ("xgboost", "lightgbm", "catboost")

#: Converter versions below which a library's models do not convert, checked before converting.
#: XGBoost >= 3 stores base_score as a string array ("[6.274165E-1]"): onnxmltools 1.14 fails on it
#: ("could not convert string to float"); 1.15 and 1.16 match XGBoost 3.2's predictions (binary,
#: multiclass, regression) to float32 precision, checked here. The export extra pins the same bound.
MIN_CONVERTER_VERSIONS = {"xgboost": ("onnxmltools", (1, 15)), "lightgbm": ("onnxmltools", (1, 15))}


#: onnxmltools adds its nodes without an opset version, so skl2onnx would pick the newest versions
#: onnx knows (ai.onnx.ml 5, ai.onnx 25), which skl2onnx itself then refuses ("not supported yet by
#: this library"): cap both at the versions skl2onnx 1.17+ is tested with.
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}


def _final_step(model: Any) -> Any:
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def library_of(model: Any) -> str | None:
    """The boosting library that made ``model`` (or its pipeline's last step), or None.

    Decided by the module name of the model's class, so that no library is imported
    to find out.
    """
    module = type(_final_step(model)).__module__.split(".")[0]
    if module in LIBRARIES:
        return module
    adapted = getattr(_final_step(model), "library", None)  # a native Booster already adapted
    return adapted if adapted in LIBRARIES else None


def adapt_native(model: Any, feature_names: list[str] | None = None) -> Any:
    """A native ``xgboost.Booster`` or ``lightgbm.Booster`` as a scikit-learn style estimator.

    Anything else is returned unchanged (but a CatBoost model read from a pickle gets back
    its ``n_features_in_``). The estimator predicts what the Booster's own
    ``predict`` does (all its trees: ``xgboost.train`` keeps the trees past
    ``best_iteration``; slice ``booster[: booster.best_iteration + 1]`` to export the best).

    Parameters
    ----------
    model : object
        The model as given to export.
    feature_names : list of str, optional
        The Booster's feature names, when it was trained without them.

    Raises
    ------
    UnsupportedModelError
        The Booster's objective is neither a classification nor a regression one.
    """
    library = type(model).__module__.split(".")[0]
    if library == "catboost" and hasattr(model, "feature_names_") and model.is_fitted() \
            and not model.n_features_in_:
        # CatBoost 1.2 does not restore n_features_in_ when unpickled (it reads 0), and export checks
        # the training data's width against it: its feature names still say how many there are.
        model._n_features_in = len(model.feature_names_)
    if type(model).__name__ != "Booster" or library not in ("xgboost", "lightgbm"):
        return model
    if library == "xgboost":
        from converters import xgboost_converter

        return xgboost_converter.estimator_from_booster(model, feature_names)
    from converters import lightgbm_converter

    return lightgbm_converter.estimator_from_booster(model, feature_names)


def fitted_feature_names(model: Any, X: Any) -> list[str] | None:
    """The names of the columns ``model`` was fitted on, as the user's DataFrame ``X`` spells them.

    LightGBM replaces spaces in feature names with ``_`` ("mean radius" becomes
    "mean_radius"); those names are mapped back to ``X``'s. CatBoost keeps the
    names in ``feature_names_``. None when the model names no columns.

    Examples
    --------
    >>> import pandas as pd
    >>> from converters.boosting import fitted_feature_names
    >>> class Renamed:  # what LightGBM's estimators report
    ...     __module__ = "lightgbm.sklearn"
    ...     feature_names_in_ = ["mean_radius", "é_ü", "target"]
    >>> fitted_feature_names(Renamed(), pd.DataFrame(columns=["é ü", "mean radius", "target"]))
    ['mean radius', 'é ü', 'target']
    """
    names = getattr(model, "feature_names_in_", None)
    if names is None and library_of(model) == "catboost" and not hasattr(model, "steps"):
        names = getattr(model, "feature_names_", None)
        # Fitted on an array, CatBoost names the columns "0", "1", ...: that names none.
        if names is not None and [str(n) for n in names] == [str(i) for i in range(len(names))]:
            names = None
    if names is None:
        return None
    fitted = [str(n) for n in names]
    if library_of(model) != "lightgbm" or hasattr(model, "steps") or not is_dataframe(X):
        return fitted
    columns = [str(c) for c in X.columns]
    renamed = {c.replace(" ", "_"): c for c in columns}
    return [n if n in columns else renamed.get(n, n) for n in fitted]


def allow_missing(model: Any, schema: InputSchema, *, encoded: Collection[str] = ()) -> InputSchema:
    """Let every numeric feature be missing (NaN) when the model's library treats NaN as missing.

    XGBoost and LightGBM route a missing value down each split's learned default
    branch, and CatBoost (``nan_mode`` "Min" or "Max") as the smallest or largest
    value; the exported graphs do the same. A CatBoost model trained with
    ``nan_mode="Forbidden"`` keeps the schema inferred from the data, and so do
    the ``encoded`` columns, which a pipeline's encoder consumes before the trees see them.
    """
    library = library_of(model)
    if library is None:
        return schema
    if library == "catboost":
        params = _final_step(model).get_all_params()
        if params.get("nan_mode", "Min") == "Forbidden":
            return schema
    features = tuple(dataclasses.replace(f, allows_missing=True)
                     if f.kind is FeatureKind.NUMERIC and f.name not in encoded else f for f in schema.features)
    return dataclasses.replace(schema, features=features)


def _version(package: str) -> tuple[int, ...] | None:
    try:
        text = metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def library_version(library: str) -> str:
    """The model library's version from the module itself: its distribution may be named
    otherwise (``xgboost-cpu`` installs ``xgboost``)."""
    return str(importlib.import_module(library).__version__)


def check_converter_versions(library: str) -> dict[str, str]:
    """Raise unless the converter for ``library`` is installed at a version known to convert it right.

    Returns
    -------
    dict
        Package to version, for the manifest's producer record.

    Raises
    ------
    ExportError
        The converter is missing, or older than :data:`MIN_CONVERTER_VERSIONS` says.

    Examples
    --------
    >>> from converters.boosting import check_converter_versions
    >>> sorted(check_converter_versions("xgboost"))
    ['onnxmltools', 'xgboost']
    """
    versions = {library: library_version(library)}
    if library not in MIN_CONVERTER_VERSIONS:
        return versions
    package, minimum = MIN_CONVERTER_VERSIONS[library]
    found = _version(package)
    wanted = ".".join(map(str, minimum))
    if found is None:
        raise ExportError(f"exporting a {library} model needs {package}>={wanted}: "
                          f"pip install 'edge-runtime[export]' (or pip install '{package}>={wanted}')")
    if found < minimum:
        raise ExportError(f"{package} {metadata.version(package)} converts {library} "
                          f"{versions[library]} models wrongly (base_score, feature names); "
                          f"install '{package}>={wanted}' (the export extra pins it)")
    versions[package] = metadata.version(package)
    return versions


def prepare_conversion(model: Any) -> dict[str, str]:
    """Check the converter versions and register the library's converters with skl2onnx.

    A no-op returning ``{}`` for a model that no boosting library made.

    Returns
    -------
    dict
        Package to version of the library and its converter, for the manifest.

    Raises
    ------
    UnsupportedModelError
        The model uses something its converter cannot express (CatBoost categorical
        features, LightGBM pandas ``category`` columns...); the message names the workaround.
    ExportError
        The converter is missing or too old.
    """
    library = library_of(model)
    if library is None:
        return {}
    versions = check_converter_versions(library)
    if library == "xgboost":
        from converters import xgboost_converter

        xgboost_converter.register(_final_step(model))
    elif library == "lightgbm":
        from converters import lightgbm_converter

        lightgbm_converter.register(_final_step(model))
    else:
        from converters import catboost_converter

        catboost_converter.register(_final_step(model))
    return versions
