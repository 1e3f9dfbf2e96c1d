"""Writing bundles: the only module that writes a bundle directory.

A bundle is built in a hidden staging directory next to its destination and
moved into place with one rename, so a failure at any step (a parity check
that does not pass, a full disk, an interrupt) leaves no half-written bundle.
Each manifest is written with its digest beside it (``manifest.sha256``, see
docs/bundle-format.md), and the published directory is readable by every user
(0755, files 0644): the service that serves it rarely runs as the exporting user.

Examples
--------
>>> import pathlib, tempfile
>>> from converters.manifest import new_manifest
>>> from converters.package import BundleWriter
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task
>>> manifest = new_manifest(name="b", version="1",
...                         input_schema=InputSchema(features=(FeatureSpec(name="x"),)),
...                         output_schema=OutputSchema(task=Task.REGRESSION, score_output="y"))
>>> out = pathlib.Path(tempfile.mkdtemp()) / "b"
>>> with BundleWriter(out) as writer:
...     _ = writer.add_file("model.onnx", b"bytes")
...     _ = writer.write_manifest(manifest)
...     final = writer.commit()
>>> sorted(p.name for p in final.iterdir())
['manifest.json', 'manifest.sha256', 'model.onnx']
>>> import json; json.loads((final / "manifest.json").read_text())["files"]["model.onnx"]["bytes"]
5
>>> oct(final.stat().st_mode & 0o777), oct((final / "model.onnx").stat().st_mode & 0o777)
('0o755', '0o644')
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import rfc8785

from edge_runtime.errors import BundleFormatError, ExportError
from edge_runtime.serving.bundle import DIGEST_FILE, MANIFEST_FILE, Manifest, file_sha256, manifest_digest

__all__ = ["BundleWriter"]

# What the published bundle's directories and files are given, whatever the umask did
# (mkdtemp makes its directory 0700): readable by the serving user, writable by none.
DIR_MODE, FILE_MODE = 0o755, 0o644


class BundleWriter:
    """Stage a bundle's files, then publish them with one rename.

    Parameters
    ----------
    out_dir : str or Path
        The bundle directory to create.
    overwrite : bool
        Replace an existing bundle at ``out_dir``. Otherwise an existing
        directory raises ExportError before anything is written.
    """

    def __init__(self, out_dir: str | Path, *, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise ExportError(f"'{self.out_dir}' already exists; pass overwrite=True (--overwrite) to replace it")
        self.overwrite = overwrite
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        # Same parent, so the final rename never crosses a file system.
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", dir=self.out_dir.parent))
        self._files: list[str] = []
        self._committed = False

    def add_file(self, name: str, data: bytes) -> Path:
        """Write one file into the staging directory."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._files.append(name)
        return target

    def write_manifest(self, manifest: Manifest) -> Manifest:
        """Write ``manifest.json`` with a ``files`` entry (sha256 and size) per staged file.

        May be called again to replace the manifest (e.g. to add a parity report).
        Returns the manifest as written.
        """
        files = {name: {"sha256": file_sha256(self.path / name), "bytes": (self.path / name).stat().st_size}
                 for name in sorted(self._files)}
        manifest = dataclasses.replace(manifest, files=files)
        # Through JSON once, so that what is digested is what a reader parses.
        data = json.loads(json.dumps(_finite(manifest.to_dict()), default=_json_default, allow_nan=False))
        try:
            digest = manifest_digest(data)
        except BundleFormatError as exc:
            raise ExportError(f"cannot write the manifest: {exc}") from exc
        canonical = rfc8785.dumps(data)
        # Written in its canonical form, so that loading verifies it with one hash of the
        # file (see bundle._check_digest); `edge-runtime inspect --json` pretty-prints it.
        (self.path / MANIFEST_FILE).write_bytes(canonical + b"\n")
        (self.path / DIGEST_FILE).write_text(digest + "\n", encoding="ascii")
        return manifest

    def commit(self) -> Path:
        """Move the staged bundle to ``out_dir`` (0755, its files 0644) and return that path."""
        for name in [*self._files, MANIFEST_FILE, DIGEST_FILE]:
            os.chmod(self.path / name, FILE_MODE)
            _fsync_file(self.path / name)
        for directory in {(self.path / name).parent for name in self._files} | {self.path}:
            os.chmod(directory, DIR_MODE)
        old = None
        if self.out_dir.exists():
            if not self.overwrite:
                raise ExportError(f"'{self.out_dir}' appeared while exporting; not replacing it")
            old = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.old.", dir=self.out_dir.parent))
            os.replace(self.out_dir, old / "bundle")
        os.replace(self.path, self.out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._committed = True
        return self.out_dir

    def discard(self) -> None:
        """Remove the staging directory."""
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._committed:
            self.discard()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _finite(value: Any) -> Any:
    """The manifest as plain Python values, every non-finite float written as null.

    JSON has no NaN or infinity (RFC 8785 refuses them), and they only reach a
    manifest through reports: a statistic of an all-missing column, say.
    """
    if hasattr(value, "tolist"):  # numpy scalars and arrays, from statistics and class labels
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    # numpy scalars reach the manifest through statistics and class labels.
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to a manifest")
