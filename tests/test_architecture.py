"""The folder tree is the architecture: imports point one way, engines have one home each."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import edge_runtime

ROOT = Path(__file__).parent.parent
MODULES = sorted([*ROOT.glob("edge_runtime/*.py"), *ROOT.glob("converters/*.py")])

# Lower layers never import higher ones (edge_runtime modules; converters sit beside, above all but cli).
LAYERS = {
    "errors": 0,
    "schema": 1, "config": 1, "results": 1, "tabular": 1, "sketches": 1, "resources": 1, "testing": 1,
    "worker": 1,
    "bundle": 2, "inputs": 2, "runner": 2, "store": 2, "governor": 2,
    "profile": 3, "engine": 3,
    "drift": 4,
    "monitor": 5,
    "runtime": 6,
    "bench": 7,
    "cli": 8, "__init__": 8, "__main__": 9,
}


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module(path: Path) -> str:
    return f"{path.parent.name}.{path.stem}"


def _importers(prefix: str) -> set[str]:
    return {_module(p) for p in MODULES
            if any(name == prefix or name.startswith(prefix + ".") for name in _imports(p))}


def test_only_runner_imports_onnxruntime() -> None:
    assert _importers("onnxruntime") == {"edge_runtime.serving.session"}


def test_only_resources_imports_psutil() -> None:
    assert _importers("psutil") == {"edge_runtime.budgets.resources"}


def test_only_cli_imports_click() -> None:
    assert _importers("click") == {"edge_runtime.cli"}


def test_only_converters_sklearn_imports_skl2onnx() -> None:
    assert _importers("skl2onnx") == {"converters.sklearn"}


def test_device_side_never_imports_converters_or_sklearn_at_module_level() -> None:
    for path in ROOT.glob("edge_runtime/*.py"):
        top = _imports(path, top_level_only=True)
        assert not any(n.split(".")[0] in {"converters", "sklearn", "skl2onnx", "pandas", "onnx"} for n in top), path


def test_edge_runtime_layers_point_down() -> None:
    for path in ROOT.glob("edge_runtime/*.py"):
        own = LAYERS[path.stem]
        for name in _imports(path, top_level_only=True):
            if name.startswith("edge_runtime."):
                target = name.split(".")[1]
                assert LAYERS[target] < own or target == path.stem, f"{path.stem} imports {target}"


@pytest.mark.parametrize("path", MODULES, ids=_module)
def test_every_module_declares_all(path: Path) -> None:
    if path.stem == "__main__":
        return
    module = importlib.import_module(_module(path).replace(".__init__", ""))
    assert isinstance(module.__all__, list)
    for name in module.__all__:
        assert hasattr(module, name), f"{path}: {name}"


def test_public_surface() -> None:
    assert edge_runtime.__all__ == sorted(edge_runtime.__all__)
    assert edge_runtime.__all__ == [
        "BatchResult", "Bundle", "BundleError", "BundleFormatError", "BundleIntegrityError", "ConfigError",
        "EdgeRuntimeError", "InferenceError", "InputPolicy", "Manifest", "ModelInfo", "Prediction", "Runtime",
        "RuntimeConfig", "SchemaError", "SessionConfig", "__version__", "load_bundle", "load_config",
    ]


def test_one_exception_root() -> None:
    from edge_runtime import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.EdgeRuntimeError)
