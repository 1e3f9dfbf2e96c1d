"""Loading and verifying bundles: checksums, truncation, missing files, format versions,
path containment, the manifest's digest and its schema against the graph."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rfc8785
from click.testing import CliRunner

from edge_runtime import Runtime, inspect_bundle
from edge_runtime.cli.inspect import inspect as inspect_command
from edge_runtime.errors import (
    BundleError,
    BundleFormatError,
    BundleIntegrityError,
    BundleSchemaError,
)
from edge_runtime.serving import bundle as bundle_module
from edge_runtime.serving.bundle import (
    DIGEST_FILE,
    FORMAT_VERSION,
    check_files,
    load_bundle,
    manifest_digest,
    read_manifest,
)
from edge_runtime.serving.graph import CheckStatus


def _raw(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def _rewrite(path: Path, raw: dict[str, Any]) -> None:
    """Write a manifest and a digest that matches it: a consistent manifest whose content is wrong,
    as a buggy exporter or someone who re-signs it would leave."""
    (path / "manifest.json").write_text(json.dumps(raw))
    (path / DIGEST_FILE).write_text(manifest_digest(raw) + "\n")


def test_manifest_records_schema_checksums_versions_parity_and_reference(cancer_bundle: Path) -> None:
    raw = json.loads((cancer_bundle / "manifest.json").read_text())
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["name"] == "cancer" and raw["version"] == "1.0"
    assert set(raw["files"]) == {"model.onnx", "reference.bin", "multivariate.bin"}
    assert len(raw["files"]["model.onnx"]["sha256"]) == 64
    features = raw["input_schema"]["features"]
    assert len(features) == 30 and features[0]["name"] == "mean radius"
    assert features[0]["min"] == pytest.approx(6.981) and features[0]["max"] == pytest.approx(28.11)
    assert raw["output_schema"] == {"task": "classification", "classes": [0, 1],
                                    "label_output": "label", "score_output": "probabilities"}
    for key in ("scikit-learn", "skl2onnx", "onnx", "protobuf", "opset", "edge_runtime"):
        assert key in raw["producer"]
    assert raw["parity"]["passed"] is True and raw["parity"]["label_agreement"] == 1.0
    assert raw["reference"]["rows"] == 569
    radius = raw["reference"]["features"]["mean radius"]
    assert radius["count"] == 569 and radius["missing"] == 0
    assert radius["quantiles"]["0.5"] == pytest.approx(13.37)
    assert raw["reference"]["target"]["classes"] == {"0": 212, "1": 357}
    assert raw["reference"]["sketches"]["file"] == "reference.bin"
    assert raw["reference"]["sketches"]["outputs_from"] == "training data"
    assert raw["reference"]["multivariate"]["file"] == "multivariate.bin"
    assert len(raw["reference"]["multivariate"]["features"]) == 30
    assert b"pickle" not in (cancer_bundle / "manifest.json").read_bytes()


def test_verified_bundle_loads(cancer_bundle: Path) -> None:
    bundle = load_bundle(cancer_bundle)
    assert bundle.model_path.name == "model.onnx"
    assert all(c.ok for c in check_files(cancer_bundle, bundle.manifest))


def test_tampered_model_is_refused_by_name(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    data = bytearray((path / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    (path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=r"'model.onnx' does not match its sha256") as info:
        Runtime(path)
    assert info.value.filename == "model.onnx"


def test_truncated_model_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    data = (path / "model.onnx").read_bytes()
    (path / "model.onnx").write_bytes(data[:100])
    with pytest.raises(BundleIntegrityError, match=rf"'model.onnx' has 100 bytes, the manifest says {len(data)}"):
        load_bundle(path)


def test_missing_model_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    (path / "model.onnx").unlink()
    with pytest.raises(BundleIntegrityError, match=r"'model.onnx' is missing"):
        load_bundle(path)


def test_missing_manifest_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    (path / "manifest.json").unlink()
    with pytest.raises(BundleIntegrityError, match=r"'manifest.json' is missing"):
        load_bundle(path)


def test_truncated_manifest_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(BundleFormatError, match="manifest.json is not valid JSON"):
        load_bundle(path)


def test_newer_format_version_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = json.loads((path / "manifest.json").read_text())
    raw["format_version"] = FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleFormatError, match=rf"format version {FORMAT_VERSION + 1} is newer .* upgrade"):
        Runtime(path)


def test_manifest_without_model_entry_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    del raw["files"]["model.onnx"]
    _rewrite(path, raw)
    with pytest.raises(BundleIntegrityError, match="'model.onnx' is not listed"):
        load_bundle(path)


def test_schema_that_does_not_match_the_graph_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    raw["input_schema"]["tensor_name"] = "features"
    _rewrite(path, raw)
    with pytest.raises(BundleSchemaError, match=r"inputs \['features'\] do not match the model's inputs \['X'\]"):
        Runtime(path)


def test_missing_directory_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        read_manifest(tmp_path / "nope")


def test_reference_sketches_are_loadable_and_checksummed(cancer_bundle: Path, copy_bundle) -> None:
    from edge_runtime.monitoring.data_profile import load_reference

    profile = load_reference(load_bundle(cancer_bundle))
    assert profile is not None and profile.rows == 569
    assert profile.features["mean radius"].count == 569
    assert profile.predictions is not None and profile.predictions.total == 569
    assert 0.5 <= profile.scores.minimum <= profile.scores.maximum <= 1.0
    path = copy_bundle(cancer_bundle)
    data = bytearray((path / "reference.bin").read_bytes())
    data[-1] ^= 0xFF
    (path / "reference.bin").write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="'reference.bin' does not match"):
        load_bundle(path)


# ------------------------------------------------------------------ path containment
@pytest.mark.parametrize("name, problem", [
    ("../../etc/passwd", "has an empty, '.' or '..' path component"),
    ("sub/../../x", "has an empty, '.' or '..' path component"),
    ("./model.onnx", "has an empty, '.' or '..' path component"),
    ("/etc/passwd", "is an absolute path"),
    ("C:/Windows/win.ini", "is an absolute path"),
    ("..\\\\x", "holds a backslash"),
    ("x\x00.onnx", "holds a NUL byte"),
])
def test_a_file_entry_outside_the_bundle_is_refused_before_any_file_is_read(
        cancer_bundle: Path, copy_bundle, monkeypatch: pytest.MonkeyPatch, name: str, problem: str) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    raw["files"][name] = dict(raw["files"]["model.onnx"])
    _rewrite(path, raw)

    def no_reading(*args: Any) -> Any:
        raise AssertionError("a file was read before every entry was checked")

    monkeypatch.setattr(bundle_module, "_hash_file", no_reading)
    for load in (load_bundle, inspect_bundle, Runtime):
        with pytest.raises(BundleFormatError) as raised:
            load(path)
        assert str(raised.value) == (f"manifest file entry {name!r} {problem}: every file of a bundle lies "
                                     "inside its directory")


def test_a_symlink_out_of_the_bundle_is_refused_even_with_the_right_checksum(
        cancer_bundle: Path, copy_bundle, tmp_path: Path) -> None:
    path = copy_bundle(cancer_bundle)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes((path / "reference.bin").read_bytes())
    (path / "reference.bin").unlink()
    (path / "reference.bin").symlink_to(outside)
    with pytest.raises(BundleFormatError, match=r"^bundle file 'reference.bin' resolves to '.*elsewhere.bin', "
                                                r"outside the bundle directory$"):
        load_bundle(path)
    with pytest.raises(BundleFormatError, match="outside the bundle directory"):
        inspect_bundle(path)


def test_a_symlink_within_the_bundle_and_a_symlinked_bundle_load(cancer_bundle: Path, copy_bundle,
                                                                 tmp_path: Path) -> None:
    path = copy_bundle(cancer_bundle)
    (path / "data").mkdir()
    os.replace(path / "reference.bin", path / "data" / "reference.bin")
    (path / "reference.bin").symlink_to(Path("data") / "reference.bin")
    (tmp_path / "current").symlink_to(path)
    assert load_bundle(tmp_path / "current").manifest.name == "cancer"


# ------------------------------------------------------------------ digest
def test_the_digest_is_the_sha256_of_the_manifests_canonical_json(cancer_bundle: Path) -> None:
    raw = _raw(cancer_bundle)
    expected = "sha256:" + hashlib.sha256(rfc8785.dumps(raw)).hexdigest()
    assert (cancer_bundle / DIGEST_FILE).read_text() == expected + "\n"
    assert manifest_digest(raw) == expected
    check = inspect_bundle(cancer_bundle)
    assert check.protected and check.digest is not None and check.digest.recorded == expected


def test_reformatting_the_manifest_keeps_its_digest(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    (path / "manifest.json").write_text(json.dumps(raw, sort_keys=True, separators=(",", ":")))
    assert load_bundle(path).manifest.name == "cancer"


@pytest.mark.parametrize("edit", [
    lambda m: m["output_schema"]["classes"].reverse(),
    lambda m: m["input_schema"]["features"][0].update(min=-1e9),
    lambda m: m["files"]["reference.bin"].update(sha256="0" * 64),
    lambda m: m.update(name="other"),
    lambda m: m["reference"].update(rows=1),
])
def test_any_edit_of_the_manifest_is_refused_naming_it(cancer_bundle: Path, copy_bundle, edit: Any) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    edit(raw)
    (path / "manifest.json").write_text(json.dumps(raw))
    message = "bundle file 'manifest.json' does not match its digest in manifest.sha256 (altered)"
    with pytest.raises(BundleIntegrityError) as raised:
        Runtime(path)
    assert str(raised.value) == message and raised.value.filename == "manifest.json"
    check = inspect_bundle(path)
    assert not check.ok and not check.protected and str(check.error()) == message


def test_a_missing_or_unreadable_digest_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    (path / DIGEST_FILE).unlink()
    with pytest.raises(BundleIntegrityError, match=r"^bundle file 'manifest.json' has no readable digest: "
                                                   r"bundle file 'manifest.sha256' is missing$"):
        load_bundle(path)
    (path / DIGEST_FILE).write_text("md5:abc\n")
    with pytest.raises(BundleIntegrityError, match="'manifest.json' has no readable digest"):
        load_bundle(path)


def test_lowering_the_format_version_does_not_skip_a_digest_beside_it(cancer_bundle: Path,
                                                                      copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    raw["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleIntegrityError, match="does not match its digest"):
        load_bundle(path)


def test_a_manifest_with_a_key_twice_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text.replace('"name":"cancer"', '"name":"cancer","name":"x"', 1))
    with pytest.raises(BundleFormatError, match="manifest.json has the key 'name' twice in one object"):
        load_bundle(path)


# ------------------------------------------------------------------ schema against the graph
def test_reversed_classes_are_refused_at_load_and_by_inspect(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    raw["output_schema"]["classes"] = [1, 0]
    _rewrite(path, raw)
    message = "manifest classes [1, 0] do not match the model's class labels [0, 1]"
    with pytest.raises(BundleSchemaError) as raised:
        Runtime(path)
    assert str(raised.value) == message
    check = inspect_bundle(path)
    assert not check.ok and str(check.error()) == message
    failed = [c for c in check.graph if c.status is CheckStatus.FAILED]
    assert [(c.model, c.field) for c in failed] == [("model.onnx", "output_schema.classes")]
    result = CliRunner().invoke(inspect_command, [str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"
    assert f"  [FAILED] model.onnx output_schema.classes: {message}\n" in result.stdout


def test_classes_of_another_type_are_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    raw["output_schema"]["classes"] = ["1", "0"]
    _rewrite(path, raw)
    with pytest.raises(BundleSchemaError, match=r"^manifest classes \['1', '0'\] do not match the model's class "
                                                r"labels \[0, 1\]$"):
        load_bundle(path)


def test_string_classes_of_a_forest_are_checked(string_class_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(string_class_bundle)
    raw = _raw(path)
    assert inspect_bundle(path).ok
    raw["output_schema"]["classes"] = raw["output_schema"]["classes"][::-1]
    _rewrite(path, raw)
    with pytest.raises(BundleSchemaError, match=r"manifest classes \['malignant', 'benign'\] do not match the "
                                                r"model's class labels \['benign', 'malignant'\]"):
        Runtime(path)


def test_an_added_category_is_refused_naming_the_feature(mixed_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(mixed_bundle)
    raw = _raw(path)
    city = next(f for f in raw["input_schema"]["features"] if f["name"] == "city")
    city["categories"] = [*city["categories"], "rome"]
    _rewrite(path, raw)
    message = ("manifest categories of 'city' ['lyon', 'nice', 'paris', 'rome'] do not match the model's encoder "
               "categories ['lyon', 'nice', 'paris'] (['rome'] unknown to the model)")
    with pytest.raises(BundleSchemaError) as raised:
        Runtime(path)
    assert str(raised.value) == message
    assert str(inspect_bundle(path).error()) == message


def test_every_categorical_feature_of_a_pipeline_is_checked(mixed_bundle: Path) -> None:
    checks = {c.field: c.status for c in inspect_bundle(mixed_bundle).graph}
    assert checks['input_schema.features["city"].categories'] is CheckStatus.OK
    assert checks['input_schema.features["plan"].categories'] is CheckStatus.OK
    assert checks["output_schema.classes"] is CheckStatus.OK


def test_a_feature_count_that_does_not_match_the_input_width_is_refused(cancer_bundle: Path,
                                                                        copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    raw["input_schema"]["features"].pop()
    _rewrite(path, raw)
    with pytest.raises(BundleSchemaError, match=r"^the manifest lists 29 features, the model's input 'X' takes 30$"):
        Runtime(path)


def test_a_categorical_feature_fed_to_a_float_input_is_refused(mixed_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(mixed_bundle)
    raw = _raw(path)
    age = next(f for f in raw["input_schema"]["features"] if f["name"] == "age")
    age.update(kind="categorical", categories=["young"])
    _rewrite(path, raw)
    with pytest.raises(BundleSchemaError, match=r"^the model's input 'age' is tensor\(float\); edge-runtime feeds "
                                                r"tensor\(string\) for a categorical feature$"):
        load_bundle(path)


def test_an_altered_model_is_reported_by_its_checksum_not_its_graph(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    data = bytearray((path / "model.onnx").read_bytes())
    data[:4] = b"\xff\xff\xff\xff"
    (path / "model.onnx").write_bytes(bytes(data))
    check = inspect_bundle(path)
    assert check.graph == () and str(check.error()).startswith("bundle file 'model.onnx' does not match")


# ------------------------------------------------------------------ malformed fields
@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(files={"model.onnx": "abc"}),
     """manifest field 'files["model.onnx"]' must be an object with 'sha256' and 'bytes', got 'abc'"""),
    (lambda m: m["files"]["model.onnx"].update(bytes=True),
     """manifest field 'files["model.onnx"].bytes' must be a non-negative integer, got True"""),
    (lambda m: m["input_schema"]["features"][0].update(min="low"),
     "manifest field 'input_schema.features[0].min' must be a finite number or null, got 'low'"),
    (lambda m: m["output_schema"].update(classes=[0, [1]]),
     "manifest field 'output_schema.classes[1]' must be a string, a finite number or a boolean, got [1]"),
    (lambda m: m["output_schema"].update(classes=[0, 0]),
     "manifest field 'output_schema.classes' must be a list of distinct labels, got 0"),
    (lambda m: m.update(variants={"int8": {"file": "model.int8.onnx"}}),
     """manifest field 'variants["int8"].file' must be a file the manifest's 'files' list, """
     "got 'model.int8.onnx'"),
    (lambda m: m["reference"]["sketches"].update(file=["reference.bin"]),
     "manifest field 'reference.sketches.file' must be a file the manifest's 'files' list, got ['reference.bin']"),
    (lambda m: m.update(format_version=True),
     "manifest.json has no positive integer format_version (got True)"),
])
def test_a_malformed_field_is_refused_naming_it(cancer_bundle: Path, copy_bundle, edit: Any, message: str) -> None:
    path = copy_bundle(cancer_bundle)
    raw = _raw(path)
    edit(raw)
    _rewrite(path, raw)
    for load in (load_bundle, inspect_bundle, Runtime):
        with pytest.raises(BundleFormatError) as raised:
            load(path)
        assert str(raised.value) == message


