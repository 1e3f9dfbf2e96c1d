"""Reading and verifying bundles: ``model.onnx`` plus ``manifest.json`` and its digest.

A bundle is a directory. The manifest lists every other file with its size and
sha256, so loading can refuse a tampered, truncated or missing file by name; every
name it lists must lie inside the directory, which is checked before any file is
opened. From format 2 on, ``manifest.sha256`` beside the manifest holds the sha256 of
the manifest's canonical JSON (RFC 8785), so an edit of the manifest is refused too;
since the manifest holds the files' checksums, that one digest covers the whole
bundle, and it is what a signature will sign (see docs/bundle-format.md). Finally the
manifest's schema is compared with what the ONNX graph records (:mod:`.graph`).
Only :mod:`converters.package` writes bundles; this module only reads them.

:func:`load_bundle` raises at the first problem; :func:`inspect_bundle` runs the same
checks and reports each, so that ``edge-runtime inspect`` refuses exactly what loading
refuses.

Examples
--------
>>> import json, tempfile, numpy as np
>>> from sklearn.linear_model import Ridge
>>> from converters import export
>>> from edge_runtime.serving.bundle import inspect_bundle, load_bundle
>>> X = np.arange(40.0).reshape(20, 2); y = X.sum(axis=1)
>>> path = export(Ridge().fit(X, y), X, y, name="demo", version="1", out_dir=tempfile.mkdtemp() + "/b").path
>>> load_bundle(path).manifest.name, inspect_bundle(path).protected
('demo', True)
>>> manifest = json.loads((path / "manifest.json").read_text())
>>> manifest["name"] = "renamed"
>>> _ = (path / "manifest.json").write_text(json.dumps(manifest))
>>> load_bundle(path)
Traceback (most recent call last):
...
edge_runtime.errors.BundleIntegrityError: bundle file 'manifest.json' does not match its digest in manifest.sha256 (altered)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785

from edge_runtime.errors import BundleError, BundleFormatError, BundleIntegrityError
from edge_runtime.serving.graph import GraphCheck, read_graph, schema_checks
from edge_runtime.serving.schema import FeatureKind, InputSchema, OutputSchema, field_error

__all__ = [
    "DIGEST_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "Bundle",
    "BundleCheck",
    "DigestCheck",
    "FileCheck",
    "Manifest",
    "check_files",
    "file_sha256",
    "inspect_bundle",
    "load_bundle",
    "manifest_digest",
    "read_manifest",
]

FORMAT_VERSION = 3
# The first format of each feature kind: an older manifest naming a newer kind was not written by
# an exporter of that format, and is refused as such.
_KIND_SINCE = {FeatureKind.BOOLEAN: 3}
MANIFEST_FILE = "manifest.json"
DIGEST_FILE = "manifest.sha256"
MODEL_FILE = "model.onnx"
# Far above any real manifest (a thousand features' statistics take ~1 MB); a bigger
# file is refused before it is read into memory.
MAX_MANIFEST_BYTES = 64 << 20
_DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_DIGEST_MAX_BYTES = 1024


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


def manifest_digest(data: Any) -> str:
    """The digest of a manifest: ``sha256:`` and the hex sha256 of its RFC 8785 canonical JSON.

    ``data`` is the manifest as JSON reads it (dicts, lists, strings, numbers). The
    canonical form sorts keys, drops whitespace and writes numbers and strings one
    way only, so the digest does not depend on how ``manifest.json`` was formatted.

    Raises
    ------
    BundleFormatError
        The manifest holds a value RFC 8785 cannot represent (NaN, infinity, an
        integer beyond ±2**53, a string with a lone surrogate).

    Examples
    --------
    >>> manifest_digest({"b": 1.0, "a": "é"}) == manifest_digest({"a": "é", "b": 1})
    True
    >>> manifest_digest({"a": 1})
    'sha256:015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862'
    """
    try:
        canonical = rfc8785.dumps(data)
    except rfc8785.CanonicalizationError as exc:
        raise BundleFormatError(f"manifest.json holds a value canonical JSON (RFC 8785) cannot represent: "
                                f"{exc}") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate, which JSON's \u escapes can spell
        raise BundleFormatError(f"manifest.json holds a string that is not valid Unicode ({exc.reason})") from exc
    except RecursionError as exc:
        raise BundleFormatError("manifest.json is nested too deeply") from exc
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _format_version(data: Any) -> int:
    """The manifest's format version; refuses a newer one before anything else is read."""
    if not isinstance(data, dict):
        raise BundleFormatError("manifest.json does not hold a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleFormatError(f"manifest.json has no positive integer format_version "
                                f"(got {_brief(version)})")
    if version > FORMAT_VERSION:
        raise BundleFormatError(
            f"bundle format version {version} is newer than this edge-runtime reads "
            f"(up to {FORMAT_VERSION}); upgrade edge-runtime"
        )
    return version


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key(name: str) -> str:
    """A key inside a field path of a message: ``files["model.onnx"]``."""
    text = json.dumps(name, ensure_ascii=False)
    return text if len(text) <= 80 else text[:76] + '..."'


