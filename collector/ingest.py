"""Ingest: one received message in, one outcome out (stored, duplicate, waiting for parts).

Every front end (the HTTP server, an MQTT subscriber) hands the bytes it received to
:meth:`Ingestor.ingest` and maps the outcome to its own answer. The steps, in order:

1. parse the message (``read_message``, with the size limit) — ``PayloadError``;
2. look up the device's public key; an unknown or removed device is refused;
3. verify the signature; from here the header is the device's own word;
4. fold the message's clocks into its boot's offset estimate, mark the device seen;
5. a window already held is a duplicate (a replay changes nothing);
6. a part of a split window is held until every part has come;
7. assemble the document, correct ``closed_at`` onto the collector's clock, store it
   once (the store's unique key decides between concurrent collectors).

A refusal raises :class:`~collector.errors.MessageRejected`, after the rejection is
counted by reason in the store, and nothing else is written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.errors import MessageRejected
from collector.stores.base import FleetStore, PendingPart, StoredWindow, WindowKey
from edge_runtime.errors import ConfigError, PayloadError, SignatureError
from edge_runtime.sync.payload import DEFAULT_MAX_MESSAGE_BYTES, Message, WindowSummary, assemble, read_message

__all__ = ["AUTHENTICATION_REASONS", "REJECTION_STATUS", "IngestResult", "Ingestor", "stored_window"]

# What each counted rejection reason answers over HTTP: 401 the device keeps the message
# and retries later; the other 4xx are permanent (the device dead-letters the message).
REJECTION_STATUS = {
    "unknown-device": 401,
    "removed-device": 401,
    "bad-signature": 401,
    "malformed": 400,
    "truncated": 400,
    "oversized": 413,
    "unsupported-version": 422,
}
AUTHENTICATION_REASONS = frozenset(r for r, status in REJECTION_STATUS.items() if status == 401)
_PAYLOAD_REASONS = {"malformed": "malformed", "truncated": "truncated", "oversized": "oversized",
                    "version": "unsupported-version"}


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """What became of an accepted message.

    Attributes
    ----------
    status : str
        ``"stored"`` (the window is new), ``"duplicate"`` (already held: nothing changed)
        or ``"part-stored"`` (one part of a split window, waiting for the others).
    key : WindowKey
        The window the message belongs to.
    model_known : bool
        Whether the window's model was registered with ``collector add-model``; a window
        of an unknown model is stored all the same, and reported as such.
    detail : str
        One line for the answer's ``detail``.
    """

    status: str
    key: WindowKey
    model_known: bool
    detail: str


class Ingestor:
    """Turns received messages into stored windows.

    Parameters
    ----------
    store : FleetStore
        Where devices are looked up and windows stored.
    max_message_bytes : int
        The largest message accepted (default 128 KiB, the protocol's default).
    clock : callable
        The collector's wall clock (``time.time``); tests pass a fake one.
    """

    def __init__(self, store: FleetStore, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 clock: Callable[[], float] = time.time) -> None:
        if max_message_bytes < 1024:
            raise ConfigError(f"The 'max_message_bytes' parameter of Ingestor must be an int >= 1024. "
                              f"Got {max_message_bytes!r} instead.")
        self.store = store
        self.max_message_bytes = max_message_bytes
        self._clock = clock

    def _reject(self, reason: str, detail: str, device_id: str | None = None) -> MessageRejected:
        # device_id only once the device is known: the header of a refused message is anyone's word,
        # and must not grow the counters table.
        self.store.count_rejection(reason, device_id)
        return MessageRejected(reason, REJECTION_STATUS[reason], detail)

    def reject_oversized(self, size: int) -> MessageRejected:
        """Count (and return, to raise) the refusal of a body the front end would not read whole."""
        return self._reject("oversized", f"the message is {size} bytes or more, over the limit of "
                                         f"{self.max_message_bytes}")

    def ingest(self, data: bytes) -> IngestResult:
        """Verify, deduplicate and store one message.

        Raises
        ------
        MessageRejected
            The message is refused (nothing stored); its ``reason`` was counted.
        collector.errors.FleetStoreError
            The store failed: the sender should retry (an HTTP 503).
        """
        received_at = self._clock()
        try:
            message = read_message(data, self.max_message_bytes)
        except PayloadError as exc:
            raise self._reject(_PAYLOAD_REASONS.get(exc.reason, "malformed"), str(exc)) from exc
        device_id = message.device_id
        device = self.store.device(device_id)
        if device is None:
            raise self._reject("unknown-device", f"device '{device_id}' is not registered with this collector")
        if device.removed:
            raise self._reject("removed-device", f"device '{device_id}' was removed from this collector")
        try:
            message.verify(device.public_key)
        except (SignatureError, ConfigError) as exc:
            raise self._reject("bad-signature", f"device '{device_id}': {exc}", device_id) from exc

        header = message.header
        key = WindowKey(*message.key)
        if not all(math.isfinite(header[name]) for name in ("sent_wall", "sent_mono")):
            raise self._reject("malformed", f"device '{device_id}': the header's clocks are not finite numbers",
                               device_id)
        clock = self.store.observe_clock(device_id, str(header["boot_id"]), sent_wall=float(header["sent_wall"]),
                                         sent_mono=float(header["sent_mono"]), received_at=received_at)
        self.store.touch_device(device_id, received_at)
        model_known = self.store.model(key.model_sha256) is not None
        if self.store.has_window(key):
            return IngestResult(status="duplicate", key=key, model_known=model_known,
                                detail=f"window {_describe(key)} is already stored")
        parts = int(header["parts"])
        messages: list[Message] = [message]
        if parts > 1:
            held = self.store.add_part(PendingPart(key=key, document_sha256=str(header["document_sha256"]),
                                                   part=int(header["part"]), parts=parts, message=bytes(data),
                                                   received_at=received_at))
            if len(held) < parts:
                return IngestResult(status="part-stored", key=key, model_known=model_known,
                                    detail=f"part {header['part'] + 1} of {parts} of window {_describe(key)} held "
                                           f"({len(held)} of {parts} arrived)")
            # Each held part was verified when it came; parsing them again only reads their bytes.
            messages = [read_message(p.message, self.max_message_bytes) for p in held]
        try:
            summary = assemble(messages)
        except PayloadError as exc:
            raise self._reject(_PAYLOAD_REASONS.get(exc.reason, "malformed"), str(exc), device_id) from exc
        if not all(math.isfinite(value) for value in (summary.opened_at, summary.closed_at)):
            raise self._reject("malformed", f"device '{device_id}': the window's times are not finite numbers",
                               device_id)
        corrected = clock.correct(summary.closed_at, sent_wall=summary.sent_wall, sent_mono=summary.sent_mono)
        stored = self.store.insert_window(stored_window(summary, corrected_closed_at=corrected,
                                                        received_at=received_at))
        unknown = "" if model_known else f" (model {key.model_sha256[:12]}... is not registered: add-model)"
        if not stored:
            return IngestResult(status="duplicate", key=key, model_known=model_known,
                                detail=f"window {_describe(key)} is already stored")
        return IngestResult(status="stored", key=key, model_known=model_known,
                            detail=f"window {_describe(key)} stored{unknown}")


def stored_window(summary: WindowSummary, *, corrected_closed_at: float, received_at: float) -> StoredWindow:
    """The row a store keeps for an assembled summary."""
    return StoredWindow(
        device_id=summary.device_id, database_id=summary.database_id, model_sha256=summary.model_sha256,
        seq_first=summary.seq_first, model_name=summary.model_name, model_version=summary.model_version,
        seq_last=summary.seq_last, opened_at=float(summary.opened_at), closed_at=float(summary.closed_at),
        corrected_closed_at=corrected_closed_at, received_at=received_at, rows=summary.rows,
        rejected=summary.rejected, partial=summary.partial, quality=summary.quality, latency=summary.latency,
        budget=summary.budget, verdicts=summary.verdicts, profile=summary.profile, losses=summary.losses,
        outbox_depth=summary.outbox_depth, boot_id=summary.boot_id,
        drift_count=sum(1 for verdict in summary.verdicts if verdict.get("status") == "drift"))


def _describe(key: WindowKey) -> str:
    return f"{key.device_id}/{key.database_id}/{key.model_sha256[:12]}/{key.seq_first}"
