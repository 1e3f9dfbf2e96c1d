"""Fleet status: per device, what the collector knows of its syncing and its windows.

A pure function over the store's records (:class:`~collector.stores.base.DeviceRecord`,
:class:`~collector.stores.base.StoredWindow`, :class:`~collector.stores.base.ClockOffset`),
what ``edge-runtime fleet status`` shows.

Counters that the device reports cumulatively are read from the latest window that
carries them, never summed over windows: ``losses`` are cumulative per monitoring
database (the latest window of each database counts), budget ``violations`` per
serving process (the latest window of each database and boot counts).

Examples
--------
>>> from collector.stores.base import DeviceRecord
>>> device = DeviceRecord(device_id="d1", public_key="ed25519:AAAA", added_at=0.0, last_seen=None, removed=False)
>>> report = fleet_status([device], [], now=100.0)
>>> report.devices[0].to_dict()["windows"], report.devices[0].last_seen
(0, None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.stores.base import ClockOffset, DeviceRecord, StoredWindow

__all__ = ["DeviceStatus", "FleetStatus", "fleet_status"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatus:
    """One device as the collector sees it (times on the collector's clock, in seconds).

    Attributes
    ----------
    registered, removed
        Whether ``collector add-device`` knows it (a device can have windows and no
        record only if its record was deleted), and whether it is refused now.
    last_seen
        Its last accepted message (or its latest window's receipt), None before any.
    seconds_since_seen
        ``now - last_seen``.
    windows
        Windows received.
    sync_lag
        How long its latest window took to arrive: ``received_at - corrected_closed_at``.
    newest_window_age
        ``now`` minus the close of its newest window: how stale the fleet's view of it is.
    outbox_depth
        Windows waiting on the device when its latest window was sent.
    losses, loss_count
        Windows lost on its databases, by reason, and in total.
    clock_skew
        Its wall clock minus the collector's at its latest message (positive: ahead),
        from its latest boot's clock estimate (or its latest window's correction).
    budget_violations
        Budget checks over a limit, by budget (latency, cpu, memory).
    drift_windows, drift_verdicts
        Windows with at least one drift verdict of their own, and those verdicts.
    """

    device_id: str
    registered: bool
    removed: bool
    last_seen: float | None
    seconds_since_seen: float | None
    windows: int
    sync_lag: float | None
    newest_window_age: float | None
    outbox_depth: int | None
    losses: Mapping[str, int] = field(default_factory=dict)
    clock_skew: float | None = None
    budget_violations: Mapping[str, int] = field(default_factory=dict)
    drift_windows: int = 0
    drift_verdicts: int = 0

    @property
    def loss_count(self) -> int:
        """Windows lost, every reason together."""
        return sum(self.losses.values())

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "registered": self.registered, "removed": self.removed,
                "last_seen": self.last_seen, "seconds_since_seen": self.seconds_since_seen,
                "windows": self.windows, "sync_lag": self.sync_lag, "newest_window_age": self.newest_window_age,
                "outbox_depth": self.outbox_depth, "losses": dict(self.losses), "loss_count": self.loss_count,
                "clock_skew": self.clock_skew, "budget_violations": dict(self.budget_violations),
                "drift_windows": self.drift_windows, "drift_verdicts": self.drift_verdicts}


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetStatus:
    """Every device, by id, as of ``now``."""

    now: float
    devices: tuple[DeviceStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now, "devices": [d.to_dict() for d in self.devices]}


class _Tally:
    """What one device's windows add up to, folded window by window."""

    __slots__ = ("windows", "latest", "newest_close", "by_database", "by_boot", "drift_windows", "drift_verdicts")

    def __init__(self) -> None:
        self.windows = 0
        self.latest: StoredWindow | None = None  # by receipt
        self.newest_close: float | None = None
        self.by_database: dict[str, StoredWindow] = {}  # latest window (by seq_last) of each database
        self.by_boot: dict[tuple[str, str], StoredWindow] = {}  # latest window of each process (database, boot)
        self.drift_windows = 0
        self.drift_verdicts = 0

    def add(self, window: StoredWindow) -> None:
        self.windows += 1
        if self.latest is None or window.received_at >= self.latest.received_at:
            self.latest = window
        if self.newest_close is None or window.corrected_closed_at > self.newest_close:
            self.newest_close = window.corrected_closed_at
        held = self.by_database.get(window.database_id)
        if held is None or window.seq_last > held.seq_last:
            self.by_database[window.database_id] = window
        boot = (window.database_id, window.boot_id)
        held = self.by_boot.get(boot)
        if held is None or window.seq_last > held.seq_last:
            self.by_boot[boot] = window
        if window.drift_count:
            self.drift_windows += 1
            self.drift_verdicts += window.drift_count


def fleet_status(devices: Iterable[DeviceRecord], windows: Iterable[StoredWindow], now: float, *,
                 clock_offsets: Iterable[ClockOffset] = ()) -> FleetStatus:
    """Per device: last seen, windows received, sync lag, outbox depth, losses, clock skew,
    budget violations and drift counts.

    Parameters
    ----------
    devices : iterable of DeviceRecord
        The registered devices (removed ones included); each is listed even without windows.
    windows : iterable of StoredWindow
        The stored windows, any order (only their small fields are read).
    now : float
        The collector's clock.
    clock_offsets : iterable of ClockOffset
        The boots' clock estimates: a device's skew is its latest updated boot's.

    Returns
    -------
    FleetStatus
    """
    records = {d.device_id: d for d in devices}
    tallies: dict[str, _Tally] = {}
    for window in windows:
        tally = tallies.get(window.device_id)
        if tally is None:
            tally = tallies[window.device_id] = _Tally()
        tally.add(window)
    skews: dict[str, ClockOffset] = {}
    for offset in clock_offsets:
        held = skews.get(offset.device_id)
        if held is None or offset.updated_at >= held.updated_at:
            skews[offset.device_id] = offset
    out = []
    for device_id in sorted(set(records) | set(tallies)):
        record = records.get(device_id)
        tally = tallies.get(device_id, _Tally())
        latest = tally.latest
        last_seen = record.last_seen if record is not None else None
        if latest is not None and (last_seen is None or latest.received_at > last_seen):
            last_seen = latest.received_at
        losses: dict[str, int] = {}
        for window in tally.by_database.values():
            for reason, count in window.losses.items():
                losses[reason] = losses.get(reason, 0) + int(count)
        violations: dict[str, int] = {}
        for window in tally.by_boot.values():
            for budget, count in ((window.budget or {}).get("violations") or {}).items():
                violations[budget] = violations.get(budget, 0) + int(count)
        skew: float | None = None
        if device_id in skews:
            skew = skews[device_id].skew
        elif latest is not None:
            skew = latest.closed_at - latest.corrected_closed_at
        out.append(DeviceStatus(
            device_id=device_id, registered=record is not None, removed=bool(record and record.removed),
            last_seen=last_seen, seconds_since_seen=now - last_seen if last_seen is not None else None,
            windows=tally.windows,
            sync_lag=latest.received_at - latest.corrected_closed_at if latest is not None else None,
            newest_window_age=now - tally.newest_close if tally.newest_close is not None else None,
            outbox_depth=latest.outbox_depth if latest is not None else None, losses=losses, clock_skew=skew,
            budget_violations=violations, drift_windows=tally.drift_windows, drift_verdicts=tally.drift_verdicts))
    return FleetStatus(now=now, devices=tuple(out))
