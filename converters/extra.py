"""Whether the export extra is installed, asked without importing it (scikit-learn takes ~0.7 s).

Examples
--------
>>> from converters.extra import missing_export_packages
>>> missing_export_packages()
[]
"""

from __future__ import annotations

from edge_runtime.extras import missing_packages, require_packages

__all__ = ["EXPORT_MODULES", "missing_export_packages", "require_export_extra"]

# Module name -> the package that provides it, for the message.
EXPORT_MODULES = {"sklearn": "scikit-learn", "skl2onnx": "skl2onnx", "onnx": "onnx", "pandas": "pandas",
                  "joblib": "joblib"}


def missing_export_packages() -> list[str]:
    """The export extra's packages that cannot be imported here."""
    return missing_packages(EXPORT_MODULES)


def require_export_extra() -> None:
    """Raise ModuleNotFoundError naming what is missing, unless the export extra is installed."""
    require_packages(EXPORT_MODULES)
