"""``export``: one call from training code to a verified bundle.

Examples
--------
>>> import tempfile
>>> from sklearn.datasets import load_iris
>>> from sklearn.ensemble import RandomForestClassifier
>>> from converters import export
>>> X, y = load_iris(return_X_y=True, as_frame=True)
>>> model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
>>> result = export(model, X, y, name="iris", version="1.0", out_dir=tempfile.mkdtemp() + "/iris")
>>> result.parity["label_agreement"], result.parity["passed"]   # 1.0: canonical JSON writes it 1
(1, True)
>>> result.manifest.input_schema.names[:2]
('sepal length (cm)', 'sepal width (cm)')
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from converters.assembly import BundleContents, assemble_bundle
from converters.boosting import TARGET_OPSET, adapt_native, allow_missing, fitted_feature_names, prepare_conversion
from converters.features import infer_input_schema, is_dataframe
from converters.manifest import ExportResult, check_identity
from converters.package import BundleWriter
from converters.parity import ParityPolicy, check_parity, sample_rows
from converters.quantize import quantize_int8
from converters.sklearn import (
    convert,
    encoded_columns,
    require_estimator,
    require_fitted,
    selects_columns,
)
from edge_runtime.errors import ExportError, ParityError
from edge_runtime.monitoring.sketches import REFERENCE_K
from edge_runtime.runtime import Runtime
from edge_runtime.serving.bundle import MODEL_FILE, Manifest
from edge_runtime.serving.schema import InputSchema

__all__ = ["INT8_FILE", "export"]

INT8_FILE = "model.int8.onnx"


def _align_columns(X: Any, expected: list[str] | None, what: str) -> Any:
    """Keep a DataFrame's ``expected`` columns, in that order."""
    if expected is None or not is_dataframe(X):
        return X
    missing = [c for c in expected if c not in X.columns]
    if missing:
        raise ExportError(f"the {what} lacks columns the model was fitted on: "
                          f"{', '.join(repr(c) for c in missing)}")
    return X[expected]


def _check_width(model: Any, X: Any, schema: InputSchema) -> None:
    """A model fitted on an array names no columns: at least the count must match."""
    fitted = getattr(model, "n_features_in_", None)
    if fitted is None or fitted == len(schema.features):
        return
    listed = f" ({', '.join(repr(n) for n in schema.names)})" if is_dataframe(X) else ""
    raise ExportError(f"the training data has {len(schema.features)} columns{listed} but "
                      f"{type(model).__name__} was fitted on an array of {fitted}, which names none: keep "
                      "exactly the columns it was fitted on, in that order")


