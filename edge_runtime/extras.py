"""Whether an install extra's packages are importable, asked without importing them.

The workstation (``converters``) and the fleet server (``collector``) each check their
extra this way before their commands load, so a missing one is named in one line.

Examples
--------
>>> missing_packages({"json": "json (stdlib)", "no_such_module_here": "no-such-package"})
['no-such-package']
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping

__all__ = ["missing_packages", "require_packages"]


def missing_packages(modules: Mapping[str, str]) -> list[str]:
    """The packages (values) whose modules (keys) cannot be imported here."""
    missing = []
    for module, package in modules.items():
        if module in sys.modules:
            if sys.modules[module] is None:  # blocked on purpose, as tests of a device install do
                missing.append(package)
        elif importlib.util.find_spec(module) is None:
            missing.append(package)
    return missing


def require_packages(modules: Mapping[str, str]) -> None:
    """Raise ModuleNotFoundError naming what is missing, unless every module can be imported."""
    missing = missing_packages(modules)
    if missing:
        raise ModuleNotFoundError(f"missing {', '.join(missing)}")