def _check_file_name(name: Any) -> str:
    """Refuse a file entry that could name something outside the bundle, by its text alone."""
    if not isinstance(name, str) or not name:
        raise field_error("files", "an object keyed by file names", name)
    problem = None
    if "\x00" in name:
        problem = "holds a NUL byte"
    elif name.startswith("/") or re.match(r"[A-Za-z]:", name):
        problem = "is an absolute path"
    elif "\\" in name:
        problem = "holds a backslash"
    elif any(part in ("", ".", "..") for part in name.split("/")):
        problem = "has an empty, '.' or '..' path component"
    else:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            problem = "is not valid Unicode"
    if problem is not None:
        raise BundleFormatError(f"manifest file entry {_brief(name)} {problem}: every file of a bundle "
                                "lies inside its directory")
    return name


def _files(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise field_error("files", "an object of file name to {sha256, bytes}", value)
    files: dict[str, dict[str, Any]] = {}
    for name, entry in value.items():
        _check_file_name(name)
        where = f"files[{_key(name)}]"
        if not isinstance(entry, dict):
            raise field_error(where, "an object with 'sha256' and 'bytes'", entry)
        digest, size = entry.get("sha256"), entry.get("bytes")
        if not isinstance(digest, str) or not _SHA256_PATTERN.fullmatch(digest):
            raise field_error(where + ".sha256", "64 lowercase hex digits", digest)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise field_error(where + ".bytes", "a non-negative integer", size)
        files[name] = entry
    return files


def _report(value: Any, where: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise field_error(where, "an object or null", value)
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise field_error(where, "a non-empty string", value)
    return value


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
    def from_dict(cls, data: Any) -> Manifest:
        """Build from a parsed ``manifest.json``, refusing newer format versions and malformed fields.

        Raises
        ------
        BundleFormatError
            A newer format, or a field of the wrong type; the message names the field.
        """
        version = _format_version(data)
        files = _files(data.get("files"))
        created_at = data.get("created_at", "")
        if not isinstance(created_at, str):
            raise field_error("created_at", "a string", created_at)
        reference = _report(data.get("reference"), "reference")
        if reference is not None:
            sketches = _report(reference.get("sketches"), "reference.sketches")
            name = (sketches or {}).get("file")
            if name is not None and not (isinstance(name, str) and name in files):
                raise field_error("reference.sketches.file", "a file the manifest's 'files' list", name)
        variants = _report(data.get("variants"), "variants") or {}
        for variant, entry in variants.items():
            # {"int8": {"file", "parity", "bytes"}}, or {"note": "..."} when nothing was made.
            if isinstance(entry, dict) and not (isinstance(entry.get("file"), str) and entry["file"] in files):
                raise field_error(f"variants[{_key(variant)}].file", "a file the manifest's 'files' list",
                                  entry.get("file"))
            if not isinstance(entry, (dict, str)):
                raise field_error(f"variants[{_key(variant)}]", "an object or a note", entry)
        input_schema = InputSchema.from_dict(data.get("input_schema"))
        for i, spec in enumerate(input_schema.features):
            since = _KIND_SINCE.get(spec.kind, 1)
            if version < since:
                raise field_error(
                    f"input_schema.features[{i}].kind",
                    f"a kind of format {version} (kind '{spec.kind.value}' comes with format {since})",
                    spec.kind.value)
        return cls(
            format_version=version,
            name=_string(data.get("name"), "name"),
            version=_string(data.get("version"), "version"),
            created_at=created_at,
            files=files,
            input_schema=input_schema,
            output_schema=OutputSchema.from_dict(data.get("output_schema")),
            producer=_report(data.get("producer"), "producer") or {},
            parity=_report(data.get("parity"), "parity"),
            reference=reference,
            variants=variants,
        )

    @property
    def model_files(self) -> tuple[str, ...]:
        """The ONNX files of the bundle: ``model.onnx``, then each variant's file."""
        variants = (entry["file"] for entry in self.variants.values() if isinstance(entry, dict))
        return tuple(dict.fromkeys([MODEL_FILE, *variants]))


@dataclass(frozen=True, slots=True)
class FileCheck:
    """The verification result of one bundle file."""

    name: str
    ok: bool
    reason: str = "ok"


@dataclass(frozen=True, slots=True)
class DigestCheck:
    """The verification of ``manifest.json`` against the digest recorded beside it.

    Attributes
    ----------
    recorded : str or None
        What ``manifest.sha256`` holds (None when it is missing or unreadable).
    computed : str
        The digest of the manifest as read: ``sha256:`` and 64 hex digits.
    ok : bool
    reason : str
        Why it failed (``"ok"`` otherwise).
    """

    recorded: str | None
    computed: str
    ok: bool
    reason: str = "ok"


@dataclass(frozen=True, slots=True)
class BundleCheck:
    """A bundle's manifest and every verification loading does (``edge-runtime inspect``).

    Attributes
    ----------
    manifest : Manifest
    files : tuple of FileCheck
        Each file the manifest lists: present, of its size and sha256.
    digest : DigestCheck or None
        The manifest against ``manifest.sha256``; None for a bundle of format 1 without
        one, whose manifest no check covers (:attr:`protected` is False).
    graph : tuple of GraphCheck
        The manifest's schema against each model file's graph.
    """

    manifest: Manifest
    files: tuple[FileCheck, ...]
    digest: DigestCheck | None = None
    graph: tuple[GraphCheck, ...] = ()

    @property
    def protected(self) -> bool:
        """True when a digest covers the manifest (and through it every file) and matches."""
        return self.digest is not None and self.digest.ok

    @property
    def ok(self) -> bool:
        """True when loading would accept the bundle: nothing below failed."""
        return self.error() is None

    def error(self) -> BundleError | None:
        """The error :func:`load_bundle` raises for this bundle, or None."""
        if self.digest is not None and not self.digest.ok:
            return BundleIntegrityError(MANIFEST_FILE, self.digest.reason)
        for check in self.files:
            if not check.ok:
                return BundleIntegrityError(check.name, check.reason)
        for graph_check in self.graph:
            if not graph_check.ok:
                return graph_check.error()
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``edge-runtime inspect --json``."""
        digest = None if self.digest is None else {
            "file": DIGEST_FILE, "recorded": self.digest.recorded, "computed": self.digest.computed,
            "ok": self.digest.ok, "reason": self.digest.reason}
        return {"manifest": self.manifest.to_dict(),
                "verification": {"ok": self.ok, "protected": self.protected, "digest": digest,
                                 "files": [{"name": c.name, "ok": c.ok, "reason": c.reason} for c in self.files],
                                 "graph": [c.to_dict() for c in self.graph]}}


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        """Path of the ONNX model file."""
        return self.path / MODEL_FILE


def _inside(root: Path, name: str) -> Path:
    """``root / name``, refused when it resolves (through symlinks) outside ``root``.

    ``name`` has passed :func:`_check_file_name` (relative, no ``..``), so only a
    symlink on the way can lead out: each component is looked at once (an ``lstat``),
    and the full resolution runs only where one is a link.
    """
    target = root / name
    try:
        current = root
        for part in name.split("/"):
            current = current / part
            if stat.S_ISLNK(os.lstat(current).st_mode):
                real, real_root = Path(os.path.realpath(target)), Path(os.path.realpath(root))
                if not real.is_relative_to(real_root) or real == real_root:
                    raise BundleFormatError(f"bundle file {_brief(name)} resolves to '{real}', outside the "
                                            "bundle directory")
                break
    except FileNotFoundError:
        pass  # nothing there to lead out; the file's own check says it is missing
    except (OSError, ValueError) as exc:
        raise BundleFormatError(f"bundle file {_brief(name)} cannot be resolved ({exc})") from exc
    return target


def _read_small(root: Path, name: str, limit: int) -> bytes:
    """A file the format names (manifest, digest), contained, regular and at most ``limit`` bytes."""
    path = _inside(root, name)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise BundleIntegrityError(name, "is not a regular file")
        if info.st_size > limit:
            raise BundleIntegrityError(name, f"has {info.st_size} bytes, more than the {limit} it may hold")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleIntegrityError(name, "is missing") from exc
    except OSError as exc:
        raise BundleIntegrityError(name, f"cannot be read ({exc.strerror or exc})") from exc


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8785 (and I-JSON) take one value per key; json would silently keep the last.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise BundleFormatError(f"manifest.json has the key {_brief(key)} twice in one object")
        obj[key] = value
    return obj


def _read_manifest_bytes(root: Path) -> bytes:
    if not root.is_dir():
        raise BundleError(f"bundle directory '{root}' does not exist")
    return _read_small(root, MANIFEST_FILE, MAX_MANIFEST_BYTES)


def _parse_manifest(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise BundleFormatError(f"manifest.json is not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise BundleFormatError("manifest.json is nested too deeply") from exc


def read_manifest(path: str | Path) -> Manifest:
    """Parse ``manifest.json`` of the bundle at ``path`` without checking files or digest."""
    return Manifest.from_dict(_parse_manifest(_read_manifest_bytes(Path(path))))


def _check_digest(root: Path, raw: bytes, data: Any, version: int) -> DigestCheck | None:
    if version < 2 and not (root / DIGEST_FILE).exists():
        return None  # format 1 had no digest: unprotected
    # A digest beside a format 1 manifest is checked too: lowering format_version does not skip it.
    try:
        text = _read_small(root, DIGEST_FILE, _DIGEST_MAX_BYTES).decode("ascii").strip()
    except BundleIntegrityError as exc:
        return DigestCheck(None, manifest_digest(data), False, f"has no readable digest: {exc}")
    except UnicodeDecodeError:
        text = ""
    # The exporter writes manifest.json as its canonical bytes (and a newline): then one
    # sha256 of the file verifies it. Matching the digest implies those bytes are the
    # canonical form of the manifest that was digested, so the (pure-Python, ~0.4 ms per
    # KB) canonicalization runs only for a manifest rewritten in another layout.
    computed = "sha256:" + hashlib.sha256(raw.removesuffix(b"\n")).hexdigest()
    if computed != text:
        computed = manifest_digest(data)
    if not _DIGEST_PATTERN.fullmatch(text):
        return DigestCheck(None, computed, False, f"has no readable digest: {DIGEST_FILE} does not hold "
                                                  "'sha256:' and 64 lowercase hex digits")
    if text != computed:
        return DigestCheck(text, computed, False, f"does not match its digest in {DIGEST_FILE} (altered)")
    return DigestCheck(text, computed, True)


def _hash_file(path: Path, entry: dict[str, Any], keep: bool) -> tuple[str, bytes | None]:
    """Check one file; return the reason it fails ("ok" if not) and, with ``keep``, its bytes."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file", None
        if info.st_size != entry["bytes"]:
            return f"has {info.st_size} bytes, the manifest says {entry['bytes']} (truncated or altered)", None
        if keep:
            # The graph is read from the very bytes whose checksum matched.
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
        else:
            data, digest = None, file_sha256(path)
    except FileNotFoundError:
        return "is missing", None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})", None
    if digest != entry["sha256"]:
        return "does not match its sha256 checksum (altered)", None
    return "ok", data


