"""The public read API of a monitoring database: typed, frozen reports.

:class:`MonitoringDatabase` opens a database file (never creating one) and reads
drift per closed window, the status of the serving process, and the decision log.
Every report is a frozen dataclass with ``to_dict()``, the JSON that
``edge-runtime drift --json``, ``status --json`` and ``log --json`` print; those
keys are a contract (``tests/test_json_contract.py``).

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from converters import export
>>> from edge_runtime import MonitoringDatabase, Runtime
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 2)); y = (X[:, 0] > 0).astype(int)
>>> work = pathlib.Path(tempfile.mkdtemp())
>>> bundle = export(LogisticRegression().fit(X, y), X, y, name="m", version="1",
...                 feature_names=["a", "b"], out_dir=work / "m").path
>>> with Runtime(bundle, db=work / "m.db", window_rows=100) as rt:
...     _ = rt.predict_batch(X[:250])
>>> with MonitoringDatabase(work / "m.db") as db:
...     report = db.drift()
...     status = db.status()
...     last = db.tail(1)[0]
>>> [(w.index, w.rows, w.partial) for w in report.windows]
[(0, 100, False), (1, 100, False), (2, 50, True)]
>>> sorted(report.windows[0].features), report.windows[0].features["a"].status.value
(['a', 'b'], 'ok')
>>> status.decisions, last.request_id
(250, 250)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from edge_runtime.errors import StoreCorruptError
from edge_runtime.monitoring.drift import DriftStatus, FeatureDrift
from edge_runtime.monitoring.store import MonitorStore

__all__ = [
    "DataQuality",
    "Decision",
    "DriftReport",
    "DriftSummary",
    "Event",
    "FeatureQuality",
    "FeatureStatus",
    "LatencySummary",
    "MonitoringDatabase",
    "OpenWindow",
    "StatusReport",
    "WindowReport",
    "WindowStatus",
]


# ------------------------------------------------------------------ pieces
@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySummary:
    """Latency of a window's answers, in microseconds."""

    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float

    def to_dict(self) -> dict[str, float]:
        return {"p50_us": self.p50_us, "p90_us": self.p90_us, "p99_us": self.p99_us, "max_us": self.max_us,
                "mean_us": self.mean_us}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LatencySummary | None:
        if not data:
            return None
        return cls(**{k: float(data[k]) for k in ("p50_us", "p90_us", "p99_us", "max_us", "mean_us")})


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureQuality:
    """One feature's data-quality counts in a window."""

    missing: int = 0
    out_of_range: int = 0
    unseen: int = 0
    rejected: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"missing": self.missing, "out_of_range": self.out_of_range, "unseen": self.unseen,
                "rejected": self.rejected}


