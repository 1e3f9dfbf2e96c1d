"""The bundle-format policy (docs/bundle-format.md), tested in both directions.

A bundle of every released format is kept under ``tests/data/bundles/format-N-*``,
made by the exporter of that release and never regenerated: a new runtime must load
and serve every one of them. An older runtime refuses a bundle of a newer format,
naming both versions; that is simulated by raising a copy's ``format_version``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_runtime import BundleFormatError, Runtime, inspect_bundle
from edge_runtime.serving.bundle import FORMAT_VERSION

KEPT = sorted((Path(__file__).parent / "data" / "bundles").glob("format-*"))


def _format(path: Path) -> int:
    return int(path.name.split("-")[1])


def test_a_bundle_of_every_released_format_is_kept() -> None:
    assert {_format(p) for p in KEPT} == set(range(1, FORMAT_VERSION + 1))


@pytest.mark.parametrize("path", KEPT, ids=lambda p: p.name)
def test_this_runtime_loads_and_serves_every_older_format(path: Path) -> None:
    check = inspect_bundle(path)
    assert check.ok and check.manifest.format_version == _format(path)
    with Runtime(path) as rt:
        row = {f.name: (f.categories[0] if f.categories else 0.5) for f in rt.manifest.input_schema.features}
        prediction = rt.predict(row)
    assert prediction.label in rt.classes
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_a_newer_format_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    shutil.copytree(KEPT[-1], path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    message = (f"bundle format version {FORMAT_VERSION + 1} is newer than this edge-runtime reads "
               f"(up to {FORMAT_VERSION}); upgrade edge-runtime")
    with pytest.raises(BundleFormatError) as raised:
        Runtime(path)
    assert str(raised.value) == message
    with pytest.raises(BundleFormatError, match="newer than this edge-runtime reads"):
        inspect_bundle(path)
