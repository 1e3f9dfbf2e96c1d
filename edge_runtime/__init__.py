"""edge-runtime: run classic ML models on small CPU-only devices, and watch them there.

The device side. Load a bundle made by :func:`converters.export` and serve it::

    from edge_runtime import Runtime
    with Runtime("bundles/churn") as rt:
        print(rt.predict({"age": 41, "plan": "basic"}).label)
"""

from edge_runtime.serving.bundle import Bundle, Manifest, load_bundle
from edge_runtime.config import InputPolicy, RuntimeConfig, SessionConfig, load_config
from edge_runtime.errors import (
    BundleError,
    BundleFormatError,
    BundleIntegrityError,
    ConfigError,
    EdgeRuntimeError,
    InferenceError,
    SchemaError,
)
from edge_runtime.serving.results import BatchResult, ModelInfo, Prediction
from edge_runtime.runtime import Runtime

__version__ = "0.1.0"

__all__ = [
    "BatchResult",
    "Bundle",
    "BundleError",
    "BundleFormatError",
    "BundleIntegrityError",
    "ConfigError",
    "EdgeRuntimeError",
    "InferenceError",
    "InputPolicy",
    "Manifest",
    "ModelInfo",
    "Prediction",
    "Runtime",
    "RuntimeConfig",
    "SchemaError",
    "SessionConfig",
    "__version__",
    "load_bundle",
    "load_config",
]
