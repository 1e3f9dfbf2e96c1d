"""The open monitoring window: its sketches, data-quality counters and time span, and how much it thins.

Examples
--------
>>> from edge_runtime.config import MonitoringConfig
>>> from edge_runtime.monitoring.data_profile import Profile
>>> from edge_runtime.monitoring.windows import OpenWindow, window_stride
>>> from edge_runtime.serving.schema import FeatureSpec, InputSchema, OutputSchema, Task
>>> inputs = InputSchema(features=(FeatureSpec(name="x"),))
>>> outputs = OutputSchema(task=Task.REGRESSION, score_output="y")
>>> window = OpenWindow(0, Profile.for_schema(inputs, outputs), 1)
>>> window.quality(["x"])["features"]["x"], window.latency()
({'missing': 0, 'out_of_range': 0, 'unseen': 0, 'rejected': 0}, None)
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.config import MonitoringConfig
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.drift import (
    NUMERIC_METRICS,
    DriftStatus,
    FeatureDrift,
    FeatureVerdicts,
    WindowDrift,
)
from edge_runtime.monitoring.multivariate import ReconstructionModel, add_errors
from edge_runtime.serving.schema import FeatureKind, InputSchema

__all__ = ["LATENCY_RANKS", "OpenWindow", "StoredVerdicts", "TrainingBounds", "decode_verdicts", "encode_drift",
           "encode_verdicts", "latency_summary", "window_stride"]

LATENCY_RANKS = (0.5, 0.9, 0.99)
_QUALITY_TEXT: dict[Any, str] = {}  # quality counters -> their JSON (a few per process)


@dataclass(frozen=True, slots=True)
class TrainingBounds:
    """What the training data allowed, per feature: the numeric range and the categories seen."""

    mins: np.ndarray
    maxs: np.ndarray
    # The model sees float32: a training extreme rounded to float32 may fall just
    # outside the float64 range, so tensor rows are checked against float32 bounds.
    mins32: np.ndarray
    maxs32: np.ndarray
    known: tuple[frozenset[str] | None, ...]  # categories of each categorical feature, None for numeric ones

    @classmethod
    def from_schema(cls, inputs: InputSchema) -> TrainingBounds:
        mins = np.array([f.minimum if f.minimum is not None else -np.inf for f in inputs.features])
        maxs = np.array([f.maximum if f.maximum is not None else np.inf for f in inputs.features])
        return cls(mins, maxs, mins.astype(np.float32), maxs.astype(np.float32),
                   tuple(frozenset(f.categories) if f.kind is FeatureKind.CATEGORICAL else None
                         for f in inputs.features))


class OpenWindow:
    """The open window: its profile, counters and time span."""

    def __init__(self, seq: int | None, profile: Profile, width: int,
                 multivariate: ReconstructionModel | None = None) -> None:
        self.seq = seq  # None when the database could not number it: numbered when saved
        self.unlogged = 0  # decisions of this window that could not be written to the log
        self.profile = profile
        self.multivariate = multivariate if profile.multivariate is not None else None  # its errors go there
        self.rows = 0
        self.opened_at: float | None = None
        self.out_of_range = np.zeros(width, dtype=np.int64)
        self.unseen = np.zeros(width, dtype=np.int64)
        self.rejected: Counter[str] = Counter()
        self.rejected_features: Counter[str] = Counter()

    def add_predictions(self, codes: np.ndarray, vocabulary: Sequence[str]) -> None:
        """Count predicted classes (codes into ``vocabulary``)."""
        counts = np.bincount(codes, minlength=len(vocabulary))
        assert self.profile.predictions is not None
        self.profile.predictions.update_counts({vocabulary[c]: int(n) for c, n in enumerate(counts) if n})

    def add_matrix(self, rows: np.ndarray, top: np.ndarray, latency: np.ndarray, bounds: TrainingBounds,
                   probabilities: np.ndarray | None = None) -> None:
        """Sketch a block of float32 rows (tensor layout) and count the values outside the training range."""
        self.profile.update_matrix(rows, scores=top, latency=latency, probabilities=probabilities)
        if self.multivariate is not None and self.profile.multivariate is not None:
            add_errors(self.profile.multivariate, self.multivariate.errors(rows))
        # A block inside the training range has nothing to count; otherwise
        # count the offending columns only.
        assert self.profile.block_range is not None
        lows, highs = self.profile.block_range
        for i in np.flatnonzero((lows < bounds.mins32) | (highs > bounds.maxs32)).tolist():
            feature = rows[:, i]
            self.out_of_range[i] += int(((feature < bounds.mins32[i]) | (feature > bounds.maxs32[i])).sum())
        self.rows += rows.shape[0]

    def add_value_rows(self, rows: Sequence[Sequence[Any]], top: np.ndarray, latency: np.ndarray,
                       bounds: TrainingBounds, probabilities: np.ndarray | None = None) -> None:
        """Sketch rows of plain values (columns layout); count out-of-range values and unseen categories."""
        prepared: list[Any] = []
        for i, column in enumerate(zip(*rows)):
            known = bounds.known[i]
            if known is None:
                values = np.array(column, dtype=np.float64)
                with np.errstate(invalid="ignore"):
                    self.out_of_range[i] += int(((values < bounds.mins[i]) | (values > bounds.maxs[i])).sum())
                prepared.append(values)
            else:
                self.unseen[i] += sum(1 for v in column if v not in known)
                prepared.append(column)
        self.profile.update_columns(prepared)
        if self.multivariate is not None and self.profile.multivariate is not None and rows:
            add_errors(self.profile.multivariate, self.multivariate.value_errors(prepared))
        self.profile.update_outputs(None, top, probabilities)
        self.profile.update_latency(latency)
        self.rows += len(rows)

    def _missing(self) -> list[int]:
        return [sketch.missing for sketch in self.profile.features.values()]

    def quality(self, names: Sequence[str]) -> dict[str, Any]:
        """The window's data-quality counters, per feature and in total."""
        # Missing values are the sketches' own count (NaN never reaches KLL).
        missing = self._missing()
        rejected = self.rejected_features
        return {
            "features": {name: {"missing": m, "out_of_range": o, "unseen": u, "rejected": rejected.get(name, 0)}
                         for name, m, o, u in zip(names, missing, self.out_of_range.tolist(), self.unseen.tolist())},
            "rejected": dict(self.rejected),
            "unlogged": self.unlogged,
        }

    def quality_json(self, names: Sequence[str]) -> str:
        """:meth:`quality` as JSON; the same counters (all zero, mostly) reuse their text."""
        missing = tuple(self._missing())
        key = (tuple(names), missing, self.out_of_range.tobytes(), self.unseen.tobytes(),
               tuple(self.rejected_features.items()), tuple(self.rejected.items()), self.unlogged)
        text = _QUALITY_TEXT.get(key)
        if text is None:
            if len(_QUALITY_TEXT) > 64:
                _QUALITY_TEXT.clear()
            text = _QUALITY_TEXT[key] = json.dumps(self.quality(names))
        return text

    def latency(self) -> dict[str, float] | None:
        return latency_summary(self.profile)


