"""Fleet stores behind one interface (:class:`~collector.stores.base.FleetStore`)."""

from __future__ import annotations

from collector.stores.base import (
    ClockOffset,
    DeviceRecord,
    FleetRetention,
    FleetStore,
    ModelRecord,
    PendingPart,
    StoredWindow,
    WindowKey,
)

__all__ = ["ClockOffset", "DeviceRecord", "FleetRetention", "FleetStore", "ModelRecord", "PendingPart",
           "StoredWindow", "WindowKey"]
