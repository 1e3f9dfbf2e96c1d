"""Give a converted graph's inputs the user's column names back.

skl2onnx declares one graph input per DataFrame column (the columns layout)
and turns each name into an identifier on the way: "mean radius (µ/€)"
becomes "mean_radius__µ___". The bundle's schema, dict rows and CSV headers
use the user's names, so the inputs are renamed back, in order, after conversion.

Examples
--------
>>> from onnx import TensorProto, helper
>>> from converters.input_names import restore_input_names
>>> graph = helper.make_graph(
...     [helper.make_node("Identity", ["plan_type"], ["out"])], "g",
...     [helper.make_tensor_value_info("plan_type", TensorProto.FLOAT, [None, 1])],
...     [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 1])])
>>> model = restore_input_names(helper.make_model(graph), ["plan type"])
>>> model.graph.input[0].name, list(model.graph.node[0].input)
('plan type', ['plan type'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["restore_input_names"]


def restore_input_names(model: Any, names: Sequence[str]) -> Any:
    """Rename the graph inputs of ``model`` (an ``onnx.ModelProto``) to ``names``, in order, in place.

    For the columns layout (one input per column). Every node that reads a renamed
    input, in subgraphs too, reads the new name. Returns ``model``. Does nothing
    when the counts differ.
    """
    inputs = list(model.graph.input)
    if len(inputs) != len(names):
        return model
    renames = {i.name: n for i, n in zip(inputs, names) if i.name != n}
    if not renames:
        return model
    taken = {o for node in model.graph.node for o in node.output} | {t.name for t in model.graph.initializer}
    if taken & set(renames.values()):
        return model  # a user's name is already an internal name: keep skl2onnx's
    for value in inputs:
        value.name = renames.get(value.name, value.name)
    _rename_reads(model.graph, renames)
    return model


def _rename_reads(graph: Any, renames: dict[str, str]) -> None:
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in renames:
                node.input[position] = renames[name]
        for attribute in node.attribute:
            if attribute.g is not None and attribute.HasField("g"):
                _rename_reads(attribute.g, renames)
            for subgraph in attribute.graphs:
                _rename_reads(subgraph, renames)
