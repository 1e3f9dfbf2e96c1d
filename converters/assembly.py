"""The one path from a converted model to a published bundle, used by every exporter.

Both :func:`converters.export` (scikit-learn) and :func:`converters.bundle_onnx`
(an ONNX file from elsewhere) describe what they have as :class:`BundleContents`
and call :func:`assemble_bundle`, which stages the files, runs the staged bundle
through the device :class:`~edge_runtime.Runtime` (the exporter's check: parity
against the original model, or a smoke run), profiles the reference data and the
model's answers on it, adds optional variants, writes the typed manifest and
publishes the directory with one rename. Any failure leaves nothing behind.

Examples
--------
>>> import tempfile, numpy as np
>>> from sklearn.linear_model import LinearRegression
>>> from skl2onnx import to_onnx
>>> from converters.assembly import BundleContents, assemble_bundle
>>> from edge_runtime.serving.schema import FeatureSpec, InputLayout, InputSchema, OutputSchema, Task
>>> X = np.arange(20.0).reshape(10, 2); y = X @ [1.0, 2.0]
>>> onnx = to_onnx(LinearRegression().fit(X, y), X[:1].astype(np.float32)).SerializeToString()
>>> contents = BundleContents(
...     name="lin", version="1", model=onnx,
...     input_schema=InputSchema(features=(FeatureSpec(name="a"), FeatureSpec(name="b")),
...                              layout=InputLayout.TENSOR, tensor_name="X"),
...     output_schema=OutputSchema(task=Task.REGRESSION, score_output="variable"),
...     reference_rows=X, outputs_from="reference data")
>>> result = assemble_bundle(contents, tempfile.mkdtemp() + "/lin",
...                          check=lambda runtime: {"source": "none", "passed": None})
>>> sorted(result.manifest.files), result.manifest.reference["sketches"]["outputs_from"]
(['model.onnx', 'multivariate.bin', 'reference.bin'], 'reference data')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.features import to_model_feeds
from converters.manifest import ExportResult, new_manifest
from converters.multivariate import fit_multivariate
from converters.package import BundleWriter
from converters.reference import profile_features, reference_profile, target_profile
from edge_runtime.errors import EdgeRuntimeError, ExportError
from edge_runtime.monitoring.data_profile import PROFILE_FILE
from edge_runtime.monitoring.multivariate import MULTIVARIATE_FILE, MULTIVARIATE_FORMAT
from edge_runtime.monitoring.sketches import REFERENCE_K
from edge_runtime.runtime import Runtime
from edge_runtime.serving.bundle import MODEL_FILE, Manifest, read_manifest
from edge_runtime.serving.schema import InputSchema, OutputSchema, Task

__all__ = ["BundleContents", "ParityCheck", "VariantsStep", "assemble_bundle"]

PROFILE_FORMAT = "edge-runtime profile v1 (DataSketches KLL floats)"

# Runs on the staged bundle; returns the parity report (raising refuses the bundle).
ParityCheck = Callable[[Runtime], dict[str, Any]]
# Adds lighter model files to the staged bundle; returns the manifest's ``variants``.
VariantsStep = Callable[[BundleWriter, Manifest], dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleContents:
    """What an exporter knows once its model is converted.

    Attributes
    ----------
    name, version : str
        Identity of the bundle.
    model : bytes
        The ONNX model.
    input_schema, output_schema : InputSchema, OutputSchema
    producer : mapping
        Tools and versions that made the model, recorded in the manifest.
    reference_rows : array or DataFrame, optional
        Data whose features are profiled into the reference (training data).
    target : array-like, optional
        The training target, summarised into the reference.
    answer_rows : array or DataFrame, optional
        Rows whose answers by the bundled model make the reference of the
        outputs; ``reference_rows`` when not given.
    outputs_from : str
        Where ``answer_rows`` come from, for the manifest.
    sketch_k : int
        KLL accuracy parameter of the reference sketches.
    """

    name: str
    version: str
    model: bytes
    input_schema: InputSchema
    output_schema: OutputSchema
    producer: Mapping[str, Any] = field(default_factory=dict)
    reference_rows: Any = None
    target: Any = None
    answer_rows: Any = None
    outputs_from: str = "training data"
    sketch_k: int = REFERENCE_K


def assemble_bundle(contents: BundleContents, out_dir: str | Path, *, check: ParityCheck,
                    overwrite: bool = False, variants: VariantsStep | None = None,
                    accept: Callable[[dict[str, Any]], None] | None = None) -> ExportResult:
    """Stage, check, profile and publish a bundle.

    Parameters
    ----------
    contents : BundleContents
    out_dir : str or Path
        The bundle directory to create.
    check : callable
        Called with a Runtime on the staged bundle; returns the parity report.
    overwrite : bool
        Replace an existing bundle at ``out_dir``.
    variants : callable, optional
        Adds variant model files (``model.int8.onnx``); returns the manifest's ``variants``.
    accept : callable, optional
        Called with the parity report once everything is staged; raising refuses
        the bundle (nothing is published).

    Raises
    ------
    ExportError
        The staged bundle does not load or run on the device runtime, or ``check``
        or ``accept`` refused it.
    """
    manifest = new_manifest(name=contents.name, version=contents.version, input_schema=contents.input_schema,
                            output_schema=contents.output_schema, producer=contents.producer)
    reference: dict[str, Any] | None = None
    if contents.reference_rows is not None:
        reference = profile_features(contents.reference_rows, contents.input_schema)
        reference["target"] = target_profile(contents.target,
                                             classification=contents.output_schema.task is Task.CLASSIFICATION)
    with BundleWriter(out_dir, overwrite=overwrite) as writer:
        writer.add_file(MODEL_FILE, contents.model)
        manifest = writer.write_manifest(dataclasses.replace(manifest, reference=reference))
        answer_rows = contents.answer_rows if contents.answer_rows is not None else contents.reference_rows
        try:
            with Runtime(writer.path) as runtime:
                parity = check(runtime)
                answers = (runtime.predict_batch(to_model_feeds(answer_rows, contents.input_schema),
                                                 on_error="skip") if answer_rows is not None else None)
        except ExportError:
            raise
        except EdgeRuntimeError as exc:
            raise ExportError(f"the bundle does not run with this schema: {exc}") from exc
        if reference is not None:
            profile = reference_profile(contents.reference_rows, contents.input_schema, contents.output_schema,
                                        answers, k=contents.sketch_k)
            writer.add_file(PROFILE_FILE, profile.to_bytes())
            reference["sketches"] = {"file": PROFILE_FILE, "format": PROFILE_FORMAT, "k": contents.sketch_k,
                                     "outputs_from": contents.outputs_from}
            pca = fit_multivariate(contents.reference_rows, contents.input_schema)
            if pca is not None:  # fewer than two numeric features: no multivariate signal
                writer.add_file(MULTIVARIATE_FILE, pca.to_bytes())
                reference["multivariate"] = {"file": MULTIVARIATE_FILE, "format": MULTIVARIATE_FORMAT,
                                             "features": list(pca.features), "components": pca.components,
                                             "variance_share": pca.variance_share, "explained": pca.explained}
        manifest = dataclasses.replace(manifest, parity=parity, reference=reference)
        if variants is not None:
            manifest = dataclasses.replace(manifest, variants=variants(writer, writer.write_manifest(manifest)))
        writer.write_manifest(manifest)
        if accept is not None:
            accept(parity)
        path = writer.commit()
    return ExportResult(path, read_manifest(path))