def _verify_files(root: Path, manifest: Manifest) -> tuple[list[FileCheck], dict[str, bytes]]:
    # Every entry is resolved and contained before any file is opened.
    paths = {name: _inside(root, name) for name in sorted(manifest.files)}
    models = set(manifest.model_files)
    checks, blobs = [], {}
    for name, path in paths.items():
        reason, data = _hash_file(path, manifest.files[name], name in models)
        checks.append(FileCheck(name, reason == "ok", reason))
        if data is not None:
            blobs[name] = data
    if MODEL_FILE not in manifest.files:
        checks.append(FileCheck(MODEL_FILE, False, "is not listed in the manifest"))
    return checks, blobs


def check_files(path: str | Path, manifest: Manifest) -> list[FileCheck]:
    """Check every file the manifest lists: inside the bundle, present, right size, right sha256.

    Raises
    ------
    BundleFormatError
        An entry resolves outside the bundle directory (checked before any file is read).
    """
    return _verify_files(Path(path), manifest)[0]


def _graph_checks(manifest: Manifest, blobs: dict[str, bytes]) -> list[GraphCheck]:
    checks: list[GraphCheck] = []
    for name in manifest.model_files:
        if name not in blobs:
            continue  # missing or altered: its file check says so
        try:
            graph = read_graph(blobs[name])
        except BundleFormatError as exc:
            checks.append(GraphCheck.unreadable(name, str(exc)))
            continue
        checks.extend(schema_checks(manifest.input_schema, manifest.output_schema, graph, name))
    return checks


