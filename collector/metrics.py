"""The collector watches itself: Prometheus metrics for ``GET /metrics``.

Counters of this process (windows ingested by outcome, rejections by reason) and,
read from the store at each scrape so they hold for the whole fleet whichever
collector process answers: seconds since each device was last seen, windows held,
and rejections counted by every process. Only this module imports prometheus_client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.stores.base import FleetStore

__all__ = ["CollectorMetrics"]


class _StoreMetrics(Collector):
    """Read at scrape time from the store (what every collector process wrote)."""

    def __init__(self, store: FleetStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        seen = GaugeMetricFamily("edge_runtime_collector_device_seconds_since_last_seen",
                                 "Seconds since the device's last accepted message (devices never seen are "
                                 "left out).", labels=["device"])
        for device in self._store.devices():
            if device.last_seen is not None and not device.removed:
                seen.add_metric([device.device_id], max(0.0, now - device.last_seen))
        yield seen
        yield GaugeMetricFamily("edge_runtime_collector_store_windows", "Windows held by the store.",
                                value=self._store.window_count())
        stored = CounterMetricFamily("edge_runtime_collector_store_rejections",
                                     "Rejections counted in the store by every collector process, by reason.",
                                     labels=["reason"])
        for reason, count in sorted(self._store.rejections().items()):
            stored.add_metric([reason], count)
        yield stored


class CollectorMetrics:
    """The metrics of one collector process.

    Parameters
    ----------
    store : FleetStore
        Read at each scrape for the per-device and fleet-wide figures.
    clock : callable
        The wall clock (``time.time``).
    """

    def __init__(self, store: FleetStore, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self._windows = Counter("edge_runtime_collector_windows_ingested",
                                "Messages ingested by this process, by outcome (stored, duplicate, part-stored).",
                                ["outcome"], registry=self.registry)
        self._rejections = Counter("edge_runtime_collector_rejections",
                                   "Messages this process refused, by reason.", ["reason"], registry=self.registry)
        for outcome in ("stored", "duplicate", "part-stored"):
            self._windows.labels(outcome)
        self.registry.register(_StoreMetrics(store, clock))

    def ingested(self, outcome: str) -> None:
        """Count one accepted message."""
        self._windows.labels(outcome).inc()

    def rejected(self, reason: str) -> None:
        """Count one refused message."""
        self._rejections.labels(reason).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
