"""What a transport promises the sync loop: send one message, say what became of it.

The HTTP transport (:mod:`edge_runtime.sync.http_transport`) is the default; an
MQTT one can be added behind the same :class:`Transport` protocol.

Examples
--------
>>> from edge_runtime.sync.transport import Delivery, SendResult
>>> SendResult(Delivery.PERMANENT, 422, "unsupported version").outcome.value
'permanent'
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Delivery", "SendResult", "Transport"]


class Delivery(enum.Enum):
    """What became of one message."""

    SENT = "sent"  # the collector has it (stored, a duplicate, or a part waiting for the others)
    PERMANENT = "permanent"  # refused for good (malformed, oversized, unsupported): dead-letter it
    RETRY = "retry"  # not delivered for now (server error, timeout, no connection): back off, try again
    AUTH = "auth"  # the collector does not accept this device or signature (or could not be verified): keep, report


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send, the status the collector gave (if any) and its detail."""

    outcome: Delivery
    status: int | None
    detail: str


class Transport(Protocol):
    """Carries one signed message to the collector at a time."""

    def send(self, message: bytes) -> SendResult:
        """Send one message and wait for its answer; never raises for a network or server failure."""
        ...

    def close(self) -> None:
        """Release connections; the transport is not used after."""
        ...
