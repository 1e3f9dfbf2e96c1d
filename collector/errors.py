"""The collector's own errors, under edge-runtime's one root::

    EdgeRuntimeError
    ├── ConfigError (ValueError)             an unknown store URL scheme, a bad setting
    └── CollectorError                       the collector cannot do what was asked
        ├── FleetStoreError                  the fleet database cannot be opened or written
        ├── UnknownDeviceError (LookupError) no device with that id was ever added
        └── MessageRejected                  a message refused at ingest (reason, HTTP status)

Payload and signature problems are the device's shared errors
(``edge_runtime.errors.PayloadError``, ``SignatureError``); ingest turns each into a
:class:`MessageRejected` that names its counted reason.
"""

from __future__ import annotations

from edge_runtime.errors import EdgeRuntimeError

__all__ = ["CollectorError", "FleetStoreError", "MessageRejected", "UnknownDeviceError"]


class CollectorError(EdgeRuntimeError):
    """Root of the collector's own errors."""


class FleetStoreError(CollectorError):
    """The fleet database cannot be opened, migrated or written."""


class UnknownDeviceError(CollectorError, LookupError):
    """No device with this id was ever added to the store."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        super().__init__(f"device '{device_id}' is not registered with this collector")

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError
        return str(self.args[0])


class MessageRejected(CollectorError):
    """A message the collector refuses, with nothing stored.

    Attributes
    ----------
    reason : str
        The counter it is counted under (``"bad-signature"``, ``"oversized"`` ...).
    http_status : int
        The answer the HTTP front end gives (401 authentication, 400 malformed,
        413 oversized, 422 unsupported version).
    """

    def __init__(self, reason: str, http_status: int, detail: str) -> None:
        self.reason = reason
        self.http_status = http_status
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
