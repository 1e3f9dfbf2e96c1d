"""The bundle-format policy (docs/bundle-format.md), tested in both directions.

A bundle of every released format is kept under ``tests/data/bundles/format-N-*``,
made by the exporter of that release and never regenerated: a new runtime must load
and serve every one of them. An older runtime refuses a bundle of a newer format,
naming both versions; that is simulated by raising a copy's ``format_version``.

The kept bundles of a new format are made by :func:`make_kept_bundles`, run from a
checkout of that release: ``python tests/test_bundle_format.py tests/data/bundles``
(it writes ``format-N-tensor`` and ``format-N-columns`` for the current N).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import rfc8785
from click.testing import CliRunner

from edge_runtime import BundleFormatError, BundleIntegrityError, Runtime, inspect_bundle
from edge_runtime.cli.inspect import inspect as inspect_command
from edge_runtime.serving.bundle import DIGEST_FILE, FORMAT_VERSION

KEPT = sorted((Path(__file__).parent / "data" / "bundles").glob("format-*"))


def _format(path: Path) -> int:
    return int(path.name.split("-")[1])


def test_a_bundle_of_every_released_format_is_kept() -> None:
    assert {_format(p) for p in KEPT} == set(range(1, FORMAT_VERSION + 1))
    for version in range(1, FORMAT_VERSION + 1):
        assert {p.name for p in KEPT if _format(p) == version} == {f"format-{version}-tensor",
                                                                   f"format-{version}-columns"}


@pytest.mark.parametrize("path", KEPT, ids=lambda p: p.name)
def test_this_runtime_loads_and_serves_every_older_format(path: Path) -> None:
    check = inspect_bundle(path)
    assert check.ok and check.manifest.format_version == _format(path)
    with Runtime(path) as rt:
        row = {f.name: (f.categories[0] if f.categories else 0.5) for f in rt.manifest.input_schema.features}
        prediction = rt.predict(row)
    assert prediction.label in rt.classes
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("path", KEPT, ids=lambda p: p.name)
def test_the_schema_of_every_kept_bundle_is_checked_against_its_graph(path: Path) -> None:
    fields = {c.field: c.status.value for c in inspect_bundle(path).graph}
    assert fields["output_schema.classes"] == "ok"
    if "columns" in path.name:
        assert fields['input_schema.features["city"].categories'] == "ok"
    else:
        assert fields["input_schema.features"] == "ok"


@pytest.mark.parametrize("path", [p for p in KEPT if _format(p) == 1], ids=lambda p: p.name)
def test_format_1_has_no_digest_and_inspect_calls_it_unprotected(path: Path) -> None:
    assert not (path / DIGEST_FILE).exists()
    check = inspect_bundle(path)
    assert check.ok and not check.protected and check.digest is None
    text = CliRunner().invoke(inspect_command, [str(path)])
    assert text.exit_code == 0
    assert ("manifest: unprotected (format 1 has no digest: an edit of manifest.json goes undetected)\n"
            in text.stdout)
    as_json = json.loads(CliRunner().invoke(inspect_command, [str(path), "--json"]).stdout)
    assert as_json["verification"]["protected"] is False and as_json["verification"]["digest"] is None


@pytest.mark.parametrize("path", [p for p in KEPT if _format(p) >= 2], ids=lambda p: p.name)
def test_format_2_records_the_digest_of_its_canonical_manifest(path: Path) -> None:
    canonical = rfc8785.dumps(json.loads((path / "manifest.json").read_bytes()))
    digest = "sha256:" + hashlib.sha256(canonical).hexdigest()
    assert (path / DIGEST_FILE).read_bytes() == digest.encode("ascii") + b"\n"
    check = inspect_bundle(path)
    assert check.protected and check.digest is not None and check.digest.recorded == digest
    text = CliRunner().invoke(inspect_command, [str(path)])
    assert text.exit_code == 0 and f"manifest: [ok] {digest} (manifest.sha256)\n" in text.stdout
    as_json = json.loads(CliRunner().invoke(inspect_command, [str(path), "--json"]).stdout)
    assert as_json["verification"]["protected"] is True
    assert as_json["verification"]["digest"]["recorded"] == digest


@pytest.mark.parametrize("path", [p for p in KEPT if _format(p) >= 2], ids=lambda p: p.name)
def test_format_2_without_its_digest_is_refused(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(path, copy)
    (copy / DIGEST_FILE).unlink()
    with pytest.raises(BundleIntegrityError) as raised:
        Runtime(copy)
    assert raised.value.filename == "manifest.json"
    result = CliRunner().invoke(inspect_command, [str(copy)])
    assert result.exit_code == 1
    assert result.stderr == ("Error: bundle file 'manifest.json' has no readable digest: "
                             "bundle file 'manifest.sha256' is missing\n")


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


def make_kept_bundles(out_dir: Path) -> list[Path]:
    """Export the two small bundles kept for the current format (once per format, never again).

    ``format-N-tensor``: a logistic regression over three numeric features (tensor layout,
    integer classes). ``format-N-columns``: an imputed, scaled numeric column and a one-hot
    encoded city before a logistic regression (columns layout, string classes). 300 seeded
    rows each, sketches with k=16 to keep the files small.
    """
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from converters import export

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    y = (X["a"] + 0.5 * X["b"] + rng.normal(0, 0.5, 300) > 0).astype(int)
    tensor = export(LogisticRegression().fit(X, y), X, y, name="tiny", version="1",
                    out_dir=out_dir / f"format-{FORMAT_VERSION}-tensor", sketch_k=16).path
    mixed = pd.DataFrame({"age": rng.normal(40, 10, 300).round(1), "city": rng.choice(["paris", "lyon"], 300)})
    churn = ((mixed["age"] > 42) ^ (mixed["city"] == "lyon")).map({False: "stay", True: "churn"})
    pipeline = Pipeline([
        ("pre", ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age"]),
                                   ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])),
        ("clf", LogisticRegression(max_iter=1000)),
    ]).fit(mixed, churn)
    columns = export(pipeline, mixed, churn, name="tiny-mixed", version="1",
                     out_dir=out_dir / f"format-{FORMAT_VERSION}-columns", sketch_k=16).path
    return [tensor, columns]


if __name__ == "__main__":
    for written in make_kept_bundles(Path(sys.argv[1])):
        print(written)
