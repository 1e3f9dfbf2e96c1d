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
from typing import Any

import numpy as np
import pytest
import rfc8785
from click.testing import CliRunner

from edge_runtime import (
    BundleFormatError,
    BundleIntegrityError,
    InvalidValueError,
    MonitoringDatabase,
    Runtime,
    inspect_bundle,
)
from edge_runtime.cli.inspect import inspect as inspect_command
from edge_runtime.serving.bundle import DIGEST_FILE, FORMAT_VERSION
from edge_runtime.serving.schema import FeatureKind, FeatureSpec

KEPT = sorted((Path(__file__).parent / "data" / "bundles").glob("format-*"))


def _format(path: Path) -> int:
    return int(path.name.split("-")[1])


def test_a_bundle_of_every_released_format_is_kept() -> None:
    assert {_format(p) for p in KEPT} == set(range(1, FORMAT_VERSION + 1))  # format 3: a boolean feature each
    for version in range(1, FORMAT_VERSION + 1):
        assert {p.name for p in KEPT if _format(p) == version} == {f"format-{version}-tensor",
                                                                   f"format-{version}-columns"}


@pytest.mark.parametrize("path", KEPT, ids=lambda p: p.name)
def test_this_runtime_loads_and_serves_every_older_format(path: Path) -> None:
    check = inspect_bundle(path)
    assert check.ok and check.manifest.format_version == _format(path)
    with Runtime(path) as rt:
        prediction = rt.predict({f.name: _typical(f) for f in rt.manifest.input_schema.features})
    assert prediction.label in rt.classes
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("path", KEPT, ids=lambda p: p.name)
def test_this_runtime_monitors_every_older_format(path: Path, tmp_path: Path) -> None:
    """Windows close with verdicts: a kept bundle's reference (and multivariate model) fits live rows."""
    rng = np.random.default_rng(0)
    with Runtime(path, db=tmp_path / "m.db", window_rows=100) as rt:
        features = rt.manifest.input_schema.features
        rows = [{f.name: (_typical(f) if f.kind is not FeatureKind.NUMERIC else float(rng.normal()))
                 for f in features} for _ in range(200)]
        assert len(rt.predict_batch(rows)) == 200
        for row in rows[:100]:
            rt.predict(row)
    with MonitoringDatabase(tmp_path / "m.db") as db:
        windows = db.drift().windows
    assert [w.rows for w in windows] == [100, 100, 100]
    assert all(len(w.features) == len(features) and w.prediction is not None for w in windows)


def _typical(feature: FeatureSpec) -> Any:
    if feature.kind is FeatureKind.CATEGORICAL:
        return feature.categories[0]
    return True if feature.kind is FeatureKind.BOOLEAN else 0.5


@pytest.mark.parametrize("path", [p for p in KEPT if _format(p) >= 3], ids=lambda p: p.name)
def test_format_3_serves_its_boolean_feature_from_every_spelling(path: Path) -> None:
    with Runtime(path) as rt:
        features = rt.manifest.input_schema.features
        flag = next(f.name for f in features if f.kind is FeatureKind.BOOLEAN)
        answers = []
        for spelling in (True, "True", "true", "TRUE", 1, "1", 1.0, np.bool_(True)):
            row = {f.name: _typical(f) for f in features} | {flag: spelling}
            answers.append(rt.predict(row).probabilities)
        assert all(a == answers[0] for a in answers)
        with pytest.raises(InvalidValueError) as raised:
            rt.predict({f.name: _typical(f) for f in features} | {flag: "yes"})
    assert str(raised.value) == f"feature '{flag}': value 'yes' is not a boolean (True/False, true/false or 1/0)"


def test_format_3_keeps_the_classes_of_a_bool_target() -> None:
    with Runtime(next(p for p in KEPT if p.name == "format-3-tensor")) as rt:
        prediction = rt.predict({"a": 1.0, "b": 1.0, "c": 0.0, "d": "True"})
        batch = rt.predict_batch([{"a": 1.0, "b": 1.0, "c": 0.0, "d": True},
                                  {"a": -3.0, "b": -1.0, "c": 0.0, "d": 0}])
    assert rt.classes == (False, True)
    assert prediction.label is True and list(prediction.probabilities) == [False, True]
    assert batch.labels.tolist() == [True, False]
    assert [r["proba_True"] > 0.5 for r in batch.records()] == [True, False]


def _rewrite_manifest(path: Path, edit: Any) -> None:
    """Edit a bundle's manifest, and its digest when it has one (a test's own bundle copy)."""
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if (path / DIGEST_FILE).exists():
        digest = "sha256:" + hashlib.sha256(rfc8785.dumps(manifest)).hexdigest()
        (path / DIGEST_FILE).write_text(digest + "\n")


def test_a_boolean_feature_in_a_format_2_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    shutil.copytree(next(p for p in KEPT if p.name == "format-3-columns"), path)
    _rewrite_manifest(path, lambda m: m.update(format_version=2))
    with pytest.raises(BundleFormatError) as raised:
        Runtime(path)
    assert str(raised.value) == ("manifest field 'input_schema.features[2].kind' must be a kind of format 2 "
                                 "(kind 'boolean' comes with format 3), got 'boolean'")


