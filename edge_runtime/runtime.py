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

import collections
import dataclasses
import math
import threading
import time
import warnings
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.budgets.policy import BudgetGovernor, BudgetState, ServiceLevel
from edge_runtime.budgets.resources import ProcessMeter, ResourceMeter
from edge_runtime.config import RuntimeConfig, load_config
from edge_runtime.errors import (
    ConfigError,
    EdgeRuntimeError,
    NonFiniteOutputError,
    OverloadError,
    SchemaError,
    StoreError,
)
from edge_runtime.monitoring.interface import NullMonitor, ServingMonitor
from edge_runtime.serving.bundle import Bundle, Manifest
from edge_runtime.serving.inputs import EncodedBatch, InputEncoder
from edge_runtime.serving.model import ModelEngine
from edge_runtime.serving.results import BatchResult, ModelInfo, Prediction
from edge_runtime.serving.schema import InputLayout, Task
from edge_runtime.serving.session import OnnxSession

__all__ = ["Runtime"]


@dataclass(slots=True)
class _RowSlot:
    """One thread's buffers for single rows of one engine."""

    engine: ModelEngine
    binding: Any  # SingleRowBinding, or None when the model needs the general path
    row: Any
    scores: Any
    label: Any
    encoder: InputEncoder

_ON_ERROR = ("raise", "skip")
_EVENTS_KEPT = 100


