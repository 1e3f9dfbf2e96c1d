"""CatBoost to ONNX: CatBoost's own ONNX export, registered with skl2onnx for pipelines too.

Imported only when export is handed a CatBoost model (:mod:`converters.boosting`).
CatBoost writes a one-node graph (a ``TreeEnsembleClassifier`` or
``TreeEnsembleRegressor``, plus a ZipMap for classifiers); the converter below
copies that node into the graph skl2onnx builds, without the ZipMap, the way
skl2onnx's CatBoost example does. CatBoost's ONNX export refuses categorical
and text features, so export says to encode them in the pipeline instead.

Examples
--------
>>> import numpy as np, catboost
>>> from converters.catboost_converter import tree_node
>>> X = np.arange(40.0).reshape(20, 2); y = (X[:, 0] > 18).astype(int)
>>> model = catboost.CatBoostClassifier(iterations=3, verbose=0, thread_count=1, allow_writing_files=False).fit(X, y)
>>> tree_node(model).op_type
'TreeEnsembleClassifier'
"""

from __future__ import annotations

from typing import Any

from edge_runtime.errors import UnsupportedModelError

__all__ = ["register", "tree_node"]


def _check(model: Any) -> None:
    name = type(model).__name__
    names = list(getattr(model, "feature_names_", None) or [])
    for kind, indices in (("categorical", model.get_cat_feature_indices()),
                          ("text", model.get_text_feature_indices()),
                          ("embedding", model.get_embedding_feature_indices())):
        if indices:
            listed = ", ".join(repr(names[i]) if i < len(names) else str(i) for i in indices)
            raise UnsupportedModelError(
                f"{name} uses {kind} features ({listed}), which CatBoost's ONNX export does not support; "
                "encode them in the pipeline instead (OneHotEncoder or OrdinalEncoder in a ColumnTransformer) "
                "and fit CatBoost on numbers")


def tree_node(model: Any) -> Any:
    """The tree-ensemble node of CatBoost's own ONNX export of ``model``.

    Raises
    ------
    UnsupportedModelError
        The graph holds more than a tree ensemble (and a ZipMap).
    """
    from catboost.utils import convert_to_onnx_object

    graph = convert_to_onnx_object(model).graph
    kinds = [node.op_type for node in graph.node]
    if not kinds or not kinds[0].startswith("TreeEnsemble") or kinds[1:] not in ([], ["ZipMap"]) \
            or len(graph.initializer):
        raise UnsupportedModelError(f"CatBoost exported {type(model).__name__} as {kinds}, not a single tree "
                                    "ensemble that export can embed")
    return graph.node[0]


def _parse_classifier(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    """Declare the label (int64 or string, as the classes are) and the probability tensor."""
    from skl2onnx._parse import _apply_zipmap
    from skl2onnx._supported_operators import _get_sklearn_operator_name
    from skl2onnx.common.data_types import (
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    options = scope.get_options(model, {"zipmap": True})
    operator = scope.declare_local_operator(_get_sklearn_operator_name(type(model)), model)
    operator.inputs = inputs
    strings = any(isinstance(c, str) for c in model.classes_.tolist())
    label = scope.declare_local_variable("label", StringTensorType() if strings else Int64TensorType())
    probabilities = scope.declare_local_variable("probabilities", FloatTensorType())
    operator.outputs.extend([label, probabilities])
    if options["zipmap"] is False:
        return list(operator.outputs)
    return list(_apply_zipmap(options["zipmap"], scope, model, inputs[0].type, operator.outputs))


def _convert(scope: Any, operator: Any, container: Any) -> None:
    """Copy CatBoost's tree-ensemble node, attributes included, into the graph being built."""
    from onnx.helper import get_attribute_value

    node = tree_node(operator.raw_operator)
    attributes = {a.name: get_attribute_value(a) for a in node.attribute}
    for key, value in attributes.items():
        if isinstance(value, bytes):
            attributes[key] = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            attributes[key] = [v.decode() for v in value]
    container.add_node(node.op_type, [operator.inputs[0].full_name], [o.full_name for o in operator.outputs],
                       op_domain="ai.onnx.ml", op_version=1,
                       name=scope.get_unique_operator_name(node.op_type), **attributes)


def register(model: Any) -> None:
    """Register CatBoostClassifier and CatBoostRegressor with skl2onnx, after checking ``model`` converts.

    Raises
    ------
    UnsupportedModelError
        Categorical, text or embedding features.
    """
    from catboost import CatBoostClassifier, CatBoostRegressor
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    _check(model)
    update_registered_converter(CatBoostClassifier, "CatBoostCatBoostClassifier",
                                calculate_linear_classifier_output_shapes, _convert, parser=_parse_classifier,
                                options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    update_registered_converter(CatBoostRegressor, "CatBoostCatBoostRegressor",
                                calculate_linear_regressor_output_shapes, _convert)