def _older_bundle(tmp_path: Path, y: Any, classes: list[Any],
                  reference_labels: dict[str, str]) -> tuple[Path, Any]:
    """A bundle as a format 1 exporter wrote it for target ``y``: its manifest lists ``classes``
    (json.dumps kept 0.0 as 0.0) and its reference counts the graph's labels, renamed by
    ``reference_labels``. Returns the path and rows like the training rows."""
    from sklearn.linear_model import LogisticRegression

    from converters import export
    from edge_runtime.monitoring.data_profile import Profile

    X = np.random.default_rng(5).normal(size=(3000, 3))
    path = export(LogisticRegression().fit(X[:1500], y[:1500]), X[:1500], y[:1500], name="old", version="1",
                  out_dir=tmp_path / "bundle").path
    profile = Profile.from_bytes((path / "reference.bin").read_bytes())
    assert profile.predictions is not None
    profile.predictions.counts = {reference_labels.get(k, k): n for k, n in profile.predictions.counts.items()}
    blob = profile.to_bytes()
    (path / "reference.bin").write_bytes(blob)
    (path / DIGEST_FILE).unlink()

    def as_format_1(manifest: dict[str, Any]) -> None:
        manifest.update(format_version=1)
        manifest["output_schema"]["classes"] = classes
        manifest["files"]["reference.bin"] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}

    _rewrite_manifest(path, as_format_1)
    return path, X[1500:]


def _prediction_verdicts(path: Path, rows: Any, db: Path) -> tuple[Any, Any, list[str]]:
    with Runtime(path, db=db, window_rows=500) as rt:
        single = rt.predict(rows[0])
        batch = rt.predict_batch(rows[1:])
    with MonitoringDatabase(db) as database:
        windows = database.drift().windows
    assert len(windows) == 3
    return single, batch, [w.to_dict()["prediction"]["status"] for w in windows]


def test_an_older_manifest_listing_float_classes_serves_and_monitors_them_as_ints(tmp_path: Path) -> None:
    # Format 1 wrote the manifest with json.dumps: a target stored as 0.0/1.0 was listed so,
    # while the graph's labels (and the reference profile's counts) were 0/1. Live windows
    # then counted '0.0'/'1.0' against the reference's '0'/'1': drift, JS 1.0, in every window.
    y = (np.random.default_rng(6).normal(size=3000) + np.random.default_rng(5).normal(size=(3000, 3))[:, 0] > 0)
    path, rows = _older_bundle(tmp_path, y.astype(np.float64), [0.0, 1.0], {})
    assert json.loads((path / "manifest.json").read_text())["output_schema"]["classes"] == [0.0, 1.0]
    single, batch, verdicts = _prediction_verdicts(path, rows, tmp_path / "m.db")
    assert type(single.label) is int and list(single.probabilities) == [0, 1]
    assert {type(r["prediction"]) for r in batch.records()} == {int}
    assert set(next(batch.records())) == {"row", "prediction", "proba_0", "proba_1"}
    with MonitoringDatabase(tmp_path / "m.db") as db:
        assert {d.prediction for d in db.tail(50)} == {"0", "1"}
    assert verdicts == ["ok", "ok", "ok"]


def test_an_older_bundle_of_a_bool_target_compares_its_reference_counts_of_0_and_1(tmp_path: Path) -> None:
    # skl2onnx gives a bool target's labels as int64: an older reference counted '0'/'1',
    # its manifest lists false/true. The reference's counts are read under 'False'/'True'.
    y = (np.random.default_rng(6).normal(size=3000) + np.random.default_rng(5).normal(size=(3000, 3))[:, 0] > 0)
    path, rows = _older_bundle(tmp_path, y, [False, True], {"False": "0", "True": "1"})
    single, batch, verdicts = _prediction_verdicts(path, rows, tmp_path / "m.db")
    assert type(single.label) is bool and list(single.probabilities) == [False, True]
    assert batch.labels.dtype == bool
    assert verdicts == ["ok", "ok", "ok"]


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

    ``format-N-tensor``: a logistic regression over three numeric features and a boolean
    one (tensor layout, bool classes False/True). ``format-N-columns``: an imputed, scaled
    numeric column, a one-hot encoded city and a boolean passed through, before a logistic
    regression (columns layout, string classes). 300 seeded rows each, sketches with k=16
    to keep the files small. (Formats 1 and 2 had no boolean kind: their bundles have
    numeric features and integer classes, and no ``member`` column.)
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
    X["d"] = rng.random(300) < 0.4
    y = X["a"] + 0.5 * X["b"] + X["d"] + rng.normal(0, 0.5, 300) > 0.4
    tensor = export(LogisticRegression().fit(X, y), X, y, name="tiny", version="1",
                    out_dir=out_dir / f"format-{FORMAT_VERSION}-tensor", sketch_k=16).path
    mixed = pd.DataFrame({"age": rng.normal(40, 10, 300).round(1), "city": rng.choice(["paris", "lyon"], 300),
                          "member": rng.random(300) < 0.5})
    churn = ((mixed["age"] > 42) ^ (mixed["city"] == "lyon") ^ mixed["member"]).map({False: "stay", True: "churn"})
    pipeline = Pipeline([
        ("pre", ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age"]),
                                   ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                   ("flag", "passthrough", ["member"])])),
        ("clf", LogisticRegression(max_iter=1000)),
    ]).fit(mixed, churn)
    columns = export(pipeline, mixed, churn, name="tiny-mixed", version="1",
                     out_dir=out_dir / f"format-{FORMAT_VERSION}-columns", sketch_k=16).path
    return [tensor, columns]


if __name__ == "__main__":
    for written in make_kept_bundles(Path(sys.argv[1])):
        print(written)
