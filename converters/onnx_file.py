"""Bring your own ONNX: wrap a model exported elsewhere into a bundle.

The model comes from torch.onnx, tf2onnx, onnxmltools or any other tool; a
small schema (a dict or a JSON file) says what its inputs and outputs mean::

    {
      "task": "classification",           # or "regression"
      "classes": ["no", "yes"],            # classifiers
      "features": ["age", "income"],       # or objects: {"name", "kind", "categories", "min", "max"};
                                           # kind "numeric", "categorical" or "boolean"
      "score_output": "probabilities",     # optional: found from the graph when omitted
      "label_output": "label"              # optional
    }

There is no original model to compare with, so the parity report says so.

Examples
--------
>>> import tempfile, numpy as np
>>> from sklearn.linear_model import LinearRegression
>>> from skl2onnx import to_onnx
>>> from converters import bundle_onnx
>>> X = np.arange(20.0).reshape(10, 2); y = X @ [1.0, 2.0]
>>> onnx_path = tempfile.mkdtemp() + "/lin.onnx"
>>> _ = open(onnx_path, "wb").write(
...     to_onnx(LinearRegression().fit(X, y), X[:1].astype(np.float32)).SerializeToString())
>>> result = bundle_onnx(onnx_path, {"task": "regression", "features": ["a", "b"]},
...                      name="lin", version="1", out_dir=tempfile.mkdtemp() + "/lin")
>>> result.manifest.output_schema.score_output
'variable'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from converters.assembly import BundleContents, assemble_bundle
from converters.features import infer_input_schema
from converters.manifest import ExportResult, check_identity
from edge_runtime.config import SessionConfig
from edge_runtime.errors import BundleError, ExportError
from edge_runtime.runtime import Runtime
from edge_runtime.serving.schema import (
    FeatureKind,
    FeatureSpec,
    InputLayout,
    InputSchema,
    OutputSchema,
    Task,
)
from edge_runtime.serving.session import OnnxSession

__all__ = ["bundle_onnx"]


def _load_schema(schema: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(schema, dict):
        return schema
    try:
        data = json.loads(Path(schema).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ExportError(f"schema file '{schema}' does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ExportError(f"schema file '{schema}' is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ExportError(f"schema file '{schema}' must hold a JSON object")
    return data


def _features(raw: Any) -> tuple[FeatureSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ExportError("the schema's 'features' must be a non-empty list of names or objects")
    specs = []
    for item in raw:
        specs.append(FeatureSpec(name=item) if isinstance(item, str) else FeatureSpec.from_dict(item))
    return tuple(specs)


def _input_schema(features: tuple[FeatureSpec, ...], session: OnnxSession) -> InputSchema:
    inputs = session.input_names
    if len(inputs) == 1 and all(f.kind is not FeatureKind.CATEGORICAL for f in features):
        types = session.input_types()
        if types[inputs[0]] != "tensor(float)":
            raise ExportError(f"input '{inputs[0]}' is {types[inputs[0]]}; edge-runtime feeds tensor(float)")
        width = session.input_shapes()[inputs[0]][-1]
        if isinstance(width, int) and width != len(features):
            raise ExportError(f"the model's input '{inputs[0]}' takes {width} features, "
                              f"the schema lists {len(features)}")
        return InputSchema(features=features, layout=InputLayout.TENSOR, tensor_name=inputs[0])
    names = tuple(f.name for f in features)
    if set(inputs) != set(names):
        raise ExportError(f"the model's inputs {list(inputs)} are neither one float tensor nor "
                          f"one input per schema feature {list(names)}")
    return InputSchema(features=features, layout=InputLayout.COLUMNS)


def _output_schema(data: dict[str, Any], session: OnnxSession) -> OutputSchema:
    try:
        task = Task(data.get("task", ""))
    except ValueError as exc:
        raise ExportError(f"the schema's 'task' must be 'classification' or 'regression', "
                          f"got {data.get('task')!r}") from exc
    outputs = session.output_names
    score = data.get("score_output")
    label = data.get("label_output")
    if task is Task.REGRESSION:
        return OutputSchema(task=task, score_output=score or outputs[0])
    classes = tuple(data.get("classes", ()))
    if not classes:
        raise ExportError("a classifier's schema must list its 'classes'")
    if score is None:
        score = outputs[-1]
    if label is None and len(outputs) > 1:
        label = outputs[0]
    return OutputSchema(task=task, score_output=score, label_output=label, classes=classes)


def bundle_onnx(onnx_path: str | Path, schema: dict[str, Any] | str | Path, *, name: str,
                version: str, out_dir: str | Path, reference_data: Any = None,
                overwrite: bool = False) -> ExportResult:
    """Wrap an ONNX file and its schema into a bundle.

    Parameters
    ----------
    onnx_path : str or Path
        The ONNX model.
    schema : dict, str or Path
        The schema as a dict or a JSON file (see the module docstring).
    name, version : str
        Identity of the bundle.
    out_dir : str or Path
        The bundle directory to create.
    reference_data : numpy.ndarray or pandas.DataFrame, optional
        Training data to profile into the reference; feature ranges come from it.
    overwrite : bool
        Replace an existing bundle at ``out_dir``.

    Raises
    ------
    ExportError
        The file is not a loadable ONNX model, or the schema does not fit it.
    """
    check_identity(name, version)
    path = Path(onnx_path)
    try:
        model_bytes = path.read_bytes()
    except FileNotFoundError as exc:
        raise ExportError(f"ONNX file '{path}' does not exist") from exc
    data = _load_schema(schema)
    try:
        session = OnnxSession(path, SessionConfig())
    except BundleError as exc:
        raise ExportError(f"'{path}' is not a loadable ONNX model: {exc}") from exc
    features = _features(data.get("features"))
    if reference_data is not None:
        inferred = infer_input_schema(reference_data, feature_names=[f.name for f in features])
        # A kind the schema declares (categorical, boolean) stands; numeric ranges come from the data.
        features = tuple(f if f.kind is not FeatureKind.NUMERIC else g
                         for f, g in zip(features, inferred.features))
    input_schema = _input_schema(features, session)
    output_schema = _output_schema(data, session)

    def smoke_run(runtime: Runtime) -> dict[str, Any]:
        # The schema and the graph must agree before the bundle is published.
        runtime.predict_batch([_smoke_row(input_schema)])
        return {"source": "none", "passed": None,
                "note": "an ONNX file from elsewhere: no original model to compare with"}

    contents = BundleContents(name=name, version=version, model=model_bytes, input_schema=input_schema,
                              output_schema=output_schema,
                              producer={"tool": "bring-your-own ONNX", "source_file": path.name},
                              reference_rows=reference_data, outputs_from="reference data")
    return assemble_bundle(contents, out_dir, overwrite=overwrite, check=smoke_run)


def _smoke_row(schema: InputSchema) -> list[Any]:
    row: list[Any] = []
    for f in schema.features:
        if f.kind is FeatureKind.CATEGORICAL:
            row.append(f.categories[0] if f.categories else "")
        else:
            row.append(float(np.mean([f.minimum or 0.0, f.maximum or 0.0])))
    return row
