"""The folder tree is the architecture: imports point one way, engines have one home each.

Every import counts, at module level or inside a function (the device must not
reach the workstation's code even lazily), and ``TYPE_CHECKING`` imports too.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import edge_runtime

ROOT = Path(__file__).parent.parent
PACKAGES = ("edge_runtime", "converters", "collector")
FILES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))

# The device package's layers, lowest first: a module imports only from lower layers,
# never from its own layer's other groups (monitoring and budgets know nothing of each other).
DEVICE_LAYERS = {
    "version": 0, "errors": 0, "extras": 0,
    "config": 1, "testing": 1,
    "serving": 2,
    "monitoring": 3, "budgets": 3,
    "runtime": 4, "sync": 4,
    "io": 5,
    "bench": 6,
    "cli": 7,
    "__init__": 8, "__main__": 9,
}
# What the device must never import, even inside a function: the workstation and fleet
# code, and the training-side libraries its base install does not have.
NOT_ON_DEVICE = {"converters", "collector", "sklearn", "skl2onnx", "onnx", "pandas", "joblib", "onnxmltools",
                 "xgboost", "lightgbm", "catboost"}
# Each boosting library has one converter module, imported only when export is handed its model.
BOOSTING_CONVERTERS = {"xgboost": "converters.xgboost_converter", "lightgbm": "converters.lightgbm_converter",
                       "catboost": "converters.catboost_converter"}
# The fleet server's layers, lowest first (a group not listed, such as a fleet view, sits
# with ingest; a command-line module on top).
COLLECTOR_LAYERS = {
    "errors": 0,
    "stores": 1,
    "buckets": 2, "bucket_folding": 2,
    "registry": 3, "ingest": 3, "fleet_drift": 3, "fleet_status": 3,
    "metrics": 4, "mqtt_ingest": 4,
    "server": 5,
    "cli": 6,
    "__init__": 7, "__main__": 8,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            # `from edge_runtime.monitoring import store` imports a module, not a name.
            names.update(f"{base}.{alias.name}" for alias in node.names
                         if importlib.util.find_spec(base) is not None
                         and _is_module(f"{base}.{alias.name}"))
    return names


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


GRAPH = {module_name(p): imports(p) for p in FILES}
MODULES = sorted(GRAPH)


def _importers(prefix: str) -> set[str]:
    return {m for m, names in GRAPH.items() if any(n == prefix or n.startswith(prefix + ".") for n in names)}


def _own(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in PACKAGES and n in GRAPH}


def _device_group(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


# ------------------------------------------------------------------ engines
def test_onnxruntime_is_imported_by_the_session_and_the_build_side_quantizer_only() -> None:
    assert _importers("onnxruntime") == {"edge_runtime.serving.session", "converters.quantize"}


def test_only_resources_imports_psutil() -> None:
    assert _importers("psutil") == {"edge_runtime.budgets.resources"}


def test_only_the_store_and_its_migrations_talk_sql() -> None:
    assert _importers("sqlite3") | _importers("sqlite_utils") == {
        "edge_runtime.monitoring.store", "edge_runtime.monitoring.migrations", "collector.stores.sqlite_store"}


def test_only_the_postgresql_fleet_store_imports_psycopg() -> None:
    assert _importers("psycopg") == {"collector.stores.postgres_store"}


def test_only_the_collector_server_imports_the_web_stack() -> None:
    assert _importers("starlette") | _importers("uvicorn") == {"collector.server"}


def test_only_the_collector_metrics_import_prometheus_client() -> None:
    assert _importers("prometheus_client") == {"collector.metrics"}


def test_only_the_http_transport_touches_the_network_over_http() -> None:
    assert _importers("urllib.request") | _importers("http.client") == {"edge_runtime.sync.http_transport"}


def test_only_the_mqtt_transport_imports_paho_on_the_device() -> None:
    assert {m for m in _importers("paho") if m.startswith("edge_runtime")} == {"edge_runtime.sync.mqtt_transport"}


def test_the_collector_imports_paho_in_its_mqtt_front_end_only() -> None:
    users = {module_name(p) for p in sorted((ROOT / "collector").rglob("*.py"))
             if any(n == "paho" or n.startswith("paho.") for n in imports(p))}
    assert users == {"collector.mqtt_ingest"}


def test_only_cli_modules_import_click() -> None:
    users = _importers("click")
    assert users == {m for m in MODULES if m.startswith("edge_runtime.cli")} | {"converters.cli", "collector.cli",
                                                                                "collector.fleet_cli"}


def test_only_the_converter_modules_import_skl2onnx() -> None:
    assert _importers("skl2onnx") == {"converters.sklearn", *BOOSTING_CONVERTERS.values()}


@pytest.mark.parametrize("library", sorted(BOOSTING_CONVERTERS))
def test_each_boosting_library_has_one_converter_module(library: str) -> None:
    assert _importers(library) == {BOOSTING_CONVERTERS[library]}


def test_onnxmltools_is_imported_by_the_xgboost_and_lightgbm_converters_only() -> None:
    assert _importers("onnxmltools") == {BOOSTING_CONVERTERS["xgboost"], BOOSTING_CONVERTERS["lightgbm"]}


def test_export_imports_no_boosting_library_until_handed_its_model() -> None:
    """The libraries are optional: exporting a scikit-learn model never loads one."""
    import subprocess
    import sys

    code = ("import sys, tempfile; from sklearn.linear_model import LogisticRegression; import converters; "
            "m = LogisticRegression().fit([[0.0], [1.0]], [0, 1]); "
            "converters.export(m, [[0.0], [1.0]], name='m', version='1', out_dir=tempfile.mkdtemp() + '/b'); "
            "print(sorted(x for x in ('xgboost', 'lightgbm', 'catboost', 'onnxmltools') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------ direction
def test_the_device_never_imports_the_workstation_or_training_libraries() -> None:
    for module, names in GRAPH.items():
        if module.startswith("edge_runtime"):
            reached = {n.split(".")[0] for n in names} & NOT_ON_DEVICE
            assert not reached, f"{module} imports {sorted(reached)}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("edge_runtime")])
def test_device_layers_point_down(module: str) -> None:
    own = DEVICE_LAYERS[_device_group(module)]
    for target in _own(GRAPH[module]):
        group = _device_group(target)
        if group == _device_group(module):
            continue  # within a group: the acyclic check below
        assert DEVICE_LAYERS[group] < own, f"{module} (layer {own}) imports {target} (layer {DEVICE_LAYERS[group]})"


def test_the_library_never_imports_its_command_line() -> None:
    for module, names in GRAPH.items():
        if not module.startswith(("edge_runtime.cli", "converters.cli", "collector.cli", "collector.fleet_cli",
                                  "edge_runtime.__main__", "collector.__main__")):
            assert not {n for n in names if n.startswith("edge_runtime.cli") or n in ("converters.cli",
                                                                                       "collector.cli",
                                                                                       "collector.fleet_cli")}, module
    assert _importers("converters.cli") == set()  # reached through its entry point only
    assert _importers("collector.cli") == {"collector.__main__"}  # `python -m collector`, else its entry point
    assert _importers("collector.fleet_cli") == set()


def test_converters_and_the_collector_use_no_device_command_but_the_shared_options() -> None:
    for module, names in GRAPH.items():
        if module.startswith(("converters", "collector")):
            cli = {n for n in names if n.startswith("edge_runtime.cli")}
            assert cli <= {"edge_runtime.cli.options"}, f"{module} imports {cli}"


def _collector_group(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _collector_layer(group: str) -> int:
    return COLLECTOR_LAYERS.get(group, COLLECTOR_LAYERS["cli"] if group.endswith("cli") else COLLECTOR_LAYERS["ingest"])


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("collector")])
def test_collector_layers_point_down(module: str) -> None:
    own = _collector_layer(_collector_group(module))
    for target in _own(GRAPH[module]):
        if not target.startswith("collector") or _collector_group(target) == _collector_group(module):
            continue
        layer = _collector_layer(_collector_group(target))
        assert layer < own, f"{module} (layer {own}) imports {target} (layer {layer})"


def test_the_collector_never_reaches_the_workstation_or_the_model_session() -> None:
    """The fleet server reads the device's portable formats (payload, keys, profiles, bundles'
    manifests) and never runs a model: no chain of its own imports reaches onnxruntime's session.
    (Importing any ``edge_runtime`` module still runs ``edge_runtime/__init__``, which loads the
    runtime for its public names: the collector installs the device's base dependencies.)"""
    for module in (m for m in MODULES if m.startswith("collector")):
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            for target in _own(GRAPH[current]):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        assert not {t for t in seen if t.startswith("converters")}, module
        assert "edge_runtime.serving.session" not in seen, module
        assert not {n.split(".")[0] for n in GRAPH[module]} & {"converters", "onnxruntime", "sklearn", "pandas"}


def test_no_import_cycles() -> None:
    """Modules within a group (serving, monitoring, converters...) import one way too."""
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(_own(GRAPH[module])):
            if target == module or _is_package_root(target):
                continue
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in MODULES:
        if module not in state and not _is_package_root(module):
            visit(module, [])


def _is_package_root(module: str) -> bool:
    """Package ``__init__`` modules re-export from below them; they sit on top, not in a cycle."""
    return (ROOT / module.replace(".", "/") / "__init__.py").is_file()


# ------------------------------------------------------------------ surface
@pytest.mark.parametrize("module", [m for m in MODULES if not m.endswith("__main__")])
def test_every_module_declares_all(module: str) -> None:
    loaded = importlib.import_module(module)
    assert isinstance(loaded.__all__, list)
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}: {name}"


