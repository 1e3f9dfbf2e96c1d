"""Whether the collector extra is installed, asked without importing it.

Examples
--------
>>> from collector.extra import missing_collector_packages
>>> missing_collector_packages()
[]
"""

from __future__ import annotations

from edge_runtime.extras import missing_packages, require_packages

__all__ = ["COLLECTOR_MODULES", "missing_collector_packages", "require_collector_extra"]

# Module name -> the package that provides it, for the message. psycopg is left out: a
# SQLite store works without it, and opening a postgresql:// store names it when missing.
COLLECTOR_MODULES = {"starlette": "starlette", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client",
                     "cryptography": "cryptography"}


def missing_collector_packages() -> list[str]:
    """The collector extra's packages that cannot be imported here."""
    return missing_packages(COLLECTOR_MODULES)


def require_collector_extra() -> None:
    """Raise ModuleNotFoundError naming what is missing, unless the collector extra is installed."""
    require_packages(COLLECTOR_MODULES)
