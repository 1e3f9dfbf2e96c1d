"""The manifest fields every exporter fills the same way.

Examples
--------
>>> from converters.manifest import base_manifest
>>> m = base_manifest(name="m", version="1")
>>> m["format_version"], sorted(m["producer"])
(1, ['edge_runtime', 'python'])
"""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edge_runtime
from edge_runtime.serving.bundle import FORMAT_VERSION, Manifest
from edge_runtime.errors import ExportError

__all__ = ["ExportResult", "base_manifest", "check_identity"]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """A bundle written by an exporter."""

    path: Path
    manifest: Manifest

    @property
    def parity(self) -> dict[str, Any] | None:
        """The parity report stored in the manifest."""
        return self.manifest.parity


def check_identity(name: Any, version: Any) -> None:
    """Refuse an empty or non-string model name or version."""
    for field, value in (("name", name), ("version", version)):
        if not isinstance(value, str) or not value.strip():
            raise ExportError(f"The '{field}' parameter must be a non-empty string. Got {value!r} instead.")


def base_manifest(*, name: str, version: str) -> dict[str, Any]:
    """Format version, identity, creation time and the producer's own versions."""
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "producer": {"edge_runtime": edge_runtime.__version__, "python": platform.python_version()},
    }
