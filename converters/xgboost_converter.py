"""XGBoost to ONNX: onnxmltools' converter, registered with skl2onnx for pipelines too.

Imported only when export is handed an XGBoost model (:mod:`converters.boosting`).

onnxmltools reads split features from the booster's text dump and only
understands the default names ``f0``, ``f1``...: a model fitted on a DataFrame
dumps its column names instead ("Unable to interpret 'worst radius'"). The
converter registered here therefore converts a copy whose booster has no
feature names; the bundle's input schema keeps the user's names.

Examples
--------
>>> import numpy as np, xgboost
>>> from converters.xgboost_converter import estimator_from_booster
>>> X = np.arange(40.0).reshape(20, 2); y = (X[:, 0] > 18).astype(int)
>>> booster = xgboost.train({"objective": "binary:logistic", "nthread": 1}, xgboost.DMatrix(X, y), 3)
>>> model = estimator_from_booster(booster, ["a b", "c"])
>>> type(model).__name__, model.classes_.tolist(), model.feature_names_in_.tolist()
('XGBClassifier', [0, 1], ['a b', 'c'])
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from edge_runtime.errors import ExportError, UnsupportedModelError

__all__ = ["estimator_from_booster", "register"]


def estimator_from_booster(booster: Any, feature_names: list[str] | None = None) -> Any:
    """An ``XGBClassifier`` or ``XGBRegressor`` that predicts what ``booster.predict`` does.

    ``Booster.predict`` uses every tree, where the scikit-learn estimators stop at
    ``best_iteration``: the estimator is built from a copy without it.

    Raises
    ------
    UnsupportedModelError
        An objective that is neither classification nor regression (ranking, survival).
    ExportError
        ``feature_names`` contradicts the names the booster was trained with.
    """
    from xgboost import XGBClassifier, XGBRegressor

    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    estimator: Any
    if objective.startswith(("binary:logistic", "multi:softprob", "multi:softmax")):
        estimator = XGBClassifier()
    elif objective.startswith(("reg:", "count:poisson")):
        estimator = XGBRegressor()
    else:
        raise UnsupportedModelError(f"xgboost.Booster with objective {objective!r} is neither a classifier "
                                    "nor a regressor export knows")
    booster = booster.copy()
    if feature_names is not None:
        if booster.feature_names is not None and list(booster.feature_names) != list(feature_names):
            raise ExportError(f"feature_names {list(feature_names)} contradict the names the xgboost.Booster "
                              f"was trained with: {list(booster.feature_names)}")
        booster.feature_names = list(feature_names)
    booster.set_attr(best_iteration=None, best_score=None)
    estimator.load_model(bytearray(booster.save_raw("ubj")))
    return estimator


def _check(model: Any) -> None:
    if getattr(model, "booster", None) not in (None, "gbtree", "dart"):
        raise UnsupportedModelError(f"{type(model).__name__} with booster={model.booster!r} cannot be exported: "
                                    "only tree boosters convert to ONNX (use booster='gbtree')")
    types = model.get_booster().feature_types or []
    if "c" in types:
        names = model.get_booster().feature_names or [f"f{i}" for i in range(len(types))]
        cats = [n for n, t in zip(names, types) if t == "c"]
        raise UnsupportedModelError(
            f"{type(model).__name__} uses native categorical features ({', '.join(map(repr, cats))}), which "
            "the ONNX converter cannot map from categories to XGBoost's codes; encode them in the pipeline "
            "instead (OneHotEncoder or OrdinalEncoder in a ColumnTransformer)")


def _without_feature_names(convert: Callable[..., Any]) -> Callable[..., Any]:
    """onnxmltools' converter, run on a copy of the model whose booster dumps ``f0``, ``f1``..."""

    def converter(scope: Any, operator: Any, container: Any) -> None:
        original = operator.raw_operator
        if original.get_booster().feature_names is not None:
            renamed = copy.deepcopy(original)
            renamed.get_booster().feature_names = None
            operator.raw_operator = renamed
        try:
            convert(scope, operator, container)
        finally:
            operator.raw_operator = original

    return converter


def register(model: Any) -> None:
    """Register XGBClassifier and XGBRegressor with skl2onnx, after checking ``model`` converts.

    Raises
    ------
    UnsupportedModelError
        A linear booster, or native categorical features.
    """
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    _check(model)
    converter = _without_feature_names(convert_xgboost)
    update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                converter, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes,
                                converter)
