"""The device-side facade: load a verified bundle and serve predictions.

Examples
--------
A bundle is made on the training side by :func:`converters.export`; here one is
built from a tiny logistic regression first.

>>> import tempfile, numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from converters import export
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
>>> model = LogisticRegression().fit(X, y)
>>> path = export(model, X, y, name="toy", version="1.0",
...               out_dir=tempfile.mkdtemp() + "/toy").path
>>> from edge_runtime import Runtime
>>> with Runtime(path) as rt:
...     p = rt.predict([2.0, 0.0, 0.0])
...     print(p.label, p.model_name, p.probabilities[1] > 0.9)
1 toy True
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bundle import MODEL_FILE, Bundle, Manifest, load_bundle
from edge_runtime.config import RuntimeConfig, load_config
from edge_runtime.errors import BundleFormatError, ConfigError, EdgeRuntimeError, SchemaError
from edge_runtime.inputs import InputEncoder
from edge_runtime.monitor import Monitor
from edge_runtime.profile import load_reference
from edge_runtime.store import MonitorStore
from edge_runtime.results import BatchResult, ModelInfo, Prediction
from edge_runtime.runner import OnnxSession, SingleRowBinding
from edge_runtime.schema import FeatureKind, InputLayout, Task

__all__ = ["Runtime"]

_ON_ERROR = ("raise", "skip")


class Runtime:
    """Serve one bundle on the device.

    Single-row calls reuse buffers bound once to the onnxruntime session, so a
    Runtime is not thread-safe: give each thread its own.

    Parameters
    ----------
    bundle : str or Path, optional
        The bundle directory. May be omitted when the config names one.
    config : RuntimeConfig, str or Path, optional
        A config object or the path of a TOML config file.
    db : str or Path, optional
        Monitoring database; turns on monitoring and the decision log
        (overrides ``[monitoring] db`` of the config).
    window_rows : int, optional
        Rows per monitoring window (overrides the config).
    clock : callable, optional
        Unix time for monitoring timestamps and windows; a fake clock in tests.

    Raises
    ------
    ConfigError
        No bundle given, or a bad config.
    BundleError
        The bundle is missing, altered, or of an unknown format version.
    """

    def __init__(self, bundle: str | Path | None = None, *,
                 config: RuntimeConfig | str | Path | None = None, db: str | Path | None = None,
                 window_rows: int | None = None, clock: Callable[[], float] = time.time) -> None:
        if config is None:
            config = RuntimeConfig()
        elif not isinstance(config, RuntimeConfig):
            config = load_config(config)
        if db is not None or window_rows is not None:
            monitoring = dataclasses.replace(
                config.monitoring,
                db=Path(db) if db is not None else config.monitoring.db,
                window_rows=window_rows if window_rows is not None else config.monitoring.window_rows)
            config = dataclasses.replace(config, monitoring=monitoring)
        self.config = config
        path = bundle if bundle is not None else config.bundle
        if path is None:
            raise ConfigError("no bundle given: pass a bundle path or set [bundle] path in the config")
        self.bundle: Bundle = load_bundle(path)
        manifest = self.bundle.manifest
        self._input = manifest.input_schema
        self._output = manifest.output_schema
        self._session = OnnxSession(self.bundle.model_path, config.session)
        self._check_signature()
        self._encoder = InputEncoder(self._input, config.inputs)
        self.info = ModelInfo(name=manifest.name, version=manifest.version,
                              classes=self._output.classes)
        self._classifier = self._output.task is Task.CLASSIFICATION
        self._output_names = [self._output.score_output]
        if self._classifier and self._output.label_output:
            self._output_names.insert(0, self._output.label_output)
        self._closed = False
        self._binding: SingleRowBinding | None = None
        outputs = self._warm_up()
        if self._input.layout is InputLayout.TENSOR:
            self._bind_fast_path(outputs)
        self.monitor: Monitor | None = None
        if config.monitoring.db is not None:
            self.monitor = self._start_monitor(clock)

    # ------------------------------------------------------------ properties
    @property
    def manifest(self) -> Manifest:
        """The bundle's manifest."""
        return self.bundle.manifest

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Input feature names in model order."""
        return self._input.names

    @property
    def classes(self) -> tuple[Any, ...]:
        """Class labels of a classifier, empty for a regressor."""
        return self._output.classes

    @property
    def task(self) -> Task:
        """Classification or regression."""
        return self._output.task

    # ------------------------------------------------------------- predict
    def predict(self, row: Any) -> Prediction:
        """Predict one row.

        Parameters
        ----------
        row : numpy.ndarray, sequence or mapping
            Feature values in model order, or a mapping of feature name to value.

        Returns
        -------
        Prediction

        Raises
        ------
        SchemaError
            The row does not fit the schema; the subclass names the feature and value.
        InferenceError
            onnxruntime failed.
        """
        start = time.perf_counter_ns()
        binding = self._binding
        if binding is None:
            return self._predict_via_batch(row, start)
        try:
            self._encoder.fill_tensor_row(row, self._row_buffer)
        except SchemaError as exc:
            if self.monitor is not None:
                self.monitor.observe_rejected(exc)
            raise
        binding.run()
        if self._classifier:
            scores = self._scores_buffer[0].copy()
            if self._label_buffer is not None:
                label = self._label_buffer[0].item()
            else:
                # String labels cannot be bound to a preallocated buffer; skl2onnx's
                # label is the argmax of the probabilities, so derive it the same way.
                label = self._output.classes[int(scores.argmax())]
            latency = (time.perf_counter_ns() - start) / 1e3
            if self.monitor is None:
                return Prediction(label, scores, self.info, latency)
            request_id = self.monitor.observe(self._row_buffer, scores, label, latency)
            return Prediction(label, scores, self.info, latency, request_id)
        value = self._scores_buffer.flat[0].item()
        latency = (time.perf_counter_ns() - start) / 1e3
        if self.monitor is None:
            return Prediction(value, None, self.info, latency)
        request_id = self.monitor.observe(self._row_buffer, value, value, latency)
        return Prediction(value, None, self.info, latency, request_id)

    def predict_batch(self, rows: Any, *, on_error: str = "raise") -> BatchResult:
        """Predict many rows in one model call.

        Parameters
        ----------
        rows : 2-D numpy.ndarray, pandas.DataFrame, or sequence of rows
            Rows are sequences in model order or mappings by feature name.
        on_error : {'raise', 'skip'}
            ``'raise'``: the first bad row raises its SchemaError (with ``row`` set).
            ``'skip'``: bad rows are reported in :attr:`BatchResult.errors` and
            the good ones are still served.

        Returns
        -------
        BatchResult
        """
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self._ensure_open()
        start = time.perf_counter_ns()
        try:
            encoded = self._encoder.encode_batch(rows)
        except SchemaError as exc:
            if self.monitor is not None:
                self.monitor.observe_rejected(exc)
            raise
        if self.monitor is not None:
            for error in encoded.errors:
                self.monitor.observe_rejected(error)
        if encoded.errors and on_error == "raise":
            raise encoded.errors[0]
        if encoded.rows.size:
            outputs = self._session.run(self._output_names, encoded.feeds)
        else:
            outputs = self._empty_outputs()
        labels, scores = self._split_outputs(outputs)
        latency = (time.perf_counter_ns() - start) / 1e3
        request_ids = None
        if self.monitor is not None and encoded.rows.size:
            served = self._served_rows(encoded.feeds)
            request_ids = self.monitor.observe_batch(served, scores if scores is not None else labels,
                                                     labels.tolist(), latency)
        return BatchResult(rows=encoded.rows, labels=labels, scores=scores, errors=encoded.errors,
                           model=self.info, latency_us=latency, request_ids=request_ids)

    # ------------------------------------------------------------ lifecycle
    def flush(self) -> None:
        """Write buffered monitoring rows and decisions to the database now."""
        if self.monitor is not None:
            self.monitor.flush()

    def close(self) -> None:
        """Flush monitoring, close its open window and database, release the session.

        Further calls raise EdgeRuntimeError. Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        self._binding = None
        self._session = None  # type: ignore[assignment]
        if self.monitor is not None:
            self.monitor.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Runtime(bundle='{self.bundle.path}', model='{self.info.name}:{self.info.version}')"

    # -------------------------------------------------------------- helpers
    def _ensure_open(self) -> None:
        if self._closed:
            raise EdgeRuntimeError("this Runtime is closed")

    def _predict_via_batch(self, row: Any, start: int) -> Prediction:
        self._ensure_open()
        try:
            feeds = self._encoder.columns_row_feeds(row)
        except SchemaError as exc:
            if self.monitor is not None:
                self.monitor.observe_rejected(exc)
            raise
        labels, scores = self._split_outputs(self._session.run(self._output_names, feeds))
        label = labels[0].item() if isinstance(labels[0], np.generic) else labels[0]
        row_scores = scores[0] if scores is not None else None
        latency = (time.perf_counter_ns() - start) / 1e3
        if self.monitor is None:
            return Prediction(label, row_scores, self.info, latency)
        values = [feeds[name][0, 0] for name in self._input.names]
        request_id = self.monitor.observe(values, row_scores if row_scores is not None else label, label, latency)
        return Prediction(label, row_scores, self.info, latency, request_id)

    def _served_rows(self, feeds: dict[str, np.ndarray]) -> Any:
        if self._input.layout is InputLayout.TENSOR:
            return feeds[self._input.tensor_name]
        return list(zip(*(feeds[name][:, 0] for name in self._input.names)))

    def _start_monitor(self, clock: Callable[[], float]) -> Monitor:
        monitoring = self.config.monitoring
        assert monitoring.db is not None
        store = MonitorStore(monitoring.db, self.config.retention, clock=clock)
        return Monitor(store, reference=load_reference(self.bundle), inputs=self._input, outputs=self._output,
                       info=self.info, model_sha256=str(self.manifest.files[MODEL_FILE]["sha256"]),
                       config=monitoring, drift=self.config.drift, clock=clock)

    def _split_outputs(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        scores = np.asarray(outputs[-1])
        if not self._classifier:
            return scores.reshape(scores.shape[0], -1)[:, 0], None
        if self._output.label_output:
            return np.asarray(outputs[0]).reshape(-1), scores
        return np.asarray(self._output.classes, dtype=object)[scores.argmax(axis=1)], scores

    def _empty_outputs(self) -> list[np.ndarray]:
        width = max(len(self._output.classes), 1)
        empty: list[np.ndarray] = [np.zeros((0, width), dtype=np.float32)]
        if self._classifier and self._output.label_output:
            empty.insert(0, np.zeros(0, dtype=object))
        return empty

    def _check_signature(self) -> None:
        """Refuse a bundle whose schema does not match the ONNX graph's inputs and outputs."""
        inputs = self._session.input_names
        if self._input.layout is InputLayout.TENSOR:
            expected: tuple[str, ...] = (self._input.tensor_name,)
        else:
            expected = self._input.names
        if set(inputs) != set(expected):
            raise BundleFormatError(
                f"the manifest's inputs {list(expected)} do not match the model's inputs {list(inputs)}"
            )
        needed = [n for n in (self._output.label_output, self._output.score_output) if n]
        for name in needed:
            if name not in self._session.output_names:
                raise BundleFormatError(
                    f"the manifest names output '{name}', the model has {list(self._session.output_names)}"
                )

    def _warm_up(self) -> list[np.ndarray]:
        """Run one typical row: checks the outputs fit the schema and pays first-call costs now."""
        if self._input.layout is InputLayout.TENSOR:
            row = [[_midpoint(f.minimum, f.maximum) for f in self._input.features]]
            feeds = {self._input.tensor_name: np.array(row, dtype=np.float32)}
        else:
            feeds = {
                f.name: (np.array([[f.categories[0] if f.categories else ""]], dtype=object)
                         if f.kind is FeatureKind.CATEGORICAL
                         else np.array([[_midpoint(f.minimum, f.maximum)]], dtype=np.float32))
                for f in self._input.features
            }
        outputs = self._session.run(self._output_names, feeds)
        scores = np.asarray(outputs[-1])
        if self._classifier and scores.reshape(1, -1).shape[1] != len(self._output.classes):
            raise BundleFormatError(
                f"output '{self._output.score_output}' has {scores.reshape(1, -1).shape[1]} columns, "
                f"the manifest lists {len(self._output.classes)} classes"
            )
        return outputs

    def _bind_fast_path(self, outputs: list[np.ndarray]) -> None:
        """Bind preallocated buffers, shaped like the warm-up outputs, for single-row calls."""
        numeric = {name: out for name, out in zip(self._output_names, outputs)
                   if isinstance(out, np.ndarray) and out.dtype.kind in "fiub"}
        if self._output.score_output not in numeric:
            return  # unusual graph: keep the general path
        binding = self._session.bind_single_row(self._input.tensor_name, len(self._input.features),
                                                numeric)
        self._binding = binding
        self._row_buffer = binding.input[0]
        self._scores_buffer = binding.outputs[self._output.score_output]
        self._label_buffer = (binding.outputs.get(self._output.label_output)
                              if self._output.label_output else None)


def _midpoint(low: float | None, high: float | None) -> float:
    if low is None or high is None:
        return 0.0
    return (low + high) / 2.0

