"""Whether the export extra is installed, asked without importing it (scikit-learn takes ~0.7 s).

Examples
--------
>>> from converters.extra import missing_export_packages
>>> missing_export_packages()
[]
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["EXPORT_MODULES", "missing_export_packages", "require_export_extra"]

# Module name -> the package that provides it, for the message.
EXPORT_MODULES = {"sklearn": "scikit-learn", "skl2onnx": "skl2onnx", "onnx": "onnx", "pandas": "pandas",
                  "joblib": "joblib"}


def missing_export_packages() -> list[str]:
    """The export extra's packages that cannot be imported here."""
    missing = []
    for module, package in EXPORT_MODULES.items():
        if module in sys.modules:
            if sys.modules[module] is None:  # blocked on purpose, as tests of a device install do
                missing.append(package)
        elif importlib.util.find_spec(module) is None:
            missing.append(package)
    return missing


def require_export_extra() -> None:
    """Raise ModuleNotFoundError naming what is missing, unless the export extra is installed."""
    missing = missing_export_packages()
    if missing:
        raise ModuleNotFoundError(f"missing {', '.join(missing)}")
