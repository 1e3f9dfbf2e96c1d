"""What the Runtime calls on its monitor, and the monitor it has when monitoring is off.

With no database the Runtime holds a :class:`NullMonitor`, whose every call does
nothing, so the serving path calls its monitor unconditionally instead of
branching on whether there is one. This module imports nothing heavy: the
Runtime imports it even when it never monitors.

Examples
--------
>>> from edge_runtime.monitoring.interface import NullMonitor, ServingMonitor
>>> monitor = NullMonitor()
>>> isinstance(monitor, ServingMonitor), monitor.observe([1.0], 0.5, 1, 3.0), monitor.last_drift
(True, None, None)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from edge_runtime.errors import SchemaError
    from edge_runtime.monitoring.drift import WindowDrift
    from edge_runtime.serving.results import ModelInfo

__all__ = ["NullMonitor", "ServingMonitor"]


@runtime_checkable
class ServingMonitor(Protocol):
    """The calls a Runtime makes on its monitor, in serving order."""

    last_drift: WindowDrift | None
    budget_state: Callable[[], Any] | None

    def observe(self, row: Any, scores: Any, label: Any, latency_us: float) -> int | None:
        """Record one served row; return its request id (None when not logged)."""

    def observe_batch(self, rows: Any, scores: np.ndarray, labels: Any, latency_us: float) -> np.ndarray | None:
        """Record a batch's served rows; return their request ids."""

    def observe_rejected(self, error: SchemaError) -> None:
        """Count a row refused by the input checks."""

    def observe_refused(self, rows: int = 1) -> None:
        """Count the rows of a request refused or deferred by load shedding."""

    def overlap(self) -> None:
        """The caller is about to run the model: pending batch work may start beside it."""

    def set_sampling(self, rate: float) -> None:
        """Monitor only this share of single rows (1.0 is all)."""

    def set_model(self, info: ModelInfo, model_sha256: str) -> None:
        """Attribute the next decisions to another model."""

    def add_event(self, kind: str, name: str, status: str, message: str) -> None:
        """Record an event now."""

    def flush(self) -> None:
        """Write everything buffered."""

    def close(self) -> None:
        """Flush, close the open window and release the database."""


class NullMonitor:
    """The monitor of a Runtime without monitoring: every call does nothing, at the cost of a call."""

    __slots__ = ("budget_state", "last_drift")

    def __init__(self) -> None:
        self.last_drift: WindowDrift | None = None
        self.budget_state: Callable[[], Any] | None = None

    def observe(self, row: Any, scores: Any, label: Any, latency_us: float) -> int | None:
        return None

    def observe_batch(self, rows: Any, scores: np.ndarray, labels: Any, latency_us: float) -> np.ndarray | None:
        return None

    def observe_rejected(self, error: SchemaError) -> None:
        return None

    def observe_refused(self, rows: int = 1) -> None:
        return None

    def overlap(self) -> None:
        return None

    def set_sampling(self, rate: float) -> None:
        return None

    def set_model(self, info: ModelInfo, model_sha256: str) -> None:
        return None

    def add_event(self, kind: str, name: str, status: str, message: str) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NullMonitor()"
