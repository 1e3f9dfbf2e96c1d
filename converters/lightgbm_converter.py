"""LightGBM to ONNX: onnxmltools' converter, registered with skl2onnx for pipelines too.

Imported only when export is handed a LightGBM model (:mod:`converters.boosting`).
A native ``lightgbm.Booster`` is served through :class:`BoosterClassifier` or
:class:`BoosterRegressor`, scikit-learn style views that predict what the
Booster does.

Categorical splits on integer-coded columns (``categorical_feature=[...]``)
convert; a pandas ``category`` column does not (the graph would have to map
the strings to LightGBM's codes), and export says to encode it in the pipeline.

Examples
--------
>>> import numpy as np, lightgbm
>>> from converters.lightgbm_converter import estimator_from_booster
>>> X = np.arange(200.0).reshape(100, 2); y = (X[:, 0] > 90).astype(int)
>>> booster = lightgbm.train({"objective": "binary", "verbose": -1, "num_threads": 1},
...                          lightgbm.Dataset(X, y), num_boost_round=3)
>>> model = estimator_from_booster(booster, ["a b", "c"])
>>> type(model).__name__, model.classes_.tolist(), model.predict(X[:2]).tolist()
('BoosterClassifier', [0, 1], [0, 0])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from edge_runtime.errors import UnsupportedModelError

__all__ = ["BoosterClassifier", "BoosterRegressor", "estimator_from_booster", "register"]

_CLASSIFICATION = ("binary", "multiclass", "multiclassova", "cross_entropy")
_REGRESSION = ("regression", "regression_l1", "l1", "l2", "huber", "fair", "poisson", "quantile", "mape",
               "gamma", "tweedie", "mse", "mae", "rmse")


class _BoosterView(BaseEstimator):  # type: ignore[misc]
    """A trained ``lightgbm.Booster`` with the attributes export and onnxmltools read."""

    library = "lightgbm"

    def __init__(self, booster: Any = None, feature_names: list[str] | None = None) -> None:
        self.booster = booster
        self.feature_names = feature_names

    def _fitted(self) -> None:
        names = self.feature_names or self.booster.feature_name()
        self.booster_ = self.booster
        self.n_features_in_ = self.booster.num_feature()
        if self.feature_names is not None or not all(n.startswith("Column_") for n in names):
            self.feature_names_in_ = np.asarray(names, dtype=object)
        # onnxmltools averages the trees of a random forest instead of summing them.
        boosting = self.booster.params.get("boosting", self.booster.params.get("boosting_type", "gbdt"))
        self.boosting_type = "rf" if boosting in ("rf", "random_forest") else "gbdt"

    def fit(self, X: Any, y: Any = None) -> Any:
        """A wrapped Booster is already trained: train with ``lightgbm.train`` instead."""
        raise UnsupportedModelError("a lightgbm.Booster wrapped for export cannot be trained again")

    def _raw(self, X: Any) -> Any:
        return np.asarray(self.booster.predict(X))


class BoosterClassifier(ClassifierMixin, _BoosterView):  # type: ignore[misc]
    """A classification ``lightgbm.Booster`` (binary or multiclass), classes ``0..n-1``."""

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, one column per class."""
        raw = self._raw(X)
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def predict(self, X: Any) -> Any:
        """The class of highest probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class BoosterRegressor(RegressorMixin, _BoosterView):  # type: ignore[misc]
    """A regression ``lightgbm.Booster``."""

    def predict(self, X: Any) -> Any:
        """The predicted values."""
        return self._raw(X)


def estimator_from_booster(booster: Any, feature_names: list[str] | None = None) -> Any:
    """A :class:`BoosterClassifier` or :class:`BoosterRegressor` for a trained ``lightgbm.Booster``.

    Raises
    ------
    UnsupportedModelError
        An objective that is neither classification nor regression (ranking).
    """
    objective = str(booster.dump_model(num_iteration=1).get("objective", "")).split()[0]
    view: _BoosterView
    if objective.startswith(_CLASSIFICATION):
        view = BoosterClassifier(booster, feature_names)
        num_class = int(booster.dump_model(num_iteration=1)["num_class"])
        view.classes_ = np.arange(max(num_class, 2))
    elif objective.startswith(_REGRESSION):
        view = BoosterRegressor(booster, feature_names)
    else:
        raise UnsupportedModelError(f"lightgbm.Booster with objective {objective!r} is neither a classifier "
                                    "nor a regressor export knows")
    view._fitted()
    return view


def _check(model: Any) -> None:
    booster = model.booster_
    name = type(model).__name__
    if booster.pandas_categorical:
        raise UnsupportedModelError(
            f"{name} was fitted on pandas 'category' columns, which the ONNX converter cannot map from "
            "strings to LightGBM's codes; encode them in the pipeline instead (an OrdinalEncoder in a "
            "ColumnTransformer, with categorical_feature on its output columns)")
    if booster.params.get("linear_tree"):
        raise UnsupportedModelError(f"{name} with linear_tree=True cannot be exported: the ONNX converter "
                                    "only expresses constant leaves")


def register(model: Any) -> None:
    """Register LightGBM's estimators and the Booster views with skl2onnx, after checking ``model`` converts.

    Raises
    ------
    UnsupportedModelError
        pandas ``category`` columns, or linear trees.
    """
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (
        convert_lightgbm,
    )
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    _check(model)
    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for classifier in (LGBMClassifier, BoosterClassifier):
        update_registered_converter(classifier, f"LightGbm{classifier.__name__}",
                                    calculate_linear_classifier_output_shapes, convert_lightgbm, options=options)
    for regressor in (LGBMRegressor, BoosterRegressor):
        update_registered_converter(regressor, f"LightGbm{regressor.__name__}",
                                    calculate_linear_regressor_output_shapes, convert_lightgbm)
