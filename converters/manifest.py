"""The manifest every exporter starts from, and what an export returns.

Examples
--------
>>> from converters.manifest import new_manifest
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task
>>> m = new_manifest(name="m", version="1", input_schema=InputSchema(features=(FeatureSpec(name="x"),)),
...                  output_schema=OutputSchema(task=Task.REGRESSION, score_output="y"))
>>> m.format_version, sorted(m.producer)   # always the current format (docs/bundle-format.md)
(3, ['edge_runtime', 'python'])
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import ExportError
from edge_runtime.serving.bundle import FORMAT_VERSION, Manifest
from edge_runtime.serving.schema import InputSchema, OutputSchema
from edge_runtime.version import __version__

__all__ = ["ExportResult", "check_identity", "new_manifest"]


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


def new_manifest(*, name: str, version: str, input_schema: InputSchema, output_schema: OutputSchema,
                 producer: Mapping[str, Any] | None = None) -> Manifest:
    """A manifest of the current format: identity, schemas, creation time and the producer's versions.

    The files, the parity report, the reference and the variants are added as the
    bundle is assembled (:func:`converters.assembly.assemble_bundle`).
    """
    check_identity(name, version)
    return Manifest(
        format_version=FORMAT_VERSION, name=name, version=version,
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        files={}, input_schema=input_schema, output_schema=output_schema,
        producer={"edge_runtime": __version__, "python": platform.python_version(),
                  **(producer or {})},
    )