def test_a_manifest_that_is_not_a_regular_file_is_refused_without_reading_it(cancer_bundle: Path,
                                                                             copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    (path / "manifest.json").unlink()
    os.mkfifo(path / "manifest.json")  # reading it would block forever
    with pytest.raises(BundleIntegrityError, match="'manifest.json' is not a regular file"):
        load_bundle(path)


# ------------------------------------------------------------------ permissions
def test_a_published_bundle_is_readable_by_every_user_whatever_the_umask(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    from converters import export

    X = np.arange(40.0).reshape(20, 2)
    previous = os.umask(0o077)
    try:
        path = export(Ridge().fit(X, X.sum(axis=1)), X, X.sum(axis=1), name="r", version="1",
                      out_dir=tmp_path / "r").path
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.iterdir()} == {
        "manifest.json": 0o644, "manifest.sha256": 0o644, "model.onnx": 0o644, "reference.bin": 0o644,
        "multivariate.bin": 0o644}


def test_non_finite_statistics_are_written_as_null(tmp_path: Path) -> None:
    from converters.manifest import new_manifest
    from converters.package import BundleWriter
    from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task

    manifest = new_manifest(name="b", version="1", input_schema=InputSchema(features=(FeatureSpec(name="x"),)),
                            output_schema=OutputSchema(task=Task.REGRESSION, score_output="y"))
    with BundleWriter(tmp_path / "b") as writer:
        writer.add_file("model.onnx", b"")
        writer.write_manifest(dataclasses.replace(
            manifest, reference={"target": {"mean": float("nan"), "std": np.float64("inf")}}))
        path = writer.commit()
    assert _raw(path)["reference"]["target"] == {"mean": None, "std": None}
    assert read_manifest(path).reference == {"target": {"mean": None, "std": None}}
