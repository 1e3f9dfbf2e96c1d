"""Hostile manifests: every one is loaded or refused with a BundleError, never another exception.

Property-based (hypothesis). Each generated case starts from a kept bundle (both layouts,
format 1 and 2), mutates its ``manifest.json`` (values of another type, missing and extra
keys, hostile file names and paths, huge and non-finite numbers, unicode, reordered or
duplicated lists), usually writes a digest that matches the mutated manifest (so the
mutation reaches the schema and graph checks instead of stopping at the digest), and
goes through ``load_bundle``, ``inspect_bundle`` and ``Runtime``:

- each either succeeds or raises a :class:`BundleError`;
- ``inspect_bundle`` refuses (raises, or reports ``ok=False``) exactly when
  ``load_bundle`` does, with the same message when it reports, and ``Runtime`` loads
  exactly what ``load_bundle`` loads;
- a bundle that loads answers a row of its own schema or refuses it with an
  ``EdgeRuntimeError``.

A second property feeds raw bytes (random, and the real manifest with bytes flipped
or cut) as ``manifest.json``. The fast tier runs a small derandomized sample; the slow
tier runs 3,000 structural and 1,000 byte-level cases.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime import Runtime, inspect_bundle, load_bundle
from edge_runtime.errors import BundleError, BundleFormatError, EdgeRuntimeError
from edge_runtime.serving.bundle import DIGEST_FILE, manifest_digest

KEPT = sorted((Path(__file__).parent / "data" / "bundles").glob("format-*"))

HOSTILE_NAMES = [
    "../../etc/passwd", "/etc/passwd", "..", ".", "", "a/../../b", "model.onnx/../../x", "C:\\boot.ini",
    "x\x00y", "\udc80", "é/ü.onnx", "manifest.json", "manifest.sha256", "reference.bin", "model.onnx",
    "model.int8.onnx", "a" * 300, "/".join(["d"] * 200), "sub/model.onnx", "\u202e", " ", "note",
]
SCHEMA_KEYS = [
    "format_version", "name", "version", "files", "input_schema", "output_schema", "features", "layout",
    "tensor_name", "kind", "categories", "min", "max", "allows_missing", "task", "classes", "label_output",
    "score_output", "sha256", "bytes", "variants", "file", "reference", "sketches", "parity", "producer", "note",
]
NUMBERS = [0, -1, 1, 2, 2**31, 2**53, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, 1e308, -1e308,
           5e-324, -0.0, 3.4e38, 3.5e38]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from(NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(HOSTILE_NAMES), st.sampled_from(SCHEMA_KEYS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.one_of(st.text(max_size=8), st.sampled_from(SCHEMA_KEYS)), children, max_size=4),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*prefix, index)))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_manifests(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one to four mutations at places drawn from its tree."""
    manifest = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(manifest)
        path = draw(st.sampled_from(paths))
        target = _get(manifest, path)
        parent = _get(manifest, path[:-1]) if path else None
        op = draw(st.sampled_from(["replace", "delete", "add", "rename", "reorder", "retype", "number"]))
        if op == "replace" and path:
            parent[path[-1]] = draw(json_values)
        elif op == "delete" and path:
            del parent[path[-1]]
        elif op == "add" and isinstance(target, dict):
            target[draw(st.one_of(st.sampled_from(SCHEMA_KEYS + HOSTILE_NAMES), st.text(max_size=8)))] = \
                draw(json_values)
        elif op == "add" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(json_values))
        elif op == "rename" and isinstance(target, dict) and target:
            old = draw(st.sampled_from(sorted(target)))
            target[draw(st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=8)))] = target.pop(old)
        elif op == "reorder" and isinstance(target, list) and target:
            target.reverse() if draw(st.booleans()) else target.append(copy.deepcopy(target[0]))
        elif op == "retype" and path:
            parent[path[-1]] = (str(target) if not isinstance(target, str)
                                else draw(st.sampled_from([[target], {"value": target}, 0])))
        elif op == "number" and path:
            parent[path[-1]] = draw(st.sampled_from(NUMBERS + [math.nan, math.inf, -math.inf]))
    return manifest


def _outcome(call: Any, path: Path) -> tuple[Any, BundleError | None]:
    try:
        return call(path), None
    except BundleError as exc:
        return None, exc


def _answer(runtime: Runtime) -> None:
    row = {f.name: (f.categories[0] if f.categories else (f.minimum or 0.0))
           for f in runtime.manifest.input_schema.features}
    try:
        runtime.predict(row)
    except EdgeRuntimeError:
        pass


