"""A device's sending side for collector tests: real keys, real window summaries, its own clocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_runtime.sync.keys import DeviceKey
from edge_runtime.sync.payload import DEFAULT_MAX_MESSAGE_BYTES, WindowSummary, encode_window

__all__ = ["SimulatedDevice"]

YEAR = 365 * 86400.0


@dataclass
class SimulatedDevice:
    """Signs windows as device ``device_id`` whose wall clock runs ``skew`` seconds off true time.

    Its monotonic clock reads ``true time - booted_at``. ``window`` is a real stored window
    (the ``monitored_window`` fixture): its profile and verdicts go into every summary.
    """

    window: dict[str, Any]
    device_id: str = "kiosk-1"
    skew: float = 0.0
    booted_at: float = 1.7e9 - 3600.0
    boot_id: str = "boot-1"
    key: DeviceKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = DeviceKey.generate(self.device_id)

    @property
    def public_key(self) -> str:
        return self.key.public_text

    def summary(self, seq: int, *, closed_at: float, sent_at: float, **changes: Any) -> WindowSummary:
        """Window ``seq`` closed at true time ``closed_at``, encoded at true time ``sent_at``."""
        w = self.window
        fields: dict[str, Any] = dict(
            device_id=self.device_id, database_id=w["database_id"], model_name=w["model"],
            model_version=w["version"], model_sha256=w["model_sha256"], seq_first=seq, seq_last=seq,
            opened_at=closed_at - 60.0 + self.skew, closed_at=closed_at + self.skew, rows=w["rows"],
            rejected=w["rejected"], partial=False, quality=w["quality"], latency=w["latency"], budget=w["budget"],
            verdicts=w["verdicts"], profile=w["profile"], losses={}, outbox_depth=0, boot_id=self.boot_id,
            sent_wall=sent_at + self.skew, sent_mono=sent_at - self.booted_at)
        fields.update(changes)
        return WindowSummary(**fields)

    def messages(self, seq: int, *, closed_at: float, sent_at: float,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, **changes: Any) -> list[bytes]:
        return encode_window(self.summary(seq, closed_at=closed_at, sent_at=sent_at, **changes), self.key,
                             max_message_bytes=max_message_bytes)