def latency_summary(profile: Profile) -> dict[str, float] | None:
    """A profile's latency percentiles, maximum and mean in microseconds; None when it has none."""
    sketch = profile.latency
    if sketch.kll.is_empty():
        return None
    p50, p90, p99 = sketch.quantiles(LATENCY_RANKS)
    return {"p50_us": float(p50), "p90_us": float(p90), "p99_us": float(p99), "max_us": sketch.maximum,
            "mean_us": sketch.mean}


def window_stride(config: MonitoringConfig) -> int:
    """The thinning of a window's numeric sketches: ``sketch_stride``, less for small windows.

    A full window of N rows in blocks of 512 gets a thinning error of about
    ``2.6 stride / sqrt(512 N)`` (99%); ``floor(sqrt(N / 300))`` keeps that
    under half the KLL sketch's own error at k=200. So windows of up to 1,199
    rows are not thinned, 5,000-row windows thin by 4 and windows of 19,200
    rows or more by 8 (the default ``sketch_stride``).

    >>> from edge_runtime.config import MonitoringConfig
    >>> [window_stride(MonitoringConfig(window_rows=n)) for n in (100, 1_000, 5_000, 20_000, 1_000_000)]
    [1, 1, 4, 8, 8]
    """
    return max(1, min(config.sketch_stride, math.isqrt(config.window_rows // 300)))


# ----------------------------------------------------------- stored verdicts
# A window's verdicts are stored as one record: a JSON layout (each row's name,
# kind and metrics' keys: the same from window to window, so encoded once and
# reused), one byte per row for its status and one for its decisive metric, and
# every number as float64 (infinity for a threshold no value can reach).
_STATUSES = ("ok", "warn", "drift")
_STATUS_CODE = {name: i for i, name in enumerate(_STATUSES)}
_LAYOUTS: dict[Any, str] = {}  # layout key -> its JSON (a handful per process)
_PARSED: dict[str, list[Any]] = {}  # layout JSON -> parsed


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _unbounded(value: float | None) -> float:
    return math.inf if value is None else float(value)


def encode_verdicts(rows: Sequence[dict[str, Any]]) -> tuple[str, bytes, bytes]:
    """Drift rows (with ``details`` in the JSON shape of ``FeatureDrift.to_dict``, or only their own
    columns, as earlier schemas stored them) as ``(layout, codes, numbers)``; :func:`decode_verdicts`
    reads them back. A closing window's verdicts take :func:`encode_drift` instead.

    >>> rows = [{"name": "x", "kind": "numeric", "status": "warn", "metric": "ks", "value": 0.2,
    ...          "threshold": None, "warn_threshold": 0.1,
    ...          "details": {"status": "warn", "drift": False, "metric": "ks", "value": 0.2, "threshold": None,
    ...                      "warn_threshold": 0.1, "rows": 5, "reference_rows": 9,
    ...                      "metrics": {"ks": {"value": 0.2, "threshold": None}}}}]
    >>> decode_verdicts(*encode_verdicts(rows)) == [{k: v for k, v in rows[0].items()}]
    True
    """
    key: list[Any] = []
    codes = bytearray()
    numbers: list[float] = []
    for row in rows:
        details = row.get("details") or {}
        metrics = details.get("metrics")
        if metrics is None:  # no details: the row's own columns
            key.append((row["name"], row["kind"], None, row.get("metric")))
            codes += bytes((_STATUS_CODE[row["status"]], 0))
            numbers += (row["value"], _unbounded(row.get("threshold")), _unbounded(row.get("warn_threshold")), 0, 0)
            continue
        numbers += (details["value"], _unbounded(details.get("threshold")),
                    _unbounded(details.get("warn_threshold")), details.get("rows", 0),
                    details.get("reference_rows", 0))
        for entry in metrics.values():
            numbers += [_unbounded(v) for v in entry.values()]
        names = tuple(metrics)
        key.append((row["name"], row["kind"], tuple((m, tuple(metrics[m])) for m in names), None))
        codes += bytes((_STATUS_CODE[row["status"]], names.index(row["metric"]) if row["metric"] in names else 255))
    layout_key = tuple(key)
    layout = _LAYOUTS.get(layout_key)
    if layout is None:
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        layout = _LAYOUTS[layout_key] = json.dumps(
            [[name, kind, [[m, list(keys)] for m, keys in metrics]] if metrics is not None else [name, kind, None, metric]
             for name, kind, metrics, metric in layout_key])
    return layout, bytes(codes), array("d", numbers).tobytes()


@dataclass(frozen=True, slots=True)
class StoredVerdicts:
    """A window's verdicts as stored (:func:`encode_verdicts`): the layout JSON, the codes and the numbers."""

    layout: str
    codes: bytes
    numbers: bytes


def encode_drift(drift: WindowDrift | None, now: float) -> tuple[StoredVerdicts | None, list[dict[str, Any]]]:
    """A closed window's verdicts in the stored form of :func:`encode_verdicts`, and an event for each
    warn or drift.

    The window close's path: one pass over the verdicts, no row dicts.

    >>> from edge_runtime.monitoring.drift import FeatureDrift, WindowDrift, DriftStatus
    >>> verdict = FeatureDrift(name="x", kind="numeric", status=DriftStatus.WARN, metric="ks", value=0.2,
    ...                        threshold=0.3, warn_threshold=0.1, rows=5, reference_rows=9,
    ...                        metrics={"ks": {"value": 0.2, "warn_threshold": 0.1, "threshold": 0.3}})
    >>> drift = WindowDrift(features={"x": verdict}, prediction=None)
    >>> stored, events = encode_drift(drift, 1.0)
    >>> [row["details"] for row in decode_verdicts(stored.layout, stored.codes, stored.numbers)] == [verdict.to_dict()]
    True
    >>> events[0]["message"]
    'x: ks 0.2000 > 0.1000 over 5 rows'
    >>> stored.layout == encode_verdicts([{**verdict.to_dict(), "name": "x", "kind": "numeric",
    ...                                    "details": verdict.to_dict()}])[0]  # one layout for both writers
    True
    """
    if drift is None:
        return None, []
    features = drift.features
    numeric = features.numeric if isinstance(features, FeatureVerdicts) else None
    entries: list[int | FeatureDrift] = (list(features.entries) if isinstance(features, FeatureVerdicts)
                                         else list(features.values()))
    entries += [v for v in (drift.prediction, drift.multivariate) if v is not None]
    # The layout's key: a numeric row's name, or a verdict's name, kind and metrics' keys, flat.
    key: list[Any] = ["drift", numeric.kind if numeric is not None else None]
    push = key.extend
    codes: list[bytes] = []
    numbers: list[bytes] = []
    events: list[tuple[int, dict[str, Any]]] = []  # by position, for the verdicts' order
    run = -1  # the first numeric row of the run being read, whose numbers are copied at its end
    start = 0
    if isinstance(features, FeatureVerdicts) and features.plain and numeric is not None and numeric.names:
        # Every feature numeric, in its row's order: one run.
        push(numeric.names)
        codes.append(numeric.codes.tobytes())
        numbers.append(numeric.numbers.tobytes())
        start = len(numeric.names)
    for at, entry in enumerate(entries[start:], start):
        if isinstance(entry, int):
            assert numeric is not None
            key.append(numeric.names[entry])
            run = entry if run < 0 else run
            if at + 1 == len(entries) or entries[at + 1] != entry + 1:
                codes.append(numeric.codes[run:entry + 1].tobytes())
                numbers.append(numeric.numbers[run:entry + 1].tobytes())
                run = -1
            continue
        verdict = entry
        metrics = verdict.metrics
        values = [verdict.value, verdict.threshold, verdict.warn_threshold, verdict.rows,
                  verdict.reference_rows]
        push(((verdict.name, verdict.kind, len(metrics)),))
        chosen = 255
        for i, (metric, item) in enumerate(metrics.items()):
            values.extend(item.values())
            push((metric, len(item)))
            push(item)
            if metric == verdict.metric:
                chosen = i
        codes.append(bytes((_STATUS_CODE[verdict.status.value], chosen)))
        numbers.append(array("d", values).tobytes())
        if verdict.status is not DriftStatus.OK:
            limit = verdict.threshold if verdict.drift else verdict.warn_threshold
            events.append((at, _event(now, verdict.name, verdict.status.value, verdict.metric, verdict.value,
                                      limit, verdict.rows)))
    if numeric is not None and numeric.codes[:, 0].any():
        positions = [at for at, entry in enumerate(entries) if isinstance(entry, int)]
        for row in np.flatnonzero(numeric.codes[:, 0]).tolist():
            state, by_psi = numeric.codes[row].tolist()
            value, threshold, warn, rows = numeric.numbers[row, :4].tolist()
            event = _event(now, numeric.names[row], _STATUSES[state], "psi" if by_psi else "ks", value,
                           threshold if state == 2 else warn, int(rows))
            events.append((positions[row], event))
        events.sort(key=lambda event: event[0])
    layout_key = tuple(key)
    layout = _LAYOUTS.get(layout_key)
    if layout is None:
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        numeric_layout = [[metric, list(keys)] for metric, keys in NUMERIC_METRICS]
        described: list[list[Any]] = []
        for entry in entries:
            if isinstance(entry, int):
                assert numeric is not None
                described.append([numeric.names[entry], numeric.kind, numeric_layout])
            else:
                described.append([entry.name, entry.kind,
                                  [[metric, list(item)] for metric, item in entry.metrics.items()]])
        layout = _LAYOUTS[layout_key] = json.dumps(described)
    return StoredVerdicts(layout, b"".join(codes), b"".join(numbers)), [event for _, event in events]


def _event(now: float, name: str, status: str, metric: str, value: float, limit: float, rows: int
           ) -> dict[str, Any]:
    return {"ts": now, "kind": "drift", "name": name, "status": status,
            "message": f"{name}: {metric} {value:.4f} > {limit:.4f} over {rows} rows"}


def decode_verdicts(layout: str, codes: bytes, numbers: bytes) -> list[dict[str, Any]]:
    """The drift rows of one window from :func:`encode_verdicts`: name, kind, status, metric, value,
    threshold, warn_threshold and ``details`` in the JSON shape of ``FeatureDrift.to_dict``."""
    entries = _PARSED.get(layout)
    if entries is None:
        if len(_PARSED) > 64:
            _PARSED.clear()
        entries = _PARSED[layout] = json.loads(layout)
    values = array("d")
    values.frombytes(numbers)
    rows: list[dict[str, Any]] = []
    at = 0
    for i, (name, kind, metrics, *plain) in enumerate(entries):
        status = _STATUSES[codes[2 * i]]
        value, threshold, warn, n, reference_n = values[at:at + 5]
        at += 5
        if metrics is None:
            rows.append({"name": name, "kind": kind, "status": status, "metric": plain[0], "value": value,
                         "threshold": _finite(threshold), "warn_threshold": _finite(warn), "details": None})
            continue
        decoded: dict[str, dict[str, Any]] = {}
        for metric, keys in metrics:
            decoded[metric] = {k: _finite(v) for k, v in zip(keys, values[at:at + len(keys)])}
            at += len(keys)
        chosen = codes[2 * i + 1]
        metric_name = metrics[chosen][0] if chosen < len(metrics) else None
        details = {"status": status, "drift": status == "drift", "metric": metric_name, "value": value,
                   "threshold": _finite(threshold), "warn_threshold": _finite(warn), "rows": int(n),
                   "reference_rows": int(reference_n), "metrics": decoded}
        rows.append({"name": name, "kind": kind, "status": status, "metric": metric_name, "value": value,
                     "threshold": details["threshold"], "warn_threshold": details["warn_threshold"],
                     "details": details})
    return rows
