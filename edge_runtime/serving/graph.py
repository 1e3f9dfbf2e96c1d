"""What an ONNX graph records about its own schema, and whether a manifest agrees with it.

The device has onnxruntime but not the ``onnx`` package, and onnxruntime's Python API
shows a graph's inputs and outputs but none of its nodes' attributes. The class labels
of a classifier (the ``classlabels_*`` attribute of ``LinearClassifier``,
``TreeEnsembleClassifier``, ``SVMClassifier``...) and the categories of a one-hot
encoder (``cats_*`` of ``OneHotEncoder``) live in those attributes, so this module
reads the model file's protobuf wire format itself. It walks only the few messages on
the way (model → graph → node → attribute, value infos, a constant tensor on demand)
and skips everything else, weights, tree arrays and subgraphs alike, by its length
prefix: the cost is a pass over the graph's top-level fields and its nodes' attribute
names, not over its bytes (about 0.1 ms for a 200-tree forest).

:func:`schema_checks` compares a manifest's schemas with what the graph records: input
names, element types and width, output names, class labels and the width of the score
output, encoder categories. A fact the graph does not record is reported as such and
never refused.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from skl2onnx import to_onnx
>>> X = np.arange(20.0).reshape(10, 2); y = np.array([0, 1] * 5)
>>> model = to_onnx(LogisticRegression().fit(X, y), X[:1].astype(np.float32),
...                 options={"zipmap": False}).SerializeToString()
>>> graph = read_graph(model)
>>> [(t.name, t.shape) for t in graph.inputs], graph.class_labels("label")
([('X', (None, 2))], (0, 1))
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task
>>> inputs = InputSchema(features=(FeatureSpec(name="a"), FeatureSpec(name="b")))
>>> outputs = OutputSchema(task=Task.CLASSIFICATION, score_output="probabilities",
...                        label_output="label", classes=("1", "0"))
>>> [c.message for c in schema_checks(inputs, outputs, graph) if c.status is CheckStatus.FAILED]
["manifest classes ['1', '0'] do not match the model's class labels [0, 1]"]
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.errors import BundleFormatError, BundleSchemaError
from edge_runtime.serving.schema import FeatureKind, InputLayout, InputSchema, OutputSchema, Task

__all__ = ["CheckStatus", "GraphCheck", "OnnxGraph", "TensorInfo", "read_graph", "schema_checks"]

# onnx.TensorProto.DataType values used here.
FLOAT, INT32, INT64, STRING, DOUBLE = 1, 6, 7, 8, 11
_TYPE_NAMES = {0: "undefined", FLOAT: "tensor(float)", 2: "tensor(uint8)", 3: "tensor(int8)", 5: "tensor(int16)",
               INT32: "tensor(int32)", INT64: "tensor(int64)", STRING: "tensor(string)", 9: "tensor(bool)",
               10: "tensor(float16)", DOUBLE: "tensor(double)"}

# Attributes that record a classifier's labels (in probability-column order) or an encoder's categories.
_LABEL_ATTRIBUTES = {"classlabels_ints", "classlabels_int64s", "classlabels_strings"}
_CATEGORY_ATTRIBUTES = {"cats_strings", "cats_int64s"}
_READ_ATTRIBUTES = _LABEL_ATTRIBUTES | _CATEGORY_ATTRIBUTES | {"to", "axis"}
# Nodes a value goes through unchanged in meaning and order (first input to first output).
_PASS_THROUGH = {"Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten"}
# ...and, for a score output, nodes that rescale each row but keep its columns in place.
_ROW_WISE = _PASS_THROUGH | {"Normalizer", "Softmax"}
_MAX_HOPS = 64  # a longer chain of pass-through nodes is not what an exporter writes
_SHOWN, _SHOWN_CHARS = 20, 1000  # values and characters of a list shown in a message


class _Malformed(Exception):
    """The bytes are not a well-formed protobuf message (internal; becomes BundleFormatError)."""


# ------------------------------------------------------------------ wire format
def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed("a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a varint is longer than 10 bytes")


def _signed(value: int) -> int:
    # int64 fields are varints of their two's complement.
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field number, wire type, a, b)``: a varint or fixed value as ``(value, 0)``,
    a length-delimited one as its ``(start, end)`` within ``buf``."""
    pos = start
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # almost every key fits one byte: skip the call
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, 0
        elif wire == 2:
            if pos < end and buf[pos] < 0x80:
                length, pos = buf[pos], pos + 1
            else:
                length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise _Malformed("a field runs past the end of its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise _Malformed("a fixed-size field runs past the end of its message")
            yield number, wire, int.from_bytes(buf[pos:pos + size], "little"), 0
            pos += size
        else:
            raise _Malformed(f"wire type {wire} (groups are not used by ONNX)")


def _text(buf: bytes, start: int, end: int) -> str:
    return buf[start:end].decode("utf-8", errors="replace")


def _ints(buf: bytes, wire: int, a: int, b: int) -> Iterator[int]:
    """The values of one occurrence of a repeated varint field, packed or not."""
    if wire == 0:
        yield _signed(a)
    elif wire == 2:
        pos = a
        while pos < b:
            value, pos = _varint(buf, pos, b)
            yield _signed(value)


# ------------------------------------------------------------------ the graph
@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A graph input or output: its name, element type and shape (None for a free dimension).

    ``elem_type`` is ONNX's ``TensorProto.DataType`` (1 float, 8 string...), 0 when the
    value is not a tensor or its type is not recorded; ``shape`` is None when not recorded.
    """

    name: str
    elem_type: int = 0
    shape: tuple[int | None, ...] | None = None

    @property
    def type_name(self) -> str:
        """onnxruntime's spelling of the type, e.g. ``'tensor(float)'``."""
        return _TYPE_NAMES.get(self.elem_type, f"tensor(type {self.elem_type})")


@dataclass(frozen=True, slots=True)
class _Node:
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    labels: tuple[Any, ...] | None = None  # classlabels_*
    categories: tuple[str, ...] | None = None  # cats_*
    cast_to: int | None = None  # Cast's "to"
    axis: int | None = None  # Gather's "axis"


@dataclass(frozen=True, slots=True, kw_only=True)
class OnnxGraph:
    """The facts of an ONNX model that its schema can be checked against.

    Attributes
    ----------
    inputs, outputs : tuple of TensorInfo
        The graph's inputs (initializers excluded, as onnxruntime lists them) and outputs.
    """

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    _producers: dict[str, tuple[_Node, int]] = field(repr=False)
    _nodes: tuple[_Node, ...] = field(repr=False)
    _constants: dict[str, tuple[int, int]] = field(repr=False)
    _buf: bytes = field(repr=False)

    def output(self, name: str) -> TensorInfo | None:
        """The graph output called ``name``, or None."""
        return next((o for o in self.outputs if o.name == name), None)

    def class_labels(self, output: str, *, scores: bool = False) -> tuple[Any, ...] | None:
        """The class labels that ``output`` is made of, in order, where the graph records them.

        Follows ``output`` back through nodes that keep its values and order (Identity,
        Cast, Reshape... and, for ``scores=True``, row-wise Normalizer and Softmax) to
        either a classifier node carrying ``classlabels_*`` (its label output, or its
        score output for ``scores=True``) or, for a label, an ``ArrayFeatureExtractor``
        picking from a constant list of classes (how skl2onnx writes MLP, k-NN and
        one-vs-rest models). Returns None when the chain ends anywhere else: the graph
        then does not record the labels in a form this reader knows.
        """
        name = output
        casts: list[int | None] = []
        for _ in range(_MAX_HOPS):
            found = self._producers.get(name)
            if found is None:
                return None
            node, index = found
            if node.labels is not None and index == (1 if scores else 0):
                return _cast_labels(node.labels, casts)
            if not scores and node.op_type == "ArrayFeatureExtractor" and index == 0 and node.inputs:
                constant = self._constant(node.inputs[0])
                return None if constant is None else _cast_labels(constant, casts)
            if index != 0 or not node.inputs or node.op_type not in (_ROW_WISE if scores else _PASS_THROUGH):
                return None
            if node.op_type == "Cast":
                casts.append(node.cast_to)
            name = node.inputs[0]
        return None

    def encoder_categories(self, input_name: str) -> list[tuple[str, ...]]:
        """The categories of every one-hot encoder fed by graph input ``input_name`` (unchanged)."""
        found = []
        for node in self._nodes:
            if node.categories is None or not node.inputs:
                continue
            if self._source(node.inputs[0]) == input_name:
                found.append(node.categories)
        return found

    def _source(self, name: str) -> str | None:
        for _ in range(_MAX_HOPS):
            producer = self._producers.get(name)
            if producer is None:
                return name
            node, index = producer
            if index != 0 or not node.inputs:
                return None
            if node.op_type not in _PASS_THROUGH and not self._first_column(node):
                return None
            name = node.inputs[0]
        return None

    def _first_column(self, node: _Node) -> bool:
        # skl2onnx picks a ColumnTransformer's column out of a one-column input with
        # Gather(axis=1, [0]) or ArrayFeatureExtractor(., [0]): the same values.
        if len(node.inputs) != 2 or self._constant(node.inputs[1]) != (0,):
            return False
        return node.op_type == "ArrayFeatureExtractor" or (node.op_type == "Gather" and node.axis == 1)

    def _constant(self, name: str) -> tuple[Any, ...] | None:
        """A one-dimensional int or string initializer's values, or None."""
        span = self._constants.get(name)
        return None if span is None else _tensor_values(self._buf, *span)


def _cast_labels(labels: tuple[Any, ...], casts: list[int | None]) -> tuple[Any, ...] | None:
    for to in casts:
        if to == STRING:
            labels = tuple(str(v) for v in labels)
        elif to in (INT64, INT32) and all(isinstance(v, int) for v in labels):
            continue
        elif to in (FLOAT, DOUBLE) and all(isinstance(v, (int, float)) for v in labels):
            labels = tuple(float(v) for v in labels)
        else:
            return None  # a conversion whose result this reader does not model
    return labels


def read_graph(data: bytes) -> OnnxGraph:
    """Read the facts :func:`schema_checks` needs from a serialized ONNX ``ModelProto``.

    Raises
    ------
    BundleFormatError
        The bytes are not a well-formed ONNX model (or hold no graph).
    """
    try:
        return _read_model(bytes(data))
    except _Malformed as exc:
        raise BundleFormatError(f"not a readable ONNX model ({exc})") from exc


def _read_model(buf: bytes) -> OnnxGraph:
    graph_span = None
    for number, wire, a, b in _fields(buf, 0, len(buf)):
        if number == 7 and wire == 2:  # ModelProto.graph
            graph_span = (a, b)
    if graph_span is None:
        raise _Malformed("the model holds no graph")
    nodes: list[_Node] = []
    constants: dict[str, tuple[int, int]] = {}
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    for number, wire, a, b in _fields(buf, *graph_span):
        if wire != 2:
            continue
        if number == 1:  # GraphProto.node
            nodes.append(_read_node(buf, a, b))
        elif number == 5:  # GraphProto.initializer
            name = _tensor_name(buf, a, b)
            if name:
                constants[name] = (a, b)
        elif number == 11:  # GraphProto.input
            inputs.append(_read_value_info(buf, a, b))
        elif number == 12:  # GraphProto.output
            outputs.append(_read_value_info(buf, a, b))
    producers: dict[str, tuple[_Node, int]] = {}
    for node in nodes:
        for index, name in enumerate(node.outputs):
            if name:
                producers[name] = (node, index)
    return OnnxGraph(inputs=tuple(i for i in inputs if i.name not in constants), outputs=tuple(outputs),
                     _producers=producers, _nodes=tuple(nodes), _constants=constants, _buf=buf)


def _read_node(buf: bytes, start: int, end: int) -> _Node:
    inputs: list[str] = []
    outputs: list[str] = []
    op_type = domain = ""
    labels: tuple[Any, ...] | None = None
    categories: tuple[str, ...] | None = None
    cast_to: int | None = None
    axis: int | None = None
    for number, wire, a, b in _fields(buf, start, end):
        if wire != 2:
            continue
        if number == 1:
            inputs.append(_text(buf, a, b))
        elif number == 2:
            outputs.append(_text(buf, a, b))
        elif number == 4:
            op_type = _text(buf, a, b)
        elif number == 7:
            domain = _text(buf, a, b)
        elif number == 5:  # NodeProto.attribute
            name, values = _read_attribute(buf, a, b)
            if name in _LABEL_ATTRIBUTES and values:
                labels = tuple(values)
            elif name in _CATEGORY_ATTRIBUTES and values:
                categories = tuple(str(v) for v in values)
            elif name == "to" and values and isinstance(values[0], int):
                cast_to = values[0]
            elif name == "axis" and values and isinstance(values[0], int):
                axis = values[0]
    return _Node(op_type, domain, tuple(inputs), tuple(outputs), labels, categories,
                 cast_to if op_type == "Cast" else None, axis if op_type == "Gather" else None)


def _read_attribute(buf: bytes, start: int, end: int) -> tuple[str, list[Any]]:
    """An attribute's name and, for the few attributes read here, its values."""
    name = ""
    values: list[Any] = []
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == 2:
            name = _text(buf, a, b)
            # Serializers write the name (field 1) first: stop here for every other
            # attribute, whose payload (a tree's node arrays, a tensor) is skipped whole.
            if name not in _READ_ATTRIBUTES:
                return name, []
        elif number == 3 and wire == 0:  # i
            values.append(_signed(a))
        elif number == 8:  # ints
            values.extend(_ints(buf, wire, a, b))
        elif number == 9 and wire == 2:  # strings
            values.append(_text(buf, a, b))
    return name, values


def _read_value_info(buf: bytes, start: int, end: int) -> TensorInfo:
    name = ""
    elem_type = 0
    shape: tuple[int | None, ...] | None = None
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == 2:
            name = _text(buf, a, b)
        elif number == 2 and wire == 2:  # TypeProto
            for t_number, t_wire, ta, tb in _fields(buf, a, b):
                if t_number == 1 and t_wire == 2:  # tensor_type
                    elem_type, shape = _read_tensor_type(buf, ta, tb)
    return TensorInfo(name, elem_type, shape)


def _read_tensor_type(buf: bytes, start: int, end: int) -> tuple[int, tuple[int | None, ...] | None]:
    elem_type = 0
    shape: tuple[int | None, ...] | None = None
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1 and wire == 0:
            elem_type = a
        elif number == 2 and wire == 2:  # TensorShapeProto
            dims: list[int | None] = []
            for d_number, d_wire, da, db in _fields(buf, a, b):
                if d_number == 1 and d_wire == 2:
                    value: int | None = None
                    for v_number, v_wire, va, _ in _fields(buf, da, db):
                        if v_number == 1 and v_wire == 0:  # dim_value (dim_param: a free dimension)
                            value = _signed(va)
                    dims.append(value)
            shape = tuple(dims)
    return elem_type, shape


def _tensor_name(buf: bytes, start: int, end: int) -> str:
    for number, wire, a, b in _fields(buf, start, end):
        if number == 8 and wire == 2:  # TensorProto.name
            return _text(buf, a, b)
    return ""


def _tensor_values(buf: bytes, start: int, end: int) -> tuple[Any, ...] | None:
    """The values of a one-dimensional int32, int64 or string TensorProto, or None."""
    dims: list[int] = []
    data_type = 0
    ints: list[int] = []
    strings: list[str] = []
    raw: bytes | None = None
    try:
        for number, wire, a, b in _fields(buf, start, end):
            if number == 1:
                dims.extend(_ints(buf, wire, a, b))
            elif number == 2 and wire == 0:
                data_type = a
            elif number in (5, 7):  # int32_data, int64_data
                ints.extend(_ints(buf, wire, a, b))
            elif number == 6 and wire == 2:
                strings.append(_text(buf, a, b))
            elif number == 9 and wire == 2:
                raw = buf[a:b]
            elif number == 14 and wire == 0 and a == 1:
                return None  # data stored outside the file
    except _Malformed:
        return None
    if len(dims) != 1:
        return None
    if data_type == STRING:
        values: list[Any] = strings
    elif data_type in (INT64, INT32):
        if raw is not None:
            size = 8 if data_type == INT64 else 4
            if len(raw) != dims[0] * size:
                return None
            values = [int.from_bytes(raw[i:i + size], "little", signed=True) for i in range(0, len(raw), size)]
        else:
            values = ints
    else:
        return None
    return tuple(values) if len(values) == dims[0] else None


# ------------------------------------------------------------------ checks
class CheckStatus(str, enum.Enum):
    """The outcome of comparing one manifest field with the graph."""

    OK = "ok"  # the graph records it, and the manifest agrees
    FAILED = "failed"  # the graph records it, and the manifest disagrees: the bundle is refused
    NOT_RECORDED = "not recorded"  # the graph does not record it: nothing to compare


_Add = Callable[[str, "CheckStatus", str], None]
_UNREADABLE = "graph"


@dataclass(frozen=True, slots=True)
class GraphCheck:
    """One manifest field compared with the graph of one model file.

    Attributes
    ----------
    model : str
        The model file in the bundle (``model.onnx``, a variant's file).
    field : str
        What was compared, e.g. ``classes`` or ``input_schema.features['city'].categories``.
    status : CheckStatus
    message : str
        What was found; for a failure, both values.
    """

    model: str
    field: str
    status: CheckStatus
    message: str

    @property
    def ok(self) -> bool:
        """False only for a failure (a fact not recorded is not one)."""
        return self.status is not CheckStatus.FAILED

    @classmethod
    def unreadable(cls, model: str, message: str) -> GraphCheck:
        """The failure of a model file that is not a readable ONNX graph."""
        return cls(model, _UNREADABLE, CheckStatus.FAILED, message)

    def error(self) -> BundleFormatError:
        """The error loading raises for this failure: BundleSchemaError, or BundleFormatError
        for a file that is no readable graph."""
        message = self.message if self.model == "model.onnx" else f"{self.model}: {self.message}"
        if self.field == _UNREADABLE:
            return BundleFormatError(f"{self.model} is {self.message}")
        return BundleSchemaError(message)

    def to_dict(self) -> dict[str, str]:
        """JSON-ready, for ``edge-runtime inspect --json``."""
        return {"model": self.model, "field": self.field, "status": self.status.value, "message": self.message}


def schema_checks(inputs: InputSchema, outputs: OutputSchema, graph: OnnxGraph,
                  model: str = "model.onnx") -> tuple[GraphCheck, ...]:
    """Compare a manifest's schemas with what ``graph`` records.

    Parameters
    ----------
    inputs, outputs : InputSchema, OutputSchema
        The manifest's schemas.
    graph : OnnxGraph
        The model file's graph, from :func:`read_graph`.
    model : str
        The model file's name in the bundle, for messages.

    Returns
    -------
    tuple of GraphCheck
        One per compared field; a field the graph does not record is ``NOT_RECORDED``.
    """
    checks: list[GraphCheck] = []

    def add(name: str, status: CheckStatus, message: str) -> None:
        checks.append(GraphCheck(model, name, status, message))

    _check_inputs(inputs, graph, add)
    _check_outputs(outputs, graph, add)
    if inputs.layout is InputLayout.COLUMNS:
        _check_categories(inputs, graph, add)
    return tuple(checks)


def _check_inputs(inputs: InputSchema, graph: OnnxGraph, add: _Add) -> None:
    names = [i.name for i in graph.inputs]
    expected = [inputs.tensor_name] if inputs.layout is InputLayout.TENSOR else list(inputs.names)
    if set(names) != set(expected):
        add("input_schema", CheckStatus.FAILED,
            f"the manifest's inputs {_show(expected)} do not match the model's inputs {_show(names)}")
        return
    add("input_schema", CheckStatus.OK, f"inputs {_show(expected)}")
    by_name = {i.name: i for i in graph.inputs}
    if inputs.layout is InputLayout.TENSOR:
        tensor = by_name[inputs.tensor_name]
        _check_type(add, "input_schema.tensor_name", tensor, FLOAT, "the tensor layout")
        width = tensor.shape[-1] if tensor.shape else None
        if width is None:
            add("input_schema.features", CheckStatus.NOT_RECORDED,
                f"the model's input '{tensor.name}' does not record its width")
        elif width != len(inputs.features):
            add("input_schema.features", CheckStatus.FAILED,
                f"the manifest lists {len(inputs.features)} features, the model's input '{tensor.name}' "
                f"takes {width}")
        else:
            add("input_schema.features", CheckStatus.OK, f"{width} features")
        return
    for spec in inputs.features:
        column = by_name[spec.name]
        field = f"input_schema.features[{_key(spec.name)}]"
        if spec.kind is FeatureKind.CATEGORICAL:
            _check_type(add, field + ".kind", column, STRING, "a categorical feature")
        else:
            # A numeric feature, or a boolean one as 1.0/0.0.
            _check_type(add, field + ".kind", column, FLOAT, f"a {spec.kind.value} feature")
        width = column.shape[-1] if column.shape else None
        if width is not None and width != 1:
            add(field, CheckStatus.FAILED,
                f"the model's input '{spec.name}' takes {width} values per row, the columns layout feeds 1")


def _check_type(add: _Add, name: str, tensor: TensorInfo, wanted: int, what: str) -> None:
    if tensor.elem_type == 0:
        add(name, CheckStatus.NOT_RECORDED, f"the model's input '{tensor.name}' does not record its type")
    elif tensor.elem_type != wanted:
        add(name, CheckStatus.FAILED,
            f"the model's input '{tensor.name}' is {tensor.type_name}; edge-runtime feeds "
            f"{_TYPE_NAMES[wanted]} for {what}")
    else:
        add(name, CheckStatus.OK, f"input '{tensor.name}' is {tensor.type_name}")


def _check_outputs(outputs: OutputSchema, graph: OnnxGraph, add: _Add) -> None:
    names = [o.name for o in graph.outputs]
    missing = [n for n in (outputs.label_output, outputs.score_output) if n and n not in names]
    if missing:
        add("output_schema", CheckStatus.FAILED,
            f"the manifest names output '{missing[0]}', the model has {_show(names)}")
        return
    add("output_schema", CheckStatus.OK, "outputs " + _show([n for n in (outputs.label_output,
                                                                         outputs.score_output) if n]))
    if outputs.task is not Task.CLASSIFICATION:
        return
    classes = list(outputs.classes)
    labels = graph.class_labels(outputs.label_output) if outputs.label_output else None
    if labels is None:
        labels = graph.class_labels(outputs.score_output, scores=True)
    if labels is not None:
        if len(labels) == len(classes) and all(_same_label(c, g) for c, g in zip(classes, labels)):
            add("output_schema.classes", CheckStatus.OK, f"classes {_show(classes)}")
        else:
            add("output_schema.classes", CheckStatus.FAILED,
                f"manifest classes {_show(classes)} do not match the model's class labels {_show(labels)}")
        return
    score = graph.output(outputs.score_output)
    width = score.shape[-1] if score is not None and score.shape and len(score.shape) >= 2 else None
    if width is None:
        add("output_schema.classes", CheckStatus.NOT_RECORDED, "the model does not record its class labels")
    elif width != len(classes):
        add("output_schema.classes", CheckStatus.FAILED,
            f"output '{outputs.score_output}' has {width} columns, the manifest lists {len(classes)} classes")
    else:
        add("output_schema.classes", CheckStatus.OK,
            f"{width} classes (the model records their number, not their labels)")


def _same_label(manifest: Any, graph: Any) -> bool:
    # Equal as JSON reads them: 0 == 0.0 == False (skl2onnx writes integer labels for
    # float or bool targets), but '0' != 0.
    if isinstance(graph, str) or isinstance(manifest, str):
        return isinstance(graph, str) and isinstance(manifest, str) and graph == manifest
    return bool(manifest == graph)


def _check_categories(inputs: InputSchema, graph: OnnxGraph, add: _Add) -> None:
    for spec in inputs.features:
        if spec.kind is not FeatureKind.CATEGORICAL:
            continue
        field = f"input_schema.features[{_key(spec.name)}].categories"
        encoders = graph.encoder_categories(spec.name)
        if not encoders:
            add(field, CheckStatus.NOT_RECORDED, f"no encoder of '{spec.name}' records its categories")
            continue
        for known in encoders:
            unknown = sorted(set(spec.categories) - set(known))
            if unknown:
                add(field, CheckStatus.FAILED,
                    f"manifest categories of '{spec.name}' {_show(spec.categories)} do not match the model's "
                    f"encoder categories {_show(known)} ({_show(unknown)} unknown to the model)")
                break
        else:
            add(field, CheckStatus.OK, f"{len(spec.categories)} categories of '{spec.name}' known to the model")


def _key(name: str) -> str:
    """A feature's name inside a field path: ``input_schema.features["city"]``."""
    text = json.dumps(name, ensure_ascii=False)
    return text if len(text) <= 80 else text[:76] + '..."'


def _show(values: Sequence[Any]) -> str:
    """A list for a message, cut to its first values so that a hostile manifest cannot flood it."""
    text = repr(list(values[:_SHOWN]))
    if len(values) > _SHOWN:
        text = text[:-1] + f", ... ({len(values) - _SHOWN} more)]"
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...]"