def _check_one(path: Path) -> str:
    """Load, inspect and serve ``path``; return "loaded" or "refused", failing on any other exception."""
    bundle, load_error = _outcome(load_bundle, path)
    check, inspect_error = _outcome(inspect_bundle, path)
    if load_error is None:
        assert inspect_error is None and check is not None and check.ok, "inspect refused what loading accepts"
    elif inspect_error is None:
        assert check is not None and not check.ok, f"inspect accepted what loading refuses: {load_error}"
        assert str(check.error()) == str(load_error)
    runtime, runtime_error = _outcome(Runtime, path)
    if runtime is not None:
        with runtime:
            _answer(runtime)
    assert (runtime_error is None) == (load_error is None), f"Runtime and load_bundle disagree: " \
                                                            f"{runtime_error!r} / {load_error!r}"
    return "loaded" if load_error is None else "refused"


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """A working copy of each kept bundle, whose manifest every case overwrites, and its manifest."""
    root = tmp_path_factory.mktemp("fuzz")
    copies = {}
    for kept in KEPT:
        target = root / kept.name
        shutil.copytree(kept, target)
        copies[kept.name] = (target, json.loads((kept / "manifest.json").read_text()))
    return copies


def _write(path: Path, manifest: Any, digest: str) -> None:
    if digest == "matching":
        try:
            text = manifest_digest(manifest) + "\n"
        except BundleFormatError:  # NaN or an integer JCS cannot hold: loading must refuse it anyway
            text = "sha256:" + "0" * 64 + "\n"
        (path / DIGEST_FILE).write_text(text)
    elif digest == "missing":
        (path / DIGEST_FILE).unlink(missing_ok=True)
    (path / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8",
                                        errors="surrogatepass")


SEEN: dict[str, int] = {"loaded": 0, "refused": 0}


def _structural(workdirs: Any, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(workdirs)))
    path, base = workdirs[name]
    manifest = data.draw(mutated_manifests(base))
    _write(path, manifest, data.draw(st.sampled_from(["matching"] * 6 + ["stale", "missing"])))
    SEEN[_check_one(path)] += 1


def _byte_level(workdirs: Any, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(workdirs)))
    path, base = workdirs[name]
    original = (KEPT[0].parent / name / "manifest.json").read_bytes()
    kind = data.draw(st.sampled_from(["random", "flip", "cut"]))
    if kind == "random":
        raw = data.draw(st.binary(max_size=200))
    elif kind == "flip":
        raw = bytearray(original)
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        raw = bytes(raw)
    else:
        raw = original[: data.draw(st.integers(0, len(original)))]
    (path / "manifest.json").write_bytes(raw)
    SEEN[_check_one(path)] += 1


FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=3000, derandomize=False)


@FAST
@given(data=st.data())
def test_mutated_manifests_are_loaded_or_refused_with_a_bundle_error(workdirs: Any, data: st.DataObject) -> None:
    _structural(workdirs, data)


@FAST
@given(data=st.data())
def test_manifest_bytes_are_loaded_or_refused_with_a_bundle_error(workdirs: Any, data: st.DataObject) -> None:
    _byte_level(workdirs, data)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_many_mutated_manifests(workdirs: Any, data: st.DataObject) -> None:
    _structural(workdirs, data)


@pytest.mark.slow
@settings(SLOW, max_examples=1000)
@given(data=st.data())
def test_many_manifest_bytes(workdirs: Any, data: st.DataObject) -> None:
    _byte_level(workdirs, data)


@pytest.mark.parametrize("text", [
    "[" * 100_000, '{"format_version": 2, "x": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"format_version": ' + "9" * 5000 + "}", '{"format_version": 2e400}', "\ufeff{}", "null", '"x"',
    '{"format_version": 1, "format_version": 2}',
])
def test_pathological_json_is_a_bundle_error(workdirs: Any, text: str) -> None:
    path = workdirs[KEPT[-1].name][0]
    (path / "manifest.json").write_text(text, encoding="utf-8")
    for call in (load_bundle, inspect_bundle, Runtime):
        with pytest.raises(BundleFormatError):
            call(path)


def test_cases_both_load_and_are_refused() -> None:
    """The properties above ran on manifests of both outcomes (run after them, as pytest orders a file)."""
    assert SEEN["loaded"] > 0 and SEEN["refused"] > 0, SEEN
