"""Fleet status (issue 11): per device, from the store's records."""

from __future__ import annotations

import json
from typing import Any

from collector.fleet_status import fleet_status
from collector.stores.base import ClockOffset, DeviceRecord, StoredWindow


def window(device: str, seq: int, **fields: Any) -> StoredWindow:
    values: dict[str, Any] = dict(
        device_id=device, database_id="db1", model_sha256="ab" * 32, seq_first=seq, model_name="m",
        model_version="1", seq_last=seq, opened_at=1000.0 + 60 * seq, closed_at=1060.0 + 60 * seq,
        corrected_closed_at=1060.0 + 60 * seq, received_at=1065.0 + 60 * seq, rows=100, rejected=0,
        partial=False, quality={}, latency=None, budget=None, verdicts=[], profile=b"", losses={},
        outbox_depth=0, boot_id="b1", drift_count=0)
    values.update(fields)
    return StoredWindow(**values)


def device(device_id: str, last_seen: float | None = None, removed: bool = False) -> DeviceRecord:
    return DeviceRecord(device_id=device_id, public_key="ed25519:AAAA", added_at=0.0, last_seen=last_seen,
                        removed=removed)


def test_each_device_with_its_counts() -> None:
    windows = [
        window("a", 0, losses={"retention": 1}, budget={"violations": {"latency": 2}}),
        window("a", 1, losses={"retention": 3, "oversized": 1}, budget={"violations": {"latency": 5}},
               outbox_depth=4, drift_count=2),
        # A second database on the same device: its cumulative counters add to the first's.
        window("a", 0, database_id="db2", losses={"retention": 2}, boot_id="b9",
               budget={"violations": {"cpu": 1}}, received_at=1200.0, corrected_closed_at=1100.0,
               closed_at=1100.0 + 86400.0, outbox_depth=7),
        window("b", 0, drift_count=1),
    ]
    report = fleet_status([device("a", last_seen=1190.0), device("b"), device("c", removed=True)], windows,
                          now=1500.0, clock_offsets=[ClockOffset(device_id="b", boot_id="b1", offset=0.0, skew=-3.5,
                                                                 samples=4, updated_at=1100.0)])
    a, b, c = report.devices
    assert (a.device_id, a.windows, a.last_seen, a.seconds_since_seen) == ("a", 3, 1200.0, 300.0)
    assert (a.sync_lag, a.outbox_depth, a.newest_window_age) == (100.0, 7, 380.0)  # latest received: db2's
    assert a.losses == {"retention": 5, "oversized": 1} and a.loss_count == 6
    assert a.budget_violations == {"latency": 5, "cpu": 1}
    assert a.clock_skew == 86400.0  # no boot estimate: its latest window's correction
    assert (a.drift_windows, a.drift_verdicts) == (1, 2)
    assert (b.clock_skew, b.drift_windows, b.loss_count) == (-3.5, 1, 0)
    assert (c.registered, c.removed, c.windows, c.last_seen, c.sync_lag, c.outbox_depth) == (
        True, True, 0, None, None, None)
    json.dumps(report.to_dict())
    assert report.to_dict()["devices"][0]["loss_count"] == 6


def test_windows_of_an_unregistered_device_still_show() -> None:
    (ghost,) = fleet_status([], [window("ghost", 0)], now=2000.0).devices
    assert (ghost.device_id, ghost.registered, ghost.windows) == ("ghost", False, 1)