def _verify(root: Path, *, stop_at_first: bool) -> BundleCheck:
    raw = _read_manifest_bytes(root)
    data = _parse_manifest(raw)
    version = _format_version(data)
    digest = _check_digest(root, raw, data, version)
    if stop_at_first and digest is not None and not digest.ok:
        raise BundleIntegrityError(MANIFEST_FILE, digest.reason)
    manifest = Manifest.from_dict(data)
    files, blobs = _verify_files(root, manifest)
    check = BundleCheck(manifest, tuple(files), digest, tuple(_graph_checks(manifest, blobs)))
    if stop_at_first and (error := check.error()) is not None:
        raise error
    return check


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle's manifest and verify it, every file it lists and its schema against the graph.

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
        The manifest is unreadable, from a newer format version, has a malformed field,
        or lists a file outside the bundle directory.
    BundleIntegrityError
        A file is missing, truncated or altered, or the manifest does not match its
        digest; the message names the file.
    BundleSchemaError
        The manifest's schema does not fit the ONNX graph (inputs, feature count,
        class labels, encoder categories); the message gives both values.
    """
    root = Path(path)
    return Bundle(root, _verify(root, stop_at_first=True).manifest)


def inspect_bundle(path: str | Path) -> BundleCheck:
    """Run every check :func:`load_bundle` runs, reporting each instead of raising at the first.

    ``BundleCheck.ok`` is False exactly when loading would refuse the bundle, and
    ``BundleCheck.error()`` is what it would raise.

    Raises
    ------
    BundleError
        The directory does not exist, or the manifest cannot be read, is of a newer
        format, has a malformed field or lists a file outside the bundle directory.
    """
    return _verify(Path(path), stop_at_first=False)
