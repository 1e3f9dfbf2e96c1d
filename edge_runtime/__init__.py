"""edge-runtime: run classic ML models on small CPU-only devices, and watch them there.

The device side. Load a bundle made by :func:`converters.export` and serve it, and
read what monitoring recorded::

    from edge_runtime import MonitoringDatabase, Runtime

    with Runtime("bundles/churn", db="monitor.db") as rt:
        print(rt.predict({"age": 41, "plan": "basic"}).label)
    with MonitoringDatabase("monitor.db") as db:
        print(db.status().decisions)

The package's folders are its layers, lower first: ``errors`` and ``config``;
``serving/`` (bundle, schema, inputs, the onnxruntime session, the loaded model,
results), ``monitoring/`` and ``budgets/``; ``runtime`` (the facade composing them);
``io/`` (row files); ``bench/`` and ``cli/``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edge_runtime.config import (
    BudgetConfig,
    DriftPolicy,
    InputPolicy,
    MonitoringConfig,
    RetentionPolicy,
    RuntimeConfig,
    SessionConfig,
    load_config,
)
from edge_runtime.errors import (
    BundleError,
    BundleFormatError,
    BundleIntegrityError,
    BundleSchemaError,
    ColumnMismatchError,
    ConfigError,
    EdgeRuntimeError,
    ExportError,
    FeatureCountError,
    InferenceError,
    InputFormatError,
    InvalidValueError,
    MissingFeatureError,
    NonFiniteOutputError,
    NonFiniteValueError,
    OutOfRangeValueError,
    OverloadError,
    ParityError,
    SchemaError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    UnknownFeatureError,
    UnseenCategoryError,
    UnsupportedModelError,
)
from edge_runtime.runtime import Runtime
from edge_runtime.serving.bundle import (
    Bundle,
    BundleCheck,
    Manifest,
    inspect_bundle,
    load_bundle,
)
from edge_runtime.serving.results import BatchResult, ModelInfo, Prediction
from edge_runtime.version import __version__

if TYPE_CHECKING:
    from edge_runtime.monitoring.drift import DriftStatus, FeatureDrift
    from edge_runtime.monitoring.guarded_store import MonitorHealth
    from edge_runtime.monitoring.reports import (
        Decision,
        DriftReport,
        MonitoringDatabase,
        StatusReport,
        WindowReport,
    )


__all__ = [
    "BatchResult",
    "BudgetConfig",
    "Bundle",
    "BundleCheck",
    "BundleError",
    "BundleFormatError",
    "BundleIntegrityError",
    "BundleSchemaError",
    "ColumnMismatchError",
    "ConfigError",
    "Decision",
    "DriftPolicy",
    "DriftReport",
    "DriftStatus",
    "EdgeRuntimeError",
    "ExportError",
    "FeatureCountError",
    "FeatureDrift",
    "InferenceError",
    "InputFormatError",
    "InputPolicy",
    "InvalidValueError",
    "Manifest",
    "MissingFeatureError",
    "ModelInfo",
    "MonitorHealth",
    "MonitoringConfig",
    "MonitoringDatabase",
    "NonFiniteOutputError",
    "NonFiniteValueError",
    "OutOfRangeValueError",
    "OverloadError",
    "ParityError",
    "Prediction",
    "RetentionPolicy",
    "Runtime",
    "RuntimeConfig",
    "SchemaError",
    "SessionConfig",
    "StatusReport",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "UnknownFeatureError",
    "UnseenCategoryError",
    "UnsupportedModelError",
    "WindowReport",
    "__version__",
    "inspect_bundle",
    "load_bundle",
    "load_config",
]


# Loaded on first use: sqlite-utils and the sketches cost start-up time (more where pandas
# is installed, which sqlite-utils imports) that a runtime without monitoring should not pay.
_LAZY = {
    "Decision": "edge_runtime.monitoring.reports",
    "DriftReport": "edge_runtime.monitoring.reports",
    "DriftStatus": "edge_runtime.monitoring.drift",
    "FeatureDrift": "edge_runtime.monitoring.drift",
    "MonitorHealth": "edge_runtime.monitoring.guarded_store",
    "MonitoringDatabase": "edge_runtime.monitoring.reports",
    "StatusReport": "edge_runtime.monitoring.reports",
    "WindowReport": "edge_runtime.monitoring.reports",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
