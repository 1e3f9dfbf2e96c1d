"""Reading and verifying bundles: ``model.onnx`` plus ``manifest.json``.

A bundle is a directory. The manifest lists every other file with its size and
sha256, so loading can refuse a tampered, truncated or missing file by name.
Only :mod:`converters.package` writes bundles; this module only reads them.

Examples
--------
>>> import hashlib, json, pathlib, tempfile
>>> from edge_runtime.serving.bundle import load_bundle, FORMAT_VERSION
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "model.onnx").write_bytes(b"not really onnx")
>>> manifest = {
...     "format_version": FORMAT_VERSION, "name": "demo", "version": "1",
...     "created_at": "2026-01-01T00:00:00+00:00",
...     "files": {"model.onnx": {"sha256": hashlib.sha256(b"not really onnx").hexdigest(),
...                              "bytes": 15}},
...     "input_schema": {"features": [{"name": "x"}]},
...     "output_schema": {"task": "regression", "score_output": "variable"},
... }
>>> _ = (d / "manifest.json").write_text(json.dumps(manifest))
>>> load_bundle(d).manifest.name
'demo'
>>> _ = (d / "model.onnx").write_bytes(b"tampered")
>>> load_bundle(d)
Traceback (most recent call last):
...
edge_runtime.errors.BundleIntegrityError: bundle file 'model.onnx' has 8 bytes, the manifest says 15 (truncated or altered)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.errors import BundleError, BundleFormatError, BundleIntegrityError
from edge_runtime.serving.schema import InputSchema, OutputSchema

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "Bundle",
    "BundleCheck",
    "FileCheck",
    "Manifest",
    "check_files",
    "file_sha256",
    "inspect_bundle",
    "load_bundle",
    "read_manifest",
]

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "f"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """The parsed ``manifest.json`` of a bundle.

    ``producer``, ``parity``, ``reference`` and ``variants`` stay plain dicts:
    they are reports for people and later tools, and their keys grow with new
    exporters. ``variants`` maps a name (``int8``) to a lighter model file in the
    bundle with its own parity report.
    """

    format_version: int
    name: str
    version: str
    created_at: str
    files: dict[str, dict[str, Any]]
    input_schema: InputSchema
    output_schema: OutputSchema
    producer: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    variants: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict stored as ``manifest.json``."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "files": self.files,
            "input_schema": self.input_schema.to_dict(),
            "output_schema": self.output_schema.to_dict(),
            "producer": self.producer,
            "parity": self.parity,
            "reference": self.reference,
            "variants": self.variants,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Build from a parsed ``manifest.json``, refusing newer format versions."""
        if not isinstance(data, dict):
            raise BundleFormatError("manifest.json does not hold a JSON object")
        version = data.get("format_version")
        if not isinstance(version, int):
            raise BundleFormatError(f"manifest.json has no integer format_version (got {version!r})")
        if version > FORMAT_VERSION:
            raise BundleFormatError(
                f"bundle format version {version} is newer than this edge-runtime reads "
                f"(up to {FORMAT_VERSION}); upgrade edge-runtime"
            )
        try:
            return cls(
                format_version=version,
                name=str(data["name"]),
                version=str(data["version"]),
                created_at=str(data.get("created_at", "")),
                files=dict(data["files"]),
                input_schema=InputSchema.from_dict(data["input_schema"]),
                output_schema=OutputSchema.from_dict(data["output_schema"]),
                producer=dict(data.get("producer") or {}),
                parity=data.get("parity"),
                reference=data.get("reference"),
                variants=dict(data.get("variants") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleFormatError(f"manifest.json is missing or has a bad field: {exc}") from exc


@dataclass(frozen=True, slots=True)
class FileCheck:
    """The verification result of one bundle file."""

    name: str
    ok: bool
    reason: str = "ok"


@dataclass(frozen=True, slots=True)
class BundleCheck:
    """A bundle's manifest and the verification of every file it lists (``edge-runtime inspect``)."""

    manifest: Manifest
    files: tuple[FileCheck, ...]

    @property
    def ok(self) -> bool:
        """True when every file is present and intact."""
        return all(check.ok for check in self.files)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``edge-runtime inspect --json``."""
        return {"manifest": self.manifest.to_dict(),
                "verification": {"ok": self.ok, "files": [{"name": c.name, "ok": c.ok, "reason": c.reason}
                                                          for c in self.files]}}


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        """Path of the ONNX model file."""
        return self.path / MODEL_FILE


def read_manifest(path: str | Path) -> Manifest:
    """Parse ``manifest.json`` of the bundle at ``path`` without checking files."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle directory '{root}' does not exist")
    manifest_path = root / MANIFEST_FILE
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleIntegrityError(MANIFEST_FILE, "is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleFormatError(f"manifest.json is not valid JSON ({exc})") from exc
    return Manifest.from_dict(data)


def check_files(path: str | Path, manifest: Manifest) -> list[FileCheck]:
    """Check every file the manifest lists: present, right size, right sha256."""
    root = Path(path)
    checks = []
    for name, entry in sorted(manifest.files.items()):
        target = root / name
        if not target.is_file():
            checks.append(FileCheck(name, False, "is missing"))
            continue
        size = target.stat().st_size
        expected_size = entry.get("bytes")
        if expected_size is not None and size != expected_size:
            reason = f"has {size} bytes, the manifest says {expected_size} (truncated or altered)"
            checks.append(FileCheck(name, False, reason))
        elif file_sha256(target) != entry.get("sha256"):
            checks.append(FileCheck(name, False, "does not match its sha256 checksum (altered)"))
        else:
            checks.append(FileCheck(name, True))
    if MODEL_FILE not in manifest.files:
        checks.append(FileCheck(MODEL_FILE, False, "is not listed in the manifest"))
    return checks


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle's manifest and verify every file it lists.

    Parameters
    ----------
    path : str or Path
        The bundle directory.

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        The directory does not exist.
    BundleFormatError
        The manifest is unreadable or from a newer format version.
    BundleIntegrityError
        A file is missing, truncated or altered; the message names the file.
    """
    manifest = read_manifest(path)
    for check in check_files(path, manifest):
        if not check.ok:
            raise BundleIntegrityError(check.name, check.reason)
    return Bundle(Path(path), manifest)


def inspect_bundle(path: str | Path) -> BundleCheck:
    """Read a bundle's manifest and check every file, reporting each instead of raising at the first.

    Raises
    ------
    BundleError
        The directory does not exist, or the manifest cannot be read.
    """
    manifest = read_manifest(path)
    return BundleCheck(manifest, tuple(check_files(path, manifest)))
