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
    ConfigError,
    EdgeRuntimeError,
    InferenceError,
    OverloadError,
    SchemaError,
    StoreError,
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
    from edge_runtime.monitoring.reports import MonitoringDatabase


__all__ = [
    "BatchResult",
    "BudgetConfig",
    "Bundle",
    "BundleCheck",
    "BundleError",
    "BundleFormatError",
    "BundleIntegrityError",
    "ConfigError",
    "DriftPolicy",
    "EdgeRuntimeError",
    "InferenceError",
    "InputPolicy",
    "Manifest",
    "ModelInfo",
    "MonitoringConfig",
    "MonitoringDatabase",
    "OverloadError",
    "Prediction",
    "RetentionPolicy",
    "Runtime",
    "RuntimeConfig",
    "SchemaError",
    "SessionConfig",
    "StoreError",
    "__version__",
    "inspect_bundle",
    "load_bundle",
    "load_config",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: sqlite-utils costs start-up time (more where pandas is
    # installed, which it imports) that a runtime without monitoring should not pay.
    if name == "MonitoringDatabase":
        from edge_runtime.monitoring.reports import MonitoringDatabase

        return MonitoringDatabase
    raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