def test_public_surface() -> None:
    assert edge_runtime.__all__ == sorted(edge_runtime.__all__)
    assert edge_runtime.__all__ == [
        "BatchResult", "BudgetConfig", "Bundle", "BundleCheck", "BundleError", "BundleFormatError",
        "BundleIntegrityError", "BundleSchemaError", "ColumnMismatchError", "ConfigError", "Decision",
        "DriftPolicy", "DriftReport", "DriftStatus", "EdgeRuntimeError", "ExportError", "FeatureCountError",
        "FeatureDrift", "InferenceError", "InputFormatError", "InputPolicy", "InvalidValueError", "Manifest",
        "MissingFeatureError", "ModelInfo", "MonitorHealth", "MonitoringConfig", "MonitoringDatabase",
        "NonFiniteOutputError", "NonFiniteValueError", "OutOfRangeValueError", "OverloadError", "ParityError", "Prediction",
        "RetentionPolicy", "Runtime", "RuntimeConfig", "SchemaError", "SessionConfig", "StatusReport",
        "StoreBusyError", "StoreCorruptError", "StoreError", "StoreFullError", "UnknownFeatureError",
        "UnseenCategoryError", "UnsupportedModelError", "WindowReport", "__version__", "inspect_bundle",
        "load_bundle", "load_config",
    ]


def test_importing_the_package_loads_no_monitoring_engine() -> None:
    """A runtime that does not monitor never pays for sqlite-utils (nor pandas, which it pulls in)."""
    import subprocess
    import sys

    code = "import sys, edge_runtime; print(sorted(m for m in ('sqlite_utils', 'pandas', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_lazy_name_resolves() -> None:
    for name in edge_runtime.__all__:
        assert getattr(edge_runtime, name) is not None


def test_one_exception_root() -> None:
    from edge_runtime import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.EdgeRuntimeError)
