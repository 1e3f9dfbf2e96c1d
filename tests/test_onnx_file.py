"""Bring your own ONNX: a graph made elsewhere plus a JSON schema becomes a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters import bundle_onnx
from edge_runtime import Runtime
from edge_runtime.errors import ExportError

WEIGHTS = np.array([[2.0, -2.0], [0.5, 0.0], [-1.0, 1.0]], dtype=np.float32)
BIAS = np.array([0.1, -0.1], dtype=np.float32)


@pytest.fixture
def softmax_onnx(tmp_path: Path) -> Path:
    """A linear softmax classifier built by hand, the way torch.onnx would emit one:
    a single float input and a probability output, no label output."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits_raw"]),
         helper.make_node("Add", ["logits_raw", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "linear_softmax",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="handmade")
    model.ir_version = 8
    path = tmp_path / "softmax.onnx"
    onnx.save(model, path)
    return path


def _expected_probs(x: np.ndarray) -> np.ndarray:
    z = x @ WEIGHTS + BIAS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_bundle_runs_and_matches_the_graph(softmax_onnx: Path, tmp_path: Path) -> None:
    schema = {"task": "classification", "classes": ["cat", "dog"], "features": ["a", "b", "c"]}
    result = bundle_onnx(softmax_onnx, schema, name="pets", version="0.3", out_dir=tmp_path / "pets")
    manifest = result.manifest
    assert manifest.input_schema.tensor_name == "input"
    assert manifest.output_schema.score_output == "probs" and manifest.output_schema.label_output is None
    assert manifest.parity["passed"] is None
    x = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32)
    with Runtime(result.path) as rt:
        first = rt.predict({"a": 1.0, "b": 0.0, "c": 0.0})
        batch = rt.predict_batch(x)
    assert first.label == "cat"
    assert batch.labels.tolist() == ["cat", "dog"]
    assert batch.scores == pytest.approx(_expected_probs(x), abs=1e-6)


def test_schema_file_and_reference_data(softmax_onnx: Path, tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps({"task": "classification", "classes": [0, 1],
                                       "features": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}))
    reference = np.random.default_rng(0).normal(size=(100, 3))
    result = bundle_onnx(softmax_onnx, schema_file, name="p", version="1", out_dir=tmp_path / "p",
                         reference_data=reference)
    assert result.manifest.reference["rows"] == 100
    assert set(result.manifest.files) == {"model.onnx", "reference.bin", "multivariate.bin"}
    assert result.manifest.input_schema.features[0].minimum == pytest.approx(reference[:, 0].min())


@pytest.mark.parametrize("schema, message", [
    ({"task": "classification", "classes": [0, 1], "features": ["a", "b"]},
     "the model's input 'input' takes 3 features, the schema lists 2"),
    ({"task": "classification", "features": ["a", "b", "c"]}, "must list its 'classes'"),
    ({"task": "ranking", "features": ["a", "b", "c"]}, "'task' must be 'classification' or 'regression'"),
    ({"task": "regression", "features": []}, "'features' must be a non-empty list"),
    ({"task": "classification", "classes": [0, 1, 2], "features": ["a", "b", "c"]},
     "the bundle does not run with this schema"),
])
def test_schema_that_does_not_fit_is_refused(softmax_onnx: Path, tmp_path: Path, schema: dict, message: str) -> None:
    with pytest.raises(ExportError) as info:
        bundle_onnx(softmax_onnx, schema, name="p", version="1", out_dir=tmp_path / "p")
    assert message in str(info.value)
    assert not (tmp_path / "p").exists()


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x00not onnx")
    with pytest.raises(ExportError, match="is not a loadable ONNX model"):
        bundle_onnx(bogus, {"task": "regression", "features": ["a"]}, name="p", version="1", out_dir=tmp_path / "p")
    with pytest.raises(ExportError, match="does not exist"):
        bundle_onnx(tmp_path / "none.onnx", {}, name="p", version="1", out_dir=tmp_path / "p")


def _softmax_without_shapes(tmp_path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "no_shapes",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(WEIGHTS, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "no_shapes.onnx"
    onnx.save(model, path)
    return path


def test_a_graph_that_records_no_class_labels_is_not_refused(tmp_path: Path) -> None:
    from edge_runtime import inspect_bundle
    from edge_runtime.serving.graph import CheckStatus

    schema = {"task": "classification", "classes": ["cat", "dog"], "features": ["a", "b", "c"]}
    result = bundle_onnx(_softmax_without_shapes(tmp_path), schema, name="p", version="1", out_dir=tmp_path / "p")
    check = inspect_bundle(result.path)
    assert check.ok
    statuses = {c.field: c.status for c in check.graph}
    assert statuses["output_schema.classes"] is CheckStatus.NOT_RECORDED


def test_the_width_of_the_score_output_is_checked_when_the_graph_records_only_that(softmax_onnx: Path,
                                                                                   tmp_path: Path) -> None:
    from edge_runtime import inspect_bundle

    schema = {"task": "classification", "classes": ["cat", "dog"], "features": ["a", "b", "c"]}
    result = bundle_onnx(softmax_onnx, schema, name="p", version="1", out_dir=tmp_path / "p")
    classes = next(c for c in inspect_bundle(result.path).graph if c.field == "output_schema.classes")
    assert classes.message == "2 classes (the model records their number, not their labels)"


def test_classes_that_contradict_the_graphs_labels_are_refused(tmp_path: Path) -> None:
    """A classifier exported elsewhere with skl2onnx records its labels: a schema listing them
    in another order would mislabel every probability column."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    path = tmp_path / "logreg.onnx"
    path.write_bytes(to_onnx(LogisticRegression().fit(X, y), X[:1], options={"zipmap": False}).SerializeToString())
    with pytest.raises(ExportError) as info:
        bundle_onnx(path, {"task": "classification", "classes": [1, 0], "features": ["a", "b", "c"]},
                    name="p", version="1", out_dir=tmp_path / "p")
    assert str(info.value) == ("the bundle does not run with this schema: manifest classes [1, 0] do not match "
                               "the model's class labels [0, 1]")
    assert not (tmp_path / "p").exists()
    good = bundle_onnx(path, {"task": "classification", "classes": [0, 1], "features": ["a", "b", "c"]},
                       name="p", version="1", out_dir=tmp_path / "p")
    with Runtime(good.path) as rt:
        assert rt.predict([3.0, 0.0, 0.0]).label == 1
