"""Loading and verifying bundles: checksums, truncation, missing files, format versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_runtime import Runtime
from edge_runtime.errors import BundleError, BundleFormatError, BundleIntegrityError
from edge_runtime.serving.bundle import (
    FORMAT_VERSION,
    check_files,
    load_bundle,
    read_manifest,
)


def test_manifest_records_schema_checksums_versions_parity_and_reference(cancer_bundle: Path) -> None:
    raw = json.loads((cancer_bundle / "manifest.json").read_text())
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["name"] == "cancer" and raw["version"] == "1.0"
    assert set(raw["files"]) == {"model.onnx", "reference.bin"}
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
    raw = json.loads((path / "manifest.json").read_text())
    raw["files"] = {}
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleIntegrityError, match="'model.onnx' is not listed"):
        load_bundle(path)


def test_schema_that_does_not_match_the_graph_is_refused(cancer_bundle: Path, copy_bundle) -> None:
    path = copy_bundle(cancer_bundle)
    raw = json.loads((path / "manifest.json").read_text())
    raw["input_schema"]["tensor_name"] = "features"
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleFormatError, match=r"inputs \['features'\] do not match the model's inputs \['X'\]"):
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
