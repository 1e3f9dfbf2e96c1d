"""Live monitoring: windows of sketches, drift against the reference, and the decision log.

The per-prediction cost is a few array stores into preallocated buffers. The
work happens in :meth:`Monitor.flush`, every ``flush_rows`` rows or
``flush_ms`` milliseconds: the buffered rows update the window's sketches and
data-quality counters, go to the decision log in one transaction, and close
the window when it is full (computing its drift against the reference). No
thread: a background writer gave worse latency tails than inline batched
flushes here (the GIL).

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> from edge_runtime.config import DriftPolicy, MonitoringConfig, RetentionPolicy
>>> from edge_runtime.monitor import Monitor
>>> from edge_runtime.results import ModelInfo
>>> from edge_runtime.schema import FeatureSpec, InputSchema, OutputSchema, Task
>>> from edge_runtime.store import MonitorStore
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.db"
>>> store = MonitorStore(path, RetentionPolicy())
>>> inputs = InputSchema(features=(FeatureSpec(name="x", minimum=0.0, maximum=1.0),))
>>> outputs = OutputSchema(task=Task.REGRESSION, score_output="y")
>>> monitor = Monitor(store, reference=None, inputs=inputs, outputs=outputs,
...                   info=ModelInfo(name="m", version="1"), model_sha256="00",
...                   config=MonitoringConfig(window_rows=3), drift=DriftPolicy())
>>> for v in (0.5, 2.0, 0.1, 0.2):
...     _ = monitor.observe(np.array([v], dtype=np.float32), v * 10, v * 10, 5.0)
>>> monitor.flush()
>>> [w["rows"] for w in store.windows()], store.windows()[0]["quality"]["features"]["x"]["out_of_range"]
([3], 1)
>>> monitor.close()  # closes the open window (partial) and the database
>>> store = MonitorStore(path, RetentionPolicy())
>>> [(w["rows"], w["partial"]) for w in store.windows()], store.decision_count()
([(3, 0), (1, 1)], 4)
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from edge_runtime.config import DriftPolicy, MonitoringConfig
from edge_runtime.drift import DriftStatus, WindowDrift, assess_window
from edge_runtime.errors import SchemaError
from edge_runtime.profile import Profile
from edge_runtime.results import ModelInfo
from edge_runtime.schema import FeatureKind, InputLayout, InputSchema, OutputSchema, Task
from edge_runtime.store import MonitorStore

__all__ = ["Monitor", "drift_report", "monitoring_status"]

_LATENCY_RANKS = (0.5, 0.9, 0.99)
_RETENTION_EVERY = 4096  # rows between retention passes (a pass is a few queries)
_HASH_MULTIPLIERS = (np.random.default_rng(20261126).integers(1, 2**63, size=4096, dtype=np.uint64)
                     | np.uint64(1))


@dataclass(slots=True)
class _Block:
    """Served rows on their way to the sketches and the log: the buffer, or a batch."""

    rows: Any  # float32 matrix (tensor layout) or list of value rows (columns layout)
    scores: np.ndarray
    labels: list[Any]
    latency: np.ndarray
    times: np.ndarray
    ids: np.ndarray


class _Window:
    """The open window: its profile, counters and time span."""

    def __init__(self, seq: int, profile: Profile, width: int) -> None:
        self.seq = seq
        self.profile = profile
        self.rows = 0
        self.opened_at: float | None = None
        self.missing = np.zeros(width, dtype=np.int64)
        self.out_of_range = np.zeros(width, dtype=np.int64)
        self.unseen = np.zeros(width, dtype=np.int64)
        self.rejected: Counter[str] = Counter()
        self.rejected_features: Counter[str] = Counter()

    def quality(self, names: Sequence[str]) -> dict[str, Any]:
        return {
            "features": {name: {"missing": int(self.missing[i]), "out_of_range": int(self.out_of_range[i]),
                                "unseen": int(self.unseen[i]), "rejected": int(self.rejected_features[name])}
                         for i, name in enumerate(names)},
            "rejected": dict(self.rejected),
        }

    def latency(self) -> dict[str, float] | None:
        sketch = self.profile.latency
        if sketch.count == 0:
            return None
        p50, p90, p99 = sketch.quantiles(_LATENCY_RANKS)
        return {"p50_us": float(p50), "p90_us": float(p90), "p99_us": float(p99), "max_us": sketch.maximum,
                "mean_us": sketch.mean}


class Monitor:
    """Watches one model's inputs and outputs and logs its decisions.

    Parameters
    ----------
    store : MonitorStore
    reference : Profile or None
        The bundle's reference profile; without it windows are kept but not assessed.
    inputs, outputs : InputSchema, OutputSchema
    info : ModelInfo
    model_sha256 : str
        Identifies the model in every window (windows from many devices merge by it).
    config : MonitoringConfig
    drift : DriftPolicy
    clock : callable
        Unix time; a fake one in tests.
    """

    def __init__(self, store: MonitorStore, *, reference: Profile | None, inputs: InputSchema,
                 outputs: OutputSchema, info: ModelInfo, model_sha256: str, config: MonitoringConfig,
                 drift: DriftPolicy, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.reference = reference
        self.inputs = inputs
        self.outputs = outputs
        self.info = info
        self.model_sha256 = model_sha256
        self.config = config
        self.policy = drift
        self._clock = clock
        self._names = inputs.names
        self._tensor = inputs.layout is InputLayout.TENSOR
        self._classifier = outputs.task is Task.CLASSIFICATION
        width = len(inputs.features)
        self._capacity = config.flush_rows
        self._rows = np.zeros((self._capacity, width), dtype=np.float32) if self._tensor else None
        self._values: list[Sequence[Any]] = []
        n_scores = len(outputs.classes) if self._classifier else 1
        self._scores = np.zeros((self._capacity, n_scores), dtype=np.float32)
        self._latency = np.zeros(self._capacity, dtype=np.float64)
        self._times = np.zeros(self._capacity, dtype=np.float64)
        # Ids are kept per row: with sampling on, the buffered rows' ids have gaps.
        self._ids = np.zeros(self._capacity, dtype=np.int64)
        self._labels: list[Any] = []
        self._fill = 0
        self._profiled = 0  # buffered rows already in the window sketches (flush may be interrupted)
        self._next_id = store.next_request_id()
        self._flush_every = config.flush_ms / 1000.0
        self._flush_deadline = clock() + self._flush_every
        self._log_credit = 0.0
        self._since_retention = 0
        self._mins = np.array([f.minimum if f.minimum is not None else -np.inf for f in inputs.features])
        self._maxs = np.array([f.maximum if f.maximum is not None else np.inf for f in inputs.features])
        self._known = [frozenset(f.categories) if f.kind is FeatureKind.CATEGORICAL else None
                       for f in inputs.features]
        self._model_id = store.register_model(info.name, info.version, model_sha256)
        self._sample_rate = 1.0
        self._sample_credit = 0.0
        self.budget_state: Callable[[], Any] | None = None  # set by the Runtime when budgets are on
        self._window = self._open_window(store.next_window_seq())
        self.last_drift: WindowDrift | None = None

    # ---------------------------------------------------------- hot path
    def observe(self, row: Any, scores: Any, label: Any, latency_us: float) -> int:
        """Buffer one served row; return its request id.

        Parameters
        ----------
        row : numpy.ndarray or sequence
            The row as fed to the model: the float32 buffer (tensor layout) or
            the values in schema order (columns layout).
        scores : numpy.ndarray or float
            Class probabilities, or the predicted value.
        label : object
            The predicted class or value.
        latency_us : float
        """
        if self._sample_rate < 1.0:  # shedding optional work: keep every 1/rate-th row
            self._sample_credit += self._sample_rate
            if self._sample_credit < 1.0:
                request_id = self._next_id
                self._next_id = request_id + 1
                return request_id
            self._sample_credit -= 1.0
        i = self._fill
        if self._rows is not None:
            self._rows[i] = row
        else:
            self._values.append(row)
        self._scores[i] = scores
        self._latency[i] = latency_us
        now = self._clock()
        self._times[i] = now
        self._labels.append(label)
        self._fill = i + 1
        request_id = self._next_id
        self._ids[i] = request_id
        self._next_id = request_id + 1
        if self._fill == self._capacity or now >= self._flush_deadline:
            self.flush()
        return request_id

    def observe_batch(self, rows: Any, scores: np.ndarray, labels: Sequence[Any], latency_us: float) -> np.ndarray:
        """Record the served rows of a batch (``latency_us`` is the whole batch's); return their request ids.

        A batch that fits in the row buffer joins it (so small batches share one
        flush); a larger one flushes the buffer and is ingested as one block.
        """
        n = len(labels)
        first = self._next_id
        self._next_id += n
        now = self._clock()
        scores = np.asarray(scores, dtype=np.float32).reshape(n, -1)
        per_row = latency_us / n if n else 0.0
        if self._fill + n <= self._capacity:
            a, b = self._fill, self._fill + n
            if self._rows is not None:
                self._rows[a:b] = rows
            else:
                self._values.extend(rows)
            self._scores[a:b] = scores
            self._latency[a:b] = per_row
            self._times[a:b] = now
            self._ids[a:b] = np.arange(first, first + n)
            self._labels.extend(labels)
            self._fill = b
            if self._fill == self._capacity or now >= self._flush_deadline:
                self.flush()
            return np.arange(first, first + n)
        if self._fill:
            self.flush()  # the buffered rows come first in the log and the windows
        block = _Block(
            rows=np.asarray(rows, dtype=np.float32) if self._tensor else list(rows),
            scores=scores, labels=list(labels), latency=np.full(n, per_row), times=np.full(n, now),
            ids=np.arange(first, first + n),
        )
        self._ingest(block, now)
        self._flush_deadline = now + self._flush_every
        return np.arange(first, first + n)

    def set_sampling(self, rate: float) -> None:
        """Monitor and log only this share of single-row predictions (budget shedding); 1.0 is all."""
        self._sample_rate = rate
        self._sample_credit = 0.0

    def set_model(self, info: ModelInfo, model_sha256: str) -> None:
        """Attribute the next decisions to another model (the budget fallback, or back)."""
        if self._fill:
            self.flush()
        self.info = info
        self._model_id = self.store.register_model(info.name, info.version, model_sha256)

    def observe_refused(self) -> None:
        """Count a request refused or deferred by load shedding."""
        self._window.rejected["OverloadError"] += 1

    def observe_rejected(self, error: SchemaError) -> None:
        """Count a row refused by the input checks (a schema violation)."""
        self._window.rejected[type(error).__name__] += 1
        if error.feature is not None:
            self._window.rejected_features[error.feature] += 1

    # -------------------------------------------------------------- flush
    def flush(self) -> None:
        """Write buffered rows: sketches, data quality, decision log; close windows that are due."""
        n = self._fill
        block = _Block(
            rows=self._rows[:n] if self._rows is not None else self._values,
            scores=self._scores[:n], labels=self._labels, latency=self._latency[:n], times=self._times[:n],
            ids=self._ids[:n])
        self._ingest(block, self._clock())
        self._fill = 0
        self._labels = []
        self._values = []
        self._flush_deadline = self._clock() + self._flush_every

    def _ingest(self, block: _Block, now: float) -> None:
        n = len(block.labels)
        # Progress is recorded slice by slice, so a flush interrupted (SIGTERM
        # raising in the CLI) and run again neither loses nor double-counts rows;
        # decisions are keyed by request id and rewritten idempotently.
        while self._profiled < n:
            start = self._profiled
            take = min(n - start, self.config.window_rows - self._window.rows)
            self._profile(block, start, start + take)
            self._profiled = start + take
            if self._window.rows >= self.config.window_rows:
                self._close_window(partial=False, now=float(block.times[self._profiled - 1]))
        window = self._window
        if (self.config.window_seconds and window.opened_at is not None
                and now - window.opened_at >= self.config.window_seconds):
            self._close_window(partial=False, now=now)
        snapshot = {"seq": self._window.seq, "opened_at": self._window.opened_at, "updated_at": now,
                    "rows": self._window.rows, "rejected": sum(self._window.rejected.values()),
                    "quality": self._window.quality(self._names), "latency": self._window.latency(),
                    "budget": self._budget()}
        decisions, features = self._decision_rows(block)
        self.store.append_decisions(decisions, features, snapshot)
        self._profiled = 0  # only once written: a re-run after an interrupted write must not profile twice
        self._since_retention += n
        if self._since_retention >= _RETENTION_EVERY:
            self._since_retention = 0
            self.store.enforce_retention()

    def close(self) -> None:
        """Flush, close the open window (marked partial) and close the database."""
        self.flush()
        if self._window.rows:
            self._close_window(partial=True, now=self._clock())
        self.store.close()

    # ----------------------------------------------------------- internals
    def _budget(self) -> dict[str, Any] | None:
        return self.budget_state().to_dict() if self.budget_state is not None else None

    def _open_window(self, seq: int) -> _Window:
        profile = Profile.for_schema(self.inputs, self.outputs, k=self.config.sketch_k)
        return _Window(seq, profile, len(self.inputs.features))

    def _profile(self, block: _Block, a: int, b: int) -> None:
        window = self._window
        if window.opened_at is None:
            window.opened_at = float(block.times[a])
        if isinstance(block.rows, np.ndarray):
            rows = block.rows[a:b]
            window.profile.update_matrix(rows)
            window.missing += np.isnan(rows).sum(axis=0)
            with np.errstate(invalid="ignore"):
                window.out_of_range += ((rows < self._mins) | (rows > self._maxs)).sum(axis=0)
        else:
            columns = list(zip(*block.rows[a:b]))
            prepared: list[Any] = []
            for i, column in enumerate(columns):
                known = self._known[i]
                if known is None:
                    values = np.array(column, dtype=np.float64)
                    window.missing[i] += int(np.isnan(values).sum())
                    with np.errstate(invalid="ignore"):
                        window.out_of_range[i] += int(((values < self._mins[i]) | (values > self._maxs[i])).sum())
                    prepared.append(values)
                else:
                    window.unseen[i] += sum(1 for v in column if v not in known)
                    prepared.append(column)
            window.profile.update_columns(prepared)
        scores = block.scores[a:b]
        if self._classifier:
            window.profile.update_outputs(block.labels[a:b], scores.max(axis=1))
        else:
            window.profile.update_outputs(None, scores[:, 0])
        window.profile.update_latency(block.latency[a:b])
        window.rows += b - a

    def _decision_rows(self, block: _Block) -> tuple[list[tuple[Any, ...]], list[tuple[int, str]]]:
        n = len(block.labels)
        rate = self.config.log_sample_rate
        if n == 0 or rate <= 0:
            return [], []
        if rate >= 1.0:
            chosen = np.arange(n)
        else:  # deterministic thinning: every 1/rate-th row, carried across flushes
            credit = self._log_credit + rate * np.arange(1, n + 1)
            chosen = np.flatnonzero(np.diff(np.floor(np.concatenate([[self._log_credit], credit]))) > 0)
            self._log_credit = float(credit[-1] % 1.0)
            if chosen.size == 0:
                return [], []
        scores = block.scores[chosen]
        top = (scores.max(axis=1) if self._classifier else scores[:, 0]).tolist()
        ids = block.ids[chosen].tolist()
        labels = block.labels
        rows = list(zip(ids, block.times[chosen].tolist(), repeat(self._model_id), block.latency[chosen].tolist(),
                        [str(labels[i]) for i in chosen.tolist()], top, self._input_hashes(block, chosen)))
        features: list[tuple[int, str]] = []
        if self.config.log_features:
            features = [(rid, json.dumps(dict(zip(self._names, self._row_values(block, i)))))
                        for rid, i in zip(ids, chosen.tolist())]
        return rows, features

    def _input_hashes(self, block: _Block, chosen: np.ndarray) -> list[int]:
        """A 64-bit hash per row (stored as a signed integer), to spot repeated inputs without storing them."""
        if isinstance(block.rows, np.ndarray):
            # Vectorized multiply-xor hash of the float32 bits: ~20x cheaper than
            # a blake2b call per row; it identifies, it does not protect.
            words = np.ascontiguousarray(block.rows[chosen]).view(np.uint32).astype(np.uint64)
            with np.errstate(over="ignore"):
                digest = (words * _HASH_MULTIPLIERS[: words.shape[1]]).sum(axis=1, dtype=np.uint64)
                digest ^= digest >> np.uint64(29)
                digest *= np.uint64(0xBF58476D1CE4E5B9)
                digest ^= digest >> np.uint64(32)
            return digest.view(np.int64).tolist()
        return [int.from_bytes(hashlib.blake2b(json.dumps(self._row_values(block, i)).encode(),
                                               digest_size=8).digest(), "little", signed=True)
                for i in chosen.tolist()]

    def _row_values(self, block: _Block, i: int) -> list[Any]:
        row = block.rows[i]
        return row.tolist() if isinstance(row, np.ndarray) else [_plain(v) for v in row]

    def _close_window(self, *, partial: bool, now: float) -> None:
        window = self._window
        drift = assess_window(self.reference, window.profile, self.policy) if self.reference else None
        self.last_drift = drift
        summary = drift.summary() if drift else {"reference": False}
        results, events = [], []
        if drift is not None:
            verdicts = list(drift.features.values()) + ([drift.prediction] if drift.prediction else [])
            for verdict in verdicts:
                results.append({"name": verdict.name, "kind": verdict.kind, "status": verdict.status.value,
                                "metric": verdict.metric, "value": verdict.value, "threshold": verdict.threshold,
                                "warn_threshold": verdict.warn_threshold, "details": verdict.to_dict()})
                if verdict.status is not DriftStatus.OK:
                    limit = verdict.threshold if verdict.drift else verdict.warn_threshold
                    events.append({"ts": now, "kind": "drift", "name": verdict.name,
                                   "status": verdict.status.value,
                                   "message": f"{verdict.name}: {verdict.metric} {verdict.value:.4f} "
                                              f"> {limit:.4f} over {verdict.rows} rows"})
        record = {
            "seq": window.seq, "model": self.info.name, "version": self.info.version,
            "model_sha256": self.model_sha256, "opened_at": window.opened_at, "closed_at": now,
            "rows": window.rows, "rejected": sum(window.rejected.values()),
            "quality": window.quality(self._names), "latency": window.latency(), "summary": summary,
            "profile": window.profile.to_bytes(), "partial": int(partial), "budget": self._budget(),
        }
        self.store.save_window(record, results, events)
        self._window = self._open_window(window.seq + 1)


def drift_report(store: MonitorStore) -> dict[str, Any]:
    """Every closed window with its per-feature drift results, in the documented JSON shape."""
    by_window: dict[int, list[dict[str, Any]]] = {}
    for result in store.drift_results():
        by_window.setdefault(result["window_seq"], []).append(result)
    windows = []
    for window in store.windows():
        entry: dict[str, Any] = {
            "index": window["seq"], "rows": window["rows"], "partial": bool(window.get("partial")),
            "opened_at": window["opened_at"], "closed_at": window["closed_at"], "model": window["model"],
            "version": window["version"], "model_sha256": window["model_sha256"],
            "summary": window["summary"], "features": {}, "prediction": None,
        }
        for result in by_window.get(window["seq"], []):
            details = result["details"] or {}
            if result["kind"] == "prediction":
                entry["prediction"] = details
            else:
                entry["features"][result["name"]] = details
        windows.append(entry)
    return {"windows": windows}


def monitoring_status(store: MonitorStore, recent: int = 5) -> dict[str, Any]:
    """What ``edge-runtime status`` shows: open window, recent windows, quality, drift, events."""
    windows = store.windows(recent)
    quality: Counter[str] = Counter()
    for window in windows:
        for counts in (window["quality"] or {}).get("features", {}).values():
            quality.update({k: v for k, v in counts.items() if v})
        quality["rejected"] += window["rejected"]
    features: dict[str, Any] = {}
    if windows:
        for result in store.drift_results(windows[-1]["seq"]):
            features[result["name"]] = {k: result[k] for k in ("status", "metric", "value", "threshold")}
    return {
        "decisions": store.decision_count(),
        "database_bytes": store.size_bytes(),
        "current_window": store.current_window(),
        "windows": windows,
        "quality": dict(quality),
        "features": features,
        "events": store.events(10),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