def export(model: Any, X_train: Any, y_train: Any = None, *, name: str, version: str,
           out_dir: str | Path, X_val: Any = None, parity: ParityPolicy | None = None,
           feature_names: list[str] | None = None, overwrite: bool = False,
           sketch_k: int = REFERENCE_K, quantize: bool = False) -> ExportResult:
    """Convert a fitted scikit-learn model to ONNX, check it, and write a bundle.

    Parameters
    ----------
    model : estimator
        A fitted classifier or regressor, or a Pipeline ending in one.
    X_train : numpy.ndarray or pandas.DataFrame
        Training features: they define the input schema and the reference profile,
        and a sample of them is the parity set when ``X_val`` is not given.
    y_train : array-like, optional
        Training target, profiled into the reference.
    name, version : str
        Identity of the bundle.
    out_dir : str or Path
        The bundle directory to create.
    X_val : numpy.ndarray or pandas.DataFrame, optional
        Held-out rows for the parity check.
    parity : ParityPolicy, optional
        Tolerances and the threshold below which export fails.
    feature_names : list of str, optional
        Names for the columns of an array ``X_train``.
    overwrite : bool
        Replace an existing bundle at ``out_dir``.
    sketch_k : int
        KLL accuracy parameter of the reference sketches (``reference.bin``).
    quantize : bool
        Also write an int8 dynamically quantized variant (``model.int8.onnx``)
        with its own parity report, the lighter model a budget can fall back on.
        Only MatMul/Conv weights quantize (MLPs); for other models the manifest
        says there was nothing to quantize.

    Returns
    -------
    ExportResult

    Raises
    ------
    UnsupportedModelError
        The model is not a fitted estimator, or it or one of its steps cannot be converted.
    ParityError
        The ONNX model disagrees with the original on more rows than allowed;
        nothing is written.
    ExportError
        Any other reason the bundle cannot be made.
    """
    check_identity(name, version)
    model = adapt_native(model, feature_names)  # a native XGBoost/LightGBM Booster
    require_estimator(model)
    require_fitted(model)
    policy = parity or ParityPolicy()
    fitted_names = fitted_feature_names(model, X_train)  # the user's names, where LightGBM altered them
    X_train = _align_columns(X_train, fitted_names, "training data")
    if feature_names is None and not is_dataframe(X_train) and fitted_names is not None:
        feature_names = fitted_names
    encoded = encoded_columns(model)
    schema = infer_input_schema(X_train, feature_names=feature_names,
                                has_column_selection=selects_columns(model), encoded=encoded)
    schema = allow_missing(model, schema, encoded=encoded)  # NaN is "missing" to XGBoost, LightGBM, CatBoost
    _check_width(model, X_train, schema)
    library_versions = prepare_conversion(model)  # registers the boosting libraries' converters
    converted = convert(model, schema, target_opset=TARGET_OPSET if library_versions else None)
    if library_versions:
        converted = dataclasses.replace(converted, producer={**converted.producer, **library_versions})
    if X_val is not None:
        parity_rows, source = _align_columns(X_val, list(schema.names), "validation data"), "validation set"
    else:
        parity_rows = sample_rows(X_train, policy.sample_rows, policy.seed)
        source = f"sample of the training data (seed {policy.seed})"

    def refuse_below_policy(report: dict[str, Any]) -> None:
        if not report["passed"]:
            compared = report["rows"] - report["rejected_rows"]
            raise ParityError(
                f"parity check failed for {converted.producer['model_type']}: agreement "
                f"{report['agreement']:.4f} is below {policy.min_agreement} "
                f"({report['rows_beyond_tolerance']} of {compared} compared rows beyond tolerance, "
                f"max abs diff {report['max_abs_diff']}; {report['rejected_rows']} of {report['rows']} "
                "rows rejected by the bundle's input checks); no bundle written"
            )

    def int8_variant(writer: BundleWriter, manifest: Manifest) -> dict[str, Any]:
        return _int8_variant(writer, manifest, model, parity_rows, policy, source)

    contents = BundleContents(
        name=name, version=version, model=converted.onnx_bytes, input_schema=schema,
        output_schema=converted.output_schema, producer=converted.producer, reference_rows=X_train,
        target=y_train, answer_rows=X_val if X_val is not None else X_train,
        outputs_from="validation set" if X_val is not None else "training data", sketch_k=sketch_k)
    return assemble_bundle(contents, out_dir, overwrite=overwrite,
                           check=lambda runtime: check_parity(model, runtime, parity_rows, policy, source=source),
                           variants=int8_variant if quantize else None, accept=refuse_below_policy)


def _int8_variant(writer: BundleWriter, manifest: Manifest, model: Any, parity_rows: Any,
                  policy: ParityPolicy, source: str) -> dict[str, Any]:
    """Quantize the staged model to int8 and check it against the original like the main model."""
    target = writer.path / INT8_FILE
    if not quantize_int8(writer.path / MODEL_FILE, target):
        target.unlink(missing_ok=True)
        return {"note": "int8: nothing to quantize, no MatMul or Conv weights in this model"}
    writer.add_file(INT8_FILE, target.read_bytes())
    # Listed in the staged manifest, so that a Runtime can load it for its parity check.
    writer.write_manifest(dataclasses.replace(manifest, variants={"int8": {"file": INT8_FILE}}))
    with Runtime(writer.path, variant="int8") as runtime:
        report = check_parity(model, runtime, parity_rows, policy, source=source)
    return {"int8": {"file": INT8_FILE, "parity": report, "bytes": target.stat().st_size}}