@dataclass(frozen=True, slots=True, kw_only=True)
class DataQuality:
    """A window's data quality: counts per feature, and rejected rows by exception type."""

    features: Mapping[str, FeatureQuality] = field(default_factory=dict)
    rejected: Mapping[str, int] = field(default_factory=dict)
    unlogged: int = 0  # decisions served but not written to the log (the database failed)

    def to_dict(self) -> dict[str, Any]:
        return {"features": {name: q.to_dict() for name, q in self.features.items()},
                "rejected": dict(self.rejected), "unlogged": self.unlogged}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DataQuality:
        data = data or {}
        return cls(features={name: FeatureQuality(**{k: int(v) for k, v in counts.items()})
                             for name, counts in (data.get("features") or {}).items()},
                   rejected={k: int(v) for k, v in (data.get("rejected") or {}).items()},
                   unlogged=int(data.get("unlogged") or 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftSummary:
    """A window's drift at a glance; ``assessed`` is False when the bundle has no reference profile."""

    assessed: bool = True
    features: int = 0
    drifted: tuple[str, ...] = ()
    warned: tuple[str, ...] = ()
    worst: tuple[str, ...] = ()
    prediction: str | None = None
    multivariate: str | None = None  # None when the bundle has no multivariate model

    def to_dict(self) -> dict[str, Any]:
        if not self.assessed:
            return {"reference": False}
        return {"features": self.features, "drifted": list(self.drifted), "warned": list(self.warned),
                "worst": list(self.worst), "prediction": self.prediction, "multivariate": self.multivariate}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DriftSummary:
        if not data or data.get("reference") is False:
            return cls(assessed=False)
        return cls(features=int(data.get("features", 0)), drifted=tuple(data.get("drifted", ())),
                   warned=tuple(data.get("warned", ())), worst=tuple(data.get("worst", ())),
                   prediction=data.get("prediction"), multivariate=data.get("multivariate"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened: a drift verdict, a budget level change."""

    id: int
    ts: float
    window_seq: int | None
    kind: str
    name: str
    status: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "window_seq": self.window_seq, "kind": self.kind, "name": self.name,
                "status": self.status, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One entry of the decision log; ``features`` is the raw input as JSON, when it was logged."""

    request_id: int
    ts: float
    model: str
    version: str
    latency_us: float
    prediction: str
    score: float
    input_hash: str
    features: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "ts": self.ts, "model": self.model, "version": self.version,
                "latency_us": self.latency_us, "prediction": self.prediction, "score": self.score,
                "input_hash": self.input_hash, "features": self.features}


# ------------------------------------------------------------------ drift
@dataclass(frozen=True, slots=True, kw_only=True)
class WindowReport:
    """One closed window and the verdict of every feature and of the predictions."""

    index: int  # the window's sequence number
    writer: int | None  # the writer (process or Runtime) that closed it
    rows: int
    partial: bool
    opened_at: float | None
    closed_at: float | None
    model: str
    version: str
    model_sha256: str
    summary: DriftSummary
    features: Mapping[str, FeatureDrift]
    prediction: FeatureDrift | None
    multivariate: FeatureDrift | None = None  # PCA reconstruction error; None when the bundle has no model

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "writer": self.writer, "rows": self.rows, "partial": self.partial,
                "opened_at": self.opened_at,
                "closed_at": self.closed_at, "model": self.model, "version": self.version,
                "model_sha256": self.model_sha256, "summary": self.summary.to_dict(),
                "features": {name: verdict.to_dict() for name, verdict in self.features.items()},
                "prediction": self.prediction.to_dict() if self.prediction is not None else None,
                "multivariate": self.multivariate.to_dict() if self.multivariate is not None else None}


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every closed window, oldest first."""

    windows: tuple[WindowReport, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"windows": [w.to_dict() for w in self.windows]}


# ------------------------------------------------------------------ status
@dataclass(frozen=True, slots=True, kw_only=True)
class OpenWindow:
    """The window still open in the serving process, as it last wrote it."""

    writer: int
    seq: int | None
    opened_at: float | None
    updated_at: float | None
    rows: int
    rejected: int
    quality: DataQuality
    latency: LatencySummary | None
    budget: Mapping[str, Any] | None  # BudgetState.to_dict() of the runtime, when budgets are on

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.writer, "writer": self.writer, "seq": self.seq, "opened_at": self.opened_at, "updated_at": self.updated_at,
                "rows": self.rows, "rejected": self.rejected, "quality": self.quality.to_dict(),
                "latency": self.latency.to_dict() if self.latency else None,
                "budget": dict(self.budget) if self.budget is not None else None}


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowStatus:
    """A closed window as ``status`` shows it: counts, quality, latency, drift summary, budget."""

    seq: int
    writer: int | None
    model: str
    version: str
    model_sha256: str
    opened_at: float | None
    closed_at: float | None
    rows: int
    rejected: int
    partial: bool
    quality: DataQuality
    latency: LatencySummary | None
    summary: DriftSummary
    budget: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        # ``partial`` was printed as 0/1 by 0.1; kept so for the tools that read it.
        return {"seq": self.seq, "writer": self.writer, "model": self.model, "version": self.version, "model_sha256": self.model_sha256,
                "opened_at": self.opened_at, "closed_at": self.closed_at, "rows": self.rows,
                "rejected": self.rejected, "quality": self.quality.to_dict(),
                "latency": self.latency.to_dict() if self.latency else None, "summary": self.summary.to_dict(),
                "partial": int(self.partial), "budget": dict(self.budget) if self.budget is not None else None}


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureStatus:
    """A feature's verdict in the latest closed window."""

    status: DriftStatus
    metric: str
    value: float
    threshold: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "metric": self.metric, "value": self.value,
                "threshold": self.threshold}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """What ``edge-runtime status`` shows: the log's size, open and recent windows, quality, drift, events."""

    database_id: str
    decisions: int
    database_bytes: int
    current_window: OpenWindow | None  # the most recently updated of ``open_windows``
    open_windows: tuple[OpenWindow, ...]  # one per writer that has a window open
    windows: tuple[WindowStatus, ...]
    quality: Mapping[str, int]  # totals over the recent windows: missing, out_of_range, unseen, rejected
    features: Mapping[str, FeatureStatus]
    events: tuple[Event, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"database_id": self.database_id, "decisions": self.decisions,
                "database_bytes": self.database_bytes,
                "current_window": self.current_window.to_dict() if self.current_window else None,
                "open_windows": [w.to_dict() for w in self.open_windows],
                "windows": [w.to_dict() for w in self.windows], "quality": dict(self.quality),
                "features": {name: f.to_dict() for name, f in self.features.items()},
                "events": [e.to_dict() for e in self.events]}


# ------------------------------------------------------------------ reader
class MonitoringDatabase:
    """A monitoring database opened for reading.

    Parameters
    ----------
    path : str or Path
        The SQLite file a monitored :class:`~edge_runtime.Runtime` writes. It is
        never created: a missing file raises :class:`~edge_runtime.errors.StoreError`.

    Notes
    -----
    The serving process buffers decisions; call ``Runtime.flush()`` before
    reading from that same process. Other processes see what was flushed.
    """

    def __init__(self, path: str | Path) -> None:
        # Never creates the file and refuses one that is not a monitoring database; an
        # older schema is upgraded in place (a Runtime opening it would do the same).
        self._store = MonitorStore(path, create=False, read_only=True)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._store.path

    def check(self) -> None:
        """Raise StoreCorruptError when ``PRAGMA quick_check`` finds the file damaged."""
        verdict = self._store.quick_check()
        if verdict != "ok":
            detail = "; ".join(line.strip("* ") for line in verdict.splitlines() if line.strip("* "))
            raise StoreCorruptError(f"monitoring database '{self.path}' is corrupt: {detail}")

    def drift(self) -> DriftReport:
        """Every closed window with the verdicts of its features, its predictions and the multivariate signal.

        Raises
        ------
        StoreCorruptError
            The database is damaged (checked first, so a damaged file never reads as "no drift").
        """
        self.check()
        by_window: dict[int, list[dict[str, Any]]] = {}
        for result in self._store.drift_results():
            by_window.setdefault(result["window_seq"], []).append(result)
        windows = []
        for row in self._store.windows():
            features: dict[str, FeatureDrift] = {}
            prediction = multivariate = None
            for result in by_window.get(row["seq"], []):
                if not result["details"]:
                    continue
                verdict = FeatureDrift.from_dict(result["name"], result["kind"], result["details"])
                if result["kind"] == "prediction":
                    prediction = verdict
                elif result["kind"] == "multivariate":
                    multivariate = verdict
                else:
                    features[result["name"]] = verdict
            windows.append(WindowReport(
                index=row["seq"], writer=row.get("writer"), rows=row["rows"], partial=bool(row.get("partial")),
                opened_at=row["opened_at"],
                closed_at=row["closed_at"], model=row["model"], version=row["version"],
                model_sha256=row["model_sha256"], summary=DriftSummary.from_dict(row["summary"]),
                features=features, prediction=prediction, multivariate=multivariate))
        return DriftReport(tuple(windows))

    def status(self, recent: int = 5) -> StatusReport:
        """The open windows, the ``recent`` last closed windows, their data quality, the latest drift, events.

        Raises
        ------
        StoreCorruptError
            The database is damaged.
        """
        self.check()
        windows = tuple(_window_status(row) for row in self._store.windows(recent))
        quality = {"missing": 0, "out_of_range": 0, "unseen": 0, "rejected": 0, "unlogged": 0}
        for window in windows:
            for counts in window.quality.features.values():
                quality["missing"] += counts.missing
                quality["out_of_range"] += counts.out_of_range
                quality["unseen"] += counts.unseen
            # Rows, not values: a feature's own "rejected" count is a breakdown of these.
            quality["rejected"] += window.rejected
            quality["unlogged"] += window.quality.unlogged
        features: dict[str, FeatureStatus] = {}
        if windows:
            for result in self._store.drift_results(windows[-1].seq):
                features[result["name"]] = FeatureStatus(status=DriftStatus(result["status"]), metric=result["metric"],
                                                          value=result["value"], threshold=result["threshold"])
        open_windows = tuple(w for w in (_open_window(row) for row in self._store.open_windows()) if w)
        return StatusReport(database_id=self._store.database_id, decisions=self._store.decision_count(),
                            database_bytes=self._store.size_bytes(),
                            current_window=open_windows[0] if open_windows else None, open_windows=open_windows,
                            windows=windows,
                            quality=quality, features=features,
                            events=tuple(Event(**row) for row in self._store.events(10)))

    def tail(self, n: int = 20) -> tuple[Decision, ...]:
        """The ``n`` most recent decisions, oldest first.

        Raises
        ------
        StoreCorruptError
            The database is damaged.
        """
        self.check()
        return tuple(Decision(**row) for row in self._store.tail(n))

    def decisions(self, after: int = 0) -> Iterator[Decision]:
        """Every decision with a request id above ``after``, oldest first (streamed block by block)."""
        for row in self._store.decisions(after):
            yield Decision(**row)

    def close(self) -> None:
        """Close the database; closing twice is harmless."""
        self._store.close()

    def __enter__(self) -> MonitoringDatabase:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MonitoringDatabase('{self.path}')"


def _window_status(row: Mapping[str, Any]) -> WindowStatus:
    return WindowStatus(seq=row["seq"], writer=row.get("writer"), model=row["model"], version=row["version"],
                        model_sha256=row["model_sha256"], opened_at=row["opened_at"], closed_at=row["closed_at"],
                        rows=row["rows"], rejected=row["rejected"], partial=bool(row.get("partial")),
                        quality=DataQuality.from_dict(row["quality"]),
                        latency=LatencySummary.from_dict(row["latency"]),
                        summary=DriftSummary.from_dict(row["summary"]), budget=row.get("budget"))


def _open_window(row: Mapping[str, Any] | None) -> OpenWindow | None:
    if row is None:
        return None
    return OpenWindow(writer=row.get("writer") or row["id"], seq=row["seq"], opened_at=row["opened_at"], updated_at=row["updated_at"], rows=row["rows"],
                      rejected=row["rejected"], quality=DataQuality.from_dict(row["quality"]),
                      latency=LatencySummary.from_dict(row["latency"]), budget=row.get("budget"))
