"""Ingest: one received message in, one outcome out (stored, duplicate, waiting for parts).

Every front end (the HTTP server, an MQTT subscriber) hands the bytes it received to
:meth:`Ingestor.ingest` and maps the outcome to its own answer. The steps, in order:

1. parse the message (``read_message``, with the size limit) — ``PayloadError``;
2. look up the device's public key; an unknown or removed device is refused;
3. verify the signature; from here the header is the device's own word;
4. a window already held is a duplicate (a replay changes nothing);
5. a part of a split window is held until every part has come;
6. assemble the document and read its profile (once: it is checked here, and that
   same profile is merged into the window's base bucket);
7. hand the message to the store's group commit (:class:`GroupCommit`,
   :meth:`FleetStore.record_arrivals`): its clocks folded into its boot's offset
   estimate, the device marked seen, ``closed_at`` corrected onto the collector's
   clock, and the window stored once (the store's unique key decides between
   concurrent collectors). :meth:`Ingestor.ingest` returns once that is committed;
8. merge the stored window's profile into its base bucket in memory
   (:class:`~collector.bucket_folding.BucketFolder`), written with many others
   now and then, outside the group commit (and at :meth:`Ingestor.close`).

A refusal raises :class:`~collector.errors.MessageRejected`, after the rejection is
counted by reason in the store, and nothing else is written.

Throughput comes from the group commit: every message that arrives while a
transaction commits waits for the next one, which takes them all (one fsync for
the lot); the window's JSON is stored as the device signed it, never encoded again;
and the commit holds the store's write lock only for rows (the bucket merges happen
outside it, the bucket rows are written about once a second).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from collector.bucket_folding import BucketFolder
from collector.errors import MessageRejected
from collector.stores.base import Arrival, ArrivalOutcome, FleetStore, PendingPart, StoredWindow, WindowKey
from collector.stores.rows import window_to_row
from edge_runtime.errors import BundleFormatError, ConfigError, PayloadError, SignatureError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.sync.payload import DEFAULT_MAX_MESSAGE_BYTES, Message, WindowSummary, assemble_raw, read_message

__all__ = ["AUTHENTICATION_REASONS", "REJECTION_STATUS", "GroupCommit", "IngestResult", "Ingestor", "stored_window"]

_In = TypeVar("_In")
_Out = TypeVar("_Out")

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


class _Slot(Generic[_In, _Out]):
    __slots__ = ("item", "result", "error", "done", "wake")

    def __init__(self, item: _In) -> None:
        self.item = item
        self.result: _Out | None = None
        self.error: BaseException | None = None
        self.done = False
        # Held until this slot is written or its thread is to write next: one waiter woken
        # at a time, where a condition's notify_all woke every waiter for each batch.
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit(Generic[_In, _Out]):
    """Many threads' writes committed together: each :meth:`submit` returns once its item is written.

    The first thread to find no write under way becomes the writer: it takes every item
    waiting (up to ``max_batch``), calls ``write`` on them in one go, and wakes their
    submitters with their results (or ``write``'s exception). Threads that come
    meanwhile wait for the next write, which the first of them makes for them all.
    Nothing waits for a batch to fill: a lone item is written at once.

    Each waiting thread sleeps on a lock of its own, released once: when its item is
    written, or when it is to write the next batch. (Woken all at once for every batch,
    as by a condition, a collector's many request threads spent a fifth of their time
    waking up to find their item not written yet.)

    Examples
    --------
    >>> commit = GroupCommit(lambda items: [item * 2 for item in items])
    >>> commit.submit(21)
    42
    """

    def __init__(self, write: Callable[[Sequence[_In]], Sequence[_Out]], *, max_batch: int = 256) -> None:
        self._write = write
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._queue: list[_Slot[_In, _Out]] = []  # not empty only while a write is under way
        self._writing = False

    def submit(self, item: _In) -> _Out:
        """Write ``item`` (with whatever else is waiting) and return its result once committed."""
        slot: _Slot[_In, _Out] = _Slot(item)
        with self._mutex:
            self._queue.append(slot)
            lead = not self._writing
            self._writing = True
        if not lead:
            slot.wake.acquire()  # written, or first in line for the next write
        if not slot.done:
            self._write_batch()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]  # set with done, unless error is

    def _write_batch(self) -> None:
        """Write the first ``max_batch`` waiting items (this thread's among them), then hand over."""
        with self._mutex:
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
        try:
            results = self._write([s.item for s in batch])
        except BaseException as exc:  # every submitter of the batch sees the failure
            for s in batch:
                s.error = exc
        else:
            for s, result in zip(batch, results, strict=True):
                s.result = result
        finally:
            with self._mutex:
                for s in batch:
                    s.done = True
                if self._queue:  # the first in line writes next
                    self._queue[0].wake.release()
                else:
                    self._writing = False
            for s in batch[1:]:  # batch[0] is this thread's own slot
                s.wake.release()


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
    buckets : BucketFolder, optional
        Where stored windows are merged into their base buckets (default: one on ``store``).

    Call :meth:`close` when done, to write the base buckets still held in memory (until
    then, and if a collector stops without it, the store's views count those windows all
    the same).
    """

    def __init__(self, store: FleetStore, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 clock: Callable[[], float] = time.time, buckets: BucketFolder | None = None) -> None:
        if max_message_bytes < 1024:
            raise ConfigError(f"The 'max_message_bytes' parameter of Ingestor must be an int >= 1024. "
                              f"Got {max_message_bytes!r} instead.")
        self.store = store
        self.max_message_bytes = max_message_bytes
        self._clock = clock
        # Registered models never change under a sha256; only a known one is cached (an
        # unknown one may be added any time).
        self._known_models: set[str] = set()
        self._commit: GroupCommit[Arrival, ArrivalOutcome] = GroupCommit(store.record_arrivals)
        self.buckets = buckets if buckets is not None else BucketFolder(store, clock=clock)

    def close(self) -> None:
        """Write the base buckets held in memory (the store stays open: its owner closes it)."""
        self.buckets.close()

    def _model_known(self, sha256: str) -> bool:
        if sha256 in self._known_models:
            return True
        if self.store.model(sha256) is not None:
            self._known_models.add(sha256)
            return True
        return False

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
        arrival = Arrival(device_id=device_id, boot_id=str(header["boot_id"]), sent_wall=float(header["sent_wall"]),
                          sent_mono=float(header["sent_mono"]), received_at=received_at)
        model_known = self._model_known(key.model_sha256)
        if self.store.has_window(key):
            self._commit.submit(arrival)  # the clocks and last seen, all the same
            return IngestResult(status="duplicate", key=key, model_known=model_known,
                                detail=f"window {_describe(key)} is already stored")
        parts = int(header["parts"])
        messages: list[Message] = [message]
        if parts > 1:
            held = self.store.add_part(PendingPart(key=key, document_sha256=str(header["document_sha256"]),
                                                   part=int(header["part"]), parts=parts, message=bytes(data),
                                                   received_at=received_at))
            if len(held) < parts:
                self._commit.submit(arrival)  # its clocks; the part that completes the window brings them too
                return IngestResult(status="part-stored", key=key, model_known=model_known,
                                    detail=f"part {header['part'] + 1} of {parts} of window {_describe(key)} held "
                                           f"({len(held)} of {parts} arrived)")
            # Each held part was verified when it came; parsing them again only reads their bytes.
            messages = [read_message(p.message, self.max_message_bytes) for p in held]
        try:
            summary, document_json = assemble_raw(messages, check_profile=False)
            profile = Profile.from_bytes(summary.profile)  # read once: checked here, merged by the store
        except PayloadError as exc:
            raise self._reject(_PAYLOAD_REASONS.get(exc.reason, "malformed"), str(exc), device_id) from exc
        except (BundleFormatError, ValueError, RuntimeError) as exc:
            raise self._reject("malformed", f"device '{device_id}': the window's profile bytes are unreadable: "
                                            f"{exc}", device_id) from exc
        if not all(math.isfinite(value) for value in (summary.opened_at, summary.closed_at)):
            raise self._reject("malformed", f"device '{device_id}': the window's times are not finite numbers",
                               device_id)
        window = stored_window(summary, corrected_closed_at=math.nan, received_at=received_at)
        # The row is built here, in this request's thread: the commit runs one batch at a time.
        outcome = self._commit.submit(dataclasses.replace(arrival, window=window,
                                                          row=window_to_row(window, document_json),
                                                          split=parts > 1))
        unknown = "" if model_known else f" (model {key.model_sha256[:12]}... is not registered: add-model)"
        if outcome.stored and outcome.window_id is not None and outcome.corrected_closed_at is not None:
            self.buckets.add(outcome.window_id, key.model_sha256, outcome.corrected_closed_at, profile)
        if not outcome.stored:
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