class Runtime:
    """Serve one bundle on the device.

    Thread-safe: many threads may call one Runtime. Single-row calls reuse
    buffers bound once to the onnxruntime session, one set per thread; the
    monitor and the budget governor serialize their own state.

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
        Unix time for monitoring timestamps, windows and budget checks; a fake clock in tests.
    meter : ResourceMeter, optional
        CPU and memory of the process for the budgets (psutil by default); a fake in tests.
    variant : str, optional
        Serve a variant of the bundle (``"int8"``) instead of its main model.

    Raises
    ------
    ConfigError
        No bundle given, a bad config, or a fallback bundle that does not fit.
    BundleError
        The bundle is missing, altered, or of an unknown format version.
    """

    def __init__(self, bundle: str | Path | None = None, *,
                 config: RuntimeConfig | str | Path | None = None, db: str | Path | None = None,
                 window_rows: int | None = None, clock: Callable[[], float] = time.time,
                 meter: ResourceMeter | None = None, variant: str | None = None) -> None:
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
        self._primary = ModelEngine(path, config.session, variant=variant)
        self._engine = self._primary
        self._fallback: ModelEngine | None = None
        if config.budgets.fallback_bundle is not None:
            self._fallback = ModelEngine(config.budgets.fallback_bundle, config.session)
            self._check_fallback(self._fallback)
        elif config.budgets.enabled and variant is None and "int8" in self._primary.bundle.manifest.variants:
            # The bundle's own quantized variant is the lighter model to fall back on.
            self._fallback = ModelEngine(path, config.session, variant="int8")
        self.bundle: Bundle = self._primary.bundle
        self._input = self._primary.inputs
        self._output = self._primary.outputs
        self._encoder = InputEncoder(self._input, config.inputs)
        # Single rows reuse preallocated buffers bound to the session: each thread
        # gets its own (the main engine's for the first), so one Runtime serves
        # many threads; batches allocate per call and share nothing.
        self._local = threading.local()
        self._slot_lock = threading.Lock()
        self._bindings_taken: set[int] = set()  # engines whose own binding a thread uses
        self._classifier = self._output.task is Task.CLASSIFICATION
        self._closed = False
        self._clock = clock
        self.budget_events: collections.deque[dict[str, Any]] = collections.deque(maxlen=_EVENTS_KEPT)
        # Why monitoring is off although a database was configured (it could not be opened).
        self.monitoring_error: str | None = None
        # A NullMonitor when monitoring is off: the serving path calls its monitor unconditionally.
        self.monitor: ServingMonitor = self._start_monitor(clock) if config.monitoring.db is not None else NullMonitor()
        self.governor: BudgetGovernor | None = None
        if config.budgets.enabled:
            self.governor = BudgetGovernor(config.budgets, meter or ProcessMeter(), clock,
                                           has_fallback=self._fallback is not None,
                                           on_change=self._on_level_change)
            self.monitor.budget_state = self.governor.state

    # ------------------------------------------------------------ properties
    @property
    def manifest(self) -> Manifest:
        """The bundle's manifest."""
        return self.bundle.manifest

    @property
    def info(self) -> ModelInfo:
        """Identity of the model answering now (the fallback's while it serves)."""
        return self._engine.info

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

    @property
    def model_sha256(self) -> str:
        """sha256 of the main bundle's ONNX model, as in its manifest."""
        return self._primary.sha256

    @property
    def session(self) -> OnnxSession:
        """The main model's onnxruntime session (benchmarks time its ``raw_run`` against ``predict``)."""
        return self._primary.session

    def encode(self, rows: Any) -> EncodedBatch:
        """Check and lay out rows exactly as :meth:`predict_batch` would, without running the model."""
        return self._encoder.encode_batch(rows)

    @property
    def service_level(self) -> ServiceLevel:
        """How much work the runtime does now (NORMAL unless a budget is exceeded)."""
        return self.governor.level if self.governor is not None else ServiceLevel.NORMAL

    @property
    def budget_state(self) -> BudgetState | None:
        """The budget measurements at the last check, or None without budgets."""
        return self.governor.state() if self.governor is not None else None

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
            ``deferred`` is True (and ``label`` None) when load shedding with
            ``shed_mode = "defer"`` declined to answer.

        Raises
        ------
        SchemaError
            The row does not fit the schema; the subclass names the feature and value.
        OverloadError
            Load shedding (``shed_mode = "refuse"``) refused the request to keep a budget.
        InferenceError
            onnxruntime failed.
        """
        start = time.perf_counter_ns()
        governor = self.governor
        if governor is not None and governor.level is ServiceLevel.SHED_LOAD and not governor.admit():
            return self._shed(start)
        engine = self._engine
        try:
            slot = self._local.slot
        except AttributeError:  # this thread's first call
            slot = self._new_slot(engine)
        if slot.engine is not engine:  # the budget switched models
            slot = self._new_slot(engine)
        binding = slot.binding
        if binding is None:
            return self._predict_general(row, start)
        try:
            slot.encoder.fill_tensor_row(row, slot.row)
        except SchemaError as exc:
            self.monitor.observe_rejected(exc)
            raise
        binding.run()
        if self._classifier:
            scores = slot.scores[0].copy()
            # One dot product (~0.5 µs) finds a NaN or infinity anywhere in the scores.
            if not math.isfinite(scores.dot(scores)) and not np.isfinite(scores).all():
                self._refuse_output({self._input.tensor_name: slot.row.reshape(1, -1)}, 0, scores)
            if slot.label is not None:
                label = slot.label[0].item()
            else:
                # String labels cannot be bound to a preallocated buffer; skl2onnx's
                # label is the argmax of the probabilities, so derive it the same way.
                label = self._output.classes[int(scores.argmax())]
            observed: Any = scores
        else:
            label = slot.scores.flat[0].item()
            if not math.isfinite(label):
                self._refuse_output({self._input.tensor_name: slot.row.reshape(1, -1)}, 0, label)
            scores = None
            observed = label
        latency = (time.perf_counter_ns() - start) / 1e3
        request_id = self.monitor.observe(slot.row, observed, label, latency)
        if governor is not None:
            # After the monitor: a level change here may switch the logged model, and
            # this answer belongs to the model that gave it.
            governor.record(latency)
        return Prediction(label, scores, engine.info, latency, request_id)

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

        Raises
        ------
        OverloadError
            Load shedding refused the batch to keep a budget.
        """
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self._ensure_open()
        start = time.perf_counter_ns()
        governor = self.governor
        if governor is not None and governor.level is ServiceLevel.SHED_LOAD and not governor.admit():
            self.monitor.observe_refused(_row_count(rows))  # rows, as the CLI reports them
            raise OverloadError(self._shed_cause())
        try:
            encoded = self._encoder.encode_batch(rows)
        except SchemaError as exc:
            self.monitor.observe_rejected(exc)
            raise
        for error in encoded.errors:
            self.monitor.observe_rejected(error)
        if encoded.errors and on_error == "raise":
            raise encoded.errors[0]
        engine = self._engine
        self.monitor.overlap()  # the previous batch's monitoring runs beside this model call
        labels, scores = engine.run(encoded.feeds) if encoded.rows.size else engine.empty()
        if encoded.rows.size:
            answered = np.isfinite(scores).all(axis=1) if scores is not None else _finite_values(labels)
            if not answered.all():
                encoded, labels, scores = self._drop_unanswered(encoded, labels, scores, answered)
                if on_error == "raise" and encoded.errors:
                    raise encoded.errors[0]
        latency = (time.perf_counter_ns() - start) / 1e3
        request_ids = None
        if encoded.rows.size:
            request_ids = self.monitor.observe_batch(encoded.feeds, scores if scores is not None else labels,
                                                     labels, latency)
        if governor is not None:
            governor.record(latency)
        return BatchResult(rows=encoded.rows, labels=labels, scores=scores, errors=encoded.errors,
                           model=engine.info, latency_us=latency, request_ids=request_ids)

    # ------------------------------------------------------------ lifecycle
    def flush(self) -> None:
        """Write buffered monitoring rows and decisions to the database now."""
        self.monitor.flush()

    def close(self) -> None:
        """Flush monitoring, close its open window and database, release the session.

        Further calls raise EdgeRuntimeError. Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        self._primary.binding = None
        if self._fallback is not None:
            self._fallback.binding = None
        self._local = threading.local()  # every thread's next call finds no buffers, and is refused
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

    def _new_slot(self, engine: ModelEngine) -> _RowSlot:
        """This thread's single-row buffers for ``engine``."""
        with self._slot_lock:
            own = engine.binding is not None and id(engine) not in self._bindings_taken
            if own:
                self._bindings_taken.add(id(engine))
        if own:
            # The engine's own binding serves the first thread that asks.
            slot = _RowSlot(engine, engine.binding, engine.row_buffer, engine.scores_buffer, engine.label_buffer,
                            self._encoder)
        elif engine.binding is not None:
            outputs = engine.binding.outputs
            binding = engine.session.bind_single_row(self._input.tensor_name, len(self._input.features), outputs)
            label_output = self._output.label_output
            slot = _RowSlot(engine, binding, binding.input[0], binding.outputs[self._output.score_output],
                            binding.outputs.get(label_output) if label_output else None,
                            InputEncoder(self._input, self.config.inputs))
        else:
            slot = _RowSlot(engine, None, None, None, None, self._encoder)
        self._local.slot = slot
        return slot

    def _predict_general(self, row: Any, start: int) -> Prediction:
        self._ensure_open()
        try:
            feeds = self._encoder.columns_row_feeds(row)
        except SchemaError as exc:
            self.monitor.observe_rejected(exc)
            raise
        engine = self._engine
        labels, scores = engine.run(feeds)
        label = labels[0].item() if isinstance(labels[0], np.generic) else labels[0]
        row_scores = scores[0] if scores is not None else None
        if not (_finite_values(labels) if scores is None else np.isfinite(scores)).all():
            self._refuse_output(feeds, 0, label if row_scores is None else row_scores)
        latency = (time.perf_counter_ns() - start) / 1e3
        served = feeds if self._input.layout is InputLayout.COLUMNS else feeds[self._input.tensor_name][0]
        request_id = self.monitor.observe(served, row_scores if row_scores is not None else label, label, latency)
        if self.governor is not None:
            self.governor.record(latency)
        return Prediction(label, row_scores, engine.info, latency, request_id)

    def _output_error(self, feeds: dict[str, np.ndarray], index: int, output: Any) -> NonFiniteOutputError | None:
        """The error for row ``index`` of ``feeds``, whose model output was not finite.

        None when the row itself holds NaN or infinity: the input policy let it through
        (``non_finite = "allow"``), and the model's answer to it is served as it is.
        """
        names = self.feature_names
        if self._input.layout is InputLayout.COLUMNS:
            values = [(name, feeds[name][index].reshape(-1)[0]) for name in names if name in feeds]
        else:
            values = list(zip(names, feeds[self._input.tensor_name][index].reshape(-1).tolist()))
        numbers = [(name, float(v)) for name, v in values if isinstance(v, (int, float, np.number))]
        if not all(math.isfinite(v) for _, v in numbers):
            return None
        name, value = max(numbers, key=lambda item: abs(item[1]) if math.isfinite(item[1]) else -1.0,
                          default=(names[0], None))
        flat = np.asarray(output, dtype=float).reshape(-1)
        text = str(flat[0]) if flat.size == 1 else np.array2string(flat[:4], precision=4)
        return NonFiniteOutputError(name, value, text)

    def _refuse_output(self, feeds: dict[str, np.ndarray], index: int, output: Any) -> None:
        error = self._output_error(feeds, index, output)
        if error is not None:
            self.monitor.observe_rejected(error)
            raise error

    def _drop_unanswered(self, encoded: EncodedBatch, labels: np.ndarray, scores: np.ndarray | None,
                         answered: np.ndarray) -> tuple[EncodedBatch, np.ndarray, np.ndarray | None]:
        """Move the rows whose output is not finite from the answers to the errors (with their row numbers)."""
        errors = list(encoded.errors)
        for i in np.flatnonzero(~answered).tolist():
            error = self._output_error(encoded.feeds, i, scores[i] if scores is not None else labels[i])
            if error is None:
                answered[i] = True
                continue
            errors.append(error.with_row(int(encoded.rows[i])))
            self.monitor.observe_rejected(error)
        if answered.all():
            return encoded, labels, scores
        errors.sort(key=lambda e: e.row if e.row is not None else -1)
        feeds = {name: array[answered] for name, array in encoded.feeds.items()}
        kept = EncodedBatch(feeds=feeds, rows=encoded.rows[answered], errors=errors)
        return kept, labels[answered], scores[answered] if scores is not None else None

    def _shed(self, start: int) -> Prediction:
        self._ensure_open()
        self.monitor.observe_refused()
        if self.config.budgets.shed_mode == "defer":
            return Prediction(None, None, self._engine.info, (time.perf_counter_ns() - start) / 1e3,
                              deferred=True)
        raise OverloadError(self._shed_cause())

    def _shed_cause(self) -> str:
        events = [e for e in self.budget_events if e["status"] == ServiceLevel.SHED_LOAD.name.lower()]
        return events[-1]["message"] if events else "load shedding"

    def _check_fallback(self, fallback: ModelEngine) -> None:
        if fallback.inputs.names != self._primary.inputs.names or fallback.inputs.layout != self._primary.inputs.layout:
            raise ConfigError(f"fallback bundle '{fallback.bundle.path}' has other inputs than the main bundle")
        if fallback.outputs.task != self._primary.outputs.task or fallback.outputs.classes != self._primary.outputs.classes:
            raise ConfigError(f"fallback bundle '{fallback.bundle.path}' predicts other classes than the main bundle")

    def _on_level_change(self, old: ServiceLevel, new: ServiceLevel, cause: str) -> None:
        """Apply a new service level: sampling, model, and record the event."""
        budgets = self.config.budgets
        self.monitor.set_sampling(budgets.shed_log_rate if new >= ServiceLevel.SHED_OPTIONAL else 1.0)
        engine = self._fallback if (new >= ServiceLevel.FALLBACK and self._fallback is not None) else self._primary
        if engine is not self._engine:
            self._engine = engine
            self.monitor.set_model(engine.info, engine.sha256)
        name, status = f"{old.name.lower()}->{new.name.lower()}", new.name.lower()
        self.budget_events.append({"ts": self._clock(), "kind": "budget", "name": name, "status": status,
                                   "message": cause})
        self.monitor.add_event("budget", name, status, cause)

    def _start_monitor(self, clock: Callable[[], float]) -> ServingMonitor:
        # Imported here: sqlite-utils and the sketches cost ~60 ms of start-up
        # (more where pandas is installed, which sqlite-utils imports when present),
        # paid only by runtimes that monitor.
        from edge_runtime.monitoring.data_profile import load_reference
        from edge_runtime.monitoring.guarded_store import GuardedStore, open_store
        from edge_runtime.monitoring.store import MonitorStore
        from edge_runtime.monitoring.monitor import Monitor
        from edge_runtime.monitoring.multivariate import load_multivariate

        monitoring = self.config.monitoring
        assert monitoring.db is not None
        note = None
        try:
            store, note = open_store(monitoring.db, self.config.retention, clock=clock,
                                     lock_timeout=monitoring.lock_timeout_ms / 1000.0, on_error=monitoring.on_error)
            opened: MonitorStore | GuardedStore = store
        except StoreError as exc:
            if monitoring.on_error == "raise":
                raise
            # Monitoring is an observer: a database that cannot be opened leaves the model
            # serving; monitoring keeps trying (with backoff) and counts what it cannot log.
            warnings.warn(f"edge-runtime: monitoring cannot open its database yet, serving without it "
                          f"until it can: {exc}", RuntimeWarning, stacklevel=3)
            self.monitoring_error = str(exc)
            opened = GuardedStore.unopened(monitoring.db, self.config.retention, clock=clock,
                                           lock_timeout=monitoring.lock_timeout_ms / 1000.0, error=exc,
                                           keep_corrupt=self.config.retention.keep_corrupt)
        monitor = Monitor(opened, reference=load_reference(self.bundle), inputs=self._input, outputs=self._output,
                          info=self._primary.info, model_sha256=self._primary.sha256, config=monitoring,
                          drift=self.config.drift, clock=clock,
                          keep_corrupt=self.config.retention.keep_corrupt, multivariate=load_multivariate(self.bundle))
        if note:
            monitor.add_event("monitoring", "replaced", "warn", note)
        return monitor


def _finite_values(values: np.ndarray) -> np.ndarray:
    """Which of a regressor's values (or a classifier's labels, always finite) are finite."""
    if values.dtype.kind == "f":
        finite: np.ndarray = np.isfinite(values)
        return finite
    return np.ones(values.shape[0], dtype=bool)


def _row_count(rows: Any) -> int:
    """How many rows a refused batch held (1 when it cannot tell)."""
    try:
        return max(1, len(rows))
    except TypeError:
        return 1
