"""One loaded model: its verified bundle, onnxruntime session and output handling.

The Runtime serves through an engine, and may hold a second one (a lighter
fallback model) to switch to when a budget is exceeded.

Examples
--------
>>> import tempfile, numpy as np
>>> from sklearn.linear_model import Ridge
>>> from converters import export
>>> from edge_runtime.config import SessionConfig
>>> from edge_runtime.serving.model import ModelEngine
>>> X = np.arange(40.0).reshape(20, 2); y = X.sum(axis=1)
>>> path = export(Ridge().fit(X, y), X, y, name="r", version="1", out_dir=tempfile.mkdtemp() + "/r").path
>>> engine = ModelEngine(path, SessionConfig())
>>> engine.info.name, engine.binding is not None
('r', True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.config import SessionConfig
from edge_runtime.errors import BundleFormatError, BundleSchemaError, InferenceError
from edge_runtime.serving.bundle import MODEL_FILE, Bundle, load_bundle
from edge_runtime.serving.results import ModelInfo
from edge_runtime.serving.schema import FeatureKind, InputLayout, Task
from edge_runtime.serving.session import OnnxSession, SingleRowBinding

__all__ = ["ModelEngine"]


class ModelEngine:
    """A verified bundle loaded into an onnxruntime session.

    Attributes
    ----------
    bundle : Bundle
    info : ModelInfo
    session : OnnxSession
    output_names : list of str
        Outputs requested on every call: ``[label, scores]`` or ``[scores]``.
    binding : SingleRowBinding or None
        Buffers bound for one-row calls (tensor layout with numeric scores).
    """

    def __init__(self, path: str | Path, session_config: SessionConfig, *, variant: str | None = None) -> None:
        self.bundle: Bundle = load_bundle(path)
        manifest = self.bundle.manifest
        self.inputs = manifest.input_schema
        self.outputs = manifest.output_schema
        model_file, version = MODEL_FILE, manifest.version
        if variant is not None:
            variants = {name: entry["file"] for name, entry in manifest.variants.items() if isinstance(entry, dict)}
            if variant not in variants:
                raise BundleFormatError(f"bundle '{self.bundle.path}' has no '{variant}' variant "
                                        f"(it has: {', '.join(variants) or 'none'})")
            model_file, version = variants[variant], f"{manifest.version}+{variant}"
        self.sha256 = str(manifest.files[model_file]["sha256"])
        self.info = ModelInfo(name=manifest.name, version=version, classes=self.outputs.classes)
        self.classifier = self.outputs.task is Task.CLASSIFICATION
        self.session = OnnxSession(self.bundle.path / model_file, session_config)
        self._check_signature()
        self.output_names = [self.outputs.score_output]
        if self.classifier and self.outputs.label_output:
            self.output_names.insert(0, self.outputs.label_output)
        # How the graph's labels become the manifest's classes, when their types differ
        # (set by the warm-up, which sees the label's type): None when they are the same.
        self._relabel: Any = None
        self.binding: SingleRowBinding | None = None
        # Valid only while ``binding`` is set (tensor layout).
        self.row_buffer: Any = None
        self.scores_buffer: Any = None
        self.label_buffer: Any = None
        warm = self._warm_up()
        if self.inputs.layout is InputLayout.TENSOR:
            self._bind(warm)

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Run a batch; return (labels or values, class probabilities or None)."""
        return self.split(self.session.run(self.output_names, feeds))

    def split(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Turn raw outputs into (labels or values, class probabilities or None)."""
        scores = np.asarray(outputs[-1])
        if not self.classifier:
            return scores.reshape(scores.shape[0], -1)[:, 0], None
        if self.outputs.label_output:
            labels = np.asarray(outputs[0]).reshape(-1)
            return (labels if self._relabel is None else labels.astype(self._relabel)), scores
        return np.asarray(self.outputs.classes, dtype=object)[scores.argmax(axis=1)], scores

    def empty(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The result of a batch with no good row."""
        if not self.classifier:
            return np.zeros(0), None
        return np.zeros(0, dtype=object), np.zeros((0, max(len(self.outputs.classes), 1)), dtype=np.float32)

    def _check_signature(self) -> None:
        """Refuse a bundle whose schema does not match the inputs and outputs onnxruntime sees.

        :func:`~edge_runtime.serving.bundle.load_bundle` compared them already, with the
        graph's class labels and categories, from the model file's bytes; this asks the
        session itself, which is what serves.
        """
        inputs = self.session.input_names
        if self.inputs.layout is InputLayout.TENSOR:
            expected: tuple[str, ...] = (self.inputs.tensor_name,)
        else:
            expected = self.inputs.names
        if set(inputs) != set(expected):
            raise BundleSchemaError(
                f"the manifest's inputs {list(expected)} do not match the model's inputs {list(inputs)}"
            )
        for name in [n for n in (self.outputs.label_output, self.outputs.score_output) if n]:
            if name not in self.session.output_names:
                raise BundleSchemaError(
                    f"the manifest names output '{name}', the model has {list(self.session.output_names)}"
                )

    def _warm_up(self) -> list[np.ndarray]:
        """Run one typical row: checks the outputs fit the schema and pays first-call costs now."""
        if self.inputs.layout is InputLayout.TENSOR:
            row = [[_midpoint(f.minimum, f.maximum) for f in self.inputs.features]]
            feeds = {self.inputs.tensor_name: np.array(row, dtype=np.float32)}
        else:
            feeds = {
                f.name: (np.array([[f.categories[0] if f.categories else ""]], dtype=object)
                         if f.kind is FeatureKind.CATEGORICAL
                         else np.array([[_midpoint(f.minimum, f.maximum)]], dtype=np.float32))
                for f in self.inputs.features
            }
        try:
            outputs = self.session.run(self.output_names, feeds)
        except InferenceError as exc:
            # A row the manifest's schema allows does not run: the schema does not fit the graph.
            raise BundleSchemaError(f"the model does not run on a row of the manifest's schema: {exc}") from exc
        if self.classifier and self.outputs.label_output:
            self._relabel = _relabel(self.outputs.classes, np.asarray(outputs[0]).dtype)
        width = np.asarray(outputs[-1]).reshape(1, -1).shape[1]
        if self.classifier and width != len(self.outputs.classes):
            raise BundleSchemaError(
                f"output '{self.outputs.score_output}' has {width} columns, "
                f"the manifest lists {len(self.outputs.classes)} classes"
            )
        return outputs

    def _bind(self, outputs: list[np.ndarray]) -> None:
        """Bind preallocated buffers, shaped like the warm-up outputs, for single-row calls."""
        # A label the graph gives in another type than the classes (a bool target's int64)
        # stays unbound, as a string label does: the single-row path then answers with the
        # class of the top probability, which is how skl2onnx computes the label.
        numeric = {name: out for name, out in zip(self.output_names, outputs)
                   if isinstance(out, np.ndarray) and out.dtype.kind in "fiub"
                   and not (name == self.outputs.label_output and self._relabel is not None)}
        if self.outputs.score_output not in numeric:
            return  # unusual graph: keep the general path
        binding = self.session.bind_single_row(self.inputs.tensor_name, len(self.inputs.features), numeric)
        self.binding = binding
        self.row_buffer = binding.input[0]
        self.scores_buffer = binding.outputs[self.outputs.score_output]
        self.label_buffer = binding.outputs.get(self.outputs.label_output) if self.outputs.label_output else None


def _relabel(classes: tuple[Any, ...], label_type: np.dtype[Any]) -> type | None:
    """The numpy type that turns the graph's labels into the classes' canonical type, or None.

    skl2onnx gives a bool target's labels as int64 (the classes stay ``False``/``True``),
    and a graph from elsewhere may give an integer class as a float.

    >>> _relabel((False, True), np.dtype("int64")), _relabel((0, 1), np.dtype("float32"))
    (<class 'numpy.bool'>, <class 'numpy.int64'>)
    >>> _relabel((0, 1), np.dtype("int64")) is None and _relabel(("a", "b"), np.dtype("O")) is None
    True
    """
    if not classes or label_type.kind not in "iuf":
        return None
    if all(isinstance(c, bool) for c in classes):
        return np.bool_
    if label_type.kind == "f" and all(isinstance(c, int) for c in classes):
        return np.int64
    return None


def _midpoint(low: float | None, high: float | None) -> float:
    if low is None or high is None:
        return 0.0
    # Halves first: (low + high) overflows for ranges near the float limits; then
    # clipped to what the float32 input holds.
    return float(np.clip(low / 2.0 + high / 2.0, _FLOAT32_MIN, _FLOAT32_MAX))


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_MIN = -_FLOAT32_MAX
