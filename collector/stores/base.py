"""What a fleet store keeps, and the one interface every store implements.

The collector's stores (SQLite by default, PostgreSQL for fleets larger than one
machine) implement :class:`FleetStore`. Ingest writes through it; the fleet views
(``collector.fleet_drift``, ``collector.fleet_status``) read through it, so a view
never knows which database holds the windows.

All times are seconds since the epoch (floats). ``opened_at``/``closed_at`` are the
*device's* wall clock, which may be wrong by a year; ``corrected_closed_at`` and
``received_at`` are on the collector's clock, and time filters use the corrected time.

The idempotency key of a window is ``(device_id, database_id, model_sha256, seq_first)``
(:class:`WindowKey`): a store holds each key once, whichever process wrote it first.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collector.stores.bucketing import BucketFold

__all__ = [
    "Arrival",
    "ArrivalOutcome",
    "ClockOffset",
    "DeviceRecord",
    "FleetRetention",
    "FleetStore",
    "ModelRecord",
    "PendingPart",
    "StoredWindow",
    "WindowKey",
    "local_signals",
]

# A verdict's status as a rank, the order fleet drift sorts devices by.
_STATUS_RANK = {"ok": 0, "warn": 1, "drift": 2}


def local_signals(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, float]]:
    """A window's own verdicts in brief: per signal (a feature by name, or ``"prediction"``),
    the status rank (0 ok, 1 warn, 2 drift) and the severity, the deciding metric's value
    over its drift threshold (0 when no value can reach the threshold).

    Fleet drift ranks the devices that drove a flagged signal by these, without reading
    the windows' profiles or verdicts.

    Examples
    --------
    >>> local_signals([{"name": "f00", "kind": "numeric", "status": "drift", "value": 0.2, "threshold": 0.1},
    ...                {"name": "prediction", "kind": "prediction", "status": "ok", "value": 0.01,
    ...                 "threshold": None}])
    {'f00': (2, 2.0), 'prediction': (0, 0.0)}
    """
    out = {}
    for row in verdicts:
        name = "prediction" if row.get("kind") == "prediction" else str(row.get("name"))
        value, threshold = row.get("value"), row.get("threshold")
        severity = 0.0
        if isinstance(value, (int, float)) and isinstance(threshold, (int, float)) and threshold > 0:
            severity = float(value) / float(threshold)
            severity = round(severity, 4) if math.isfinite(severity) else 0.0
        out[name] = (_STATUS_RANK.get(str(row.get("status")), 0), severity)
    return out


@dataclass(frozen=True, slots=True)
class WindowKey:
    """The idempotency key of a window: a re-sent window with this key changes nothing."""

    device_id: str
    database_id: str
    model_sha256: str
    seq_first: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredWindow:
    """One window summary as the collector keeps it.

    Attributes
    ----------
    device_id, database_id, model_sha256, seq_first
        The idempotency key (:attr:`key`).
    model_name, model_version
        As the device reported them (the model may be unknown to the collector).
    seq_last
        Equal to ``seq_first`` for a plain window; the end of the range for a merged one.
    opened_at, closed_at
        The device's wall clock.
    corrected_closed_at
        ``closed_at`` moved onto the collector's clock with the boot's estimated offset.
    received_at
        The collector's clock when the window was complete (its last part arrived).
    rows, rejected, partial
        Rows scored and rejected in the window; ``partial`` when the window was cut short.
    quality, latency, budget, verdicts
        The window's JSON documents (``verdicts`` as ``decode_verdicts`` gives them).
    profile
        ``edge_runtime.monitoring.data_profile.Profile.to_bytes()``.
    losses
        Windows lost so far on the device's database, by reason (cumulative).
    outbox_depth
        Windows waiting on the device when this one was sent.
    boot_id
        The device boot the window was sent from.
    drift_count
        Verdicts whose status is ``"drift"``.
    signals
        The verdicts in brief (:func:`local_signals`): computed from ``verdicts`` when there
        are any (what is passed is then ignored), else as given. A store keeps them beside
        the window, so its light read (no verdicts) has them too.
    """

    device_id: str
    database_id: str
    model_sha256: str
    seq_first: int
    model_name: str
    model_version: str
    seq_last: int
    opened_at: float
    closed_at: float
    corrected_closed_at: float
    received_at: float
    rows: int
    rejected: int
    partial: bool
    quality: dict[str, Any]
    latency: dict[str, Any] | None
    budget: dict[str, Any] | None
    verdicts: list[dict[str, Any]]
    profile: bytes
    losses: dict[str, int]
    outbox_depth: int
    boot_id: str
    drift_count: int
    signals: Mapping[str, tuple[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Derived whenever the verdicts are there, so a window copied with other verdicts
        # (dataclasses.replace) never keeps a stale brief; as given only without them (a light read).
        if self.verdicts:
            object.__setattr__(self, "signals", local_signals(self.verdicts))

    @property
    def key(self) -> WindowKey:
        """The window's idempotency key."""
        return WindowKey(self.device_id, self.database_id, self.model_sha256, self.seq_first)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRecord:
    """A registered device. A removed device keeps its row (and windows) but is refused."""

    device_id: str
    public_key: str  # "ed25519:<base64 of the 32 raw bytes>"
    added_at: float
    last_seen: float | None  # collector clock of its last accepted message; None before the first
    removed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    """A bundle registered with ``collector add-model``: what fleet drift judges against."""

    sha256: str
    name: str
    version: str
    reference_profile: bytes  # the bundle's reference Profile bytes (empty when it has none)
    manifest: dict[str, Any] = field(default_factory=dict)  # the bundle manifest (schema, drift policy)
    added_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingPart:
    """One message of a window split into several, held until all its parts arrived."""

    key: WindowKey
    document_sha256: str
    part: int
    parts: int
    message: bytes  # the whole signed message, as received
    received_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockOffset:
    """The estimated clock of one device boot.

    Attributes
    ----------
    offset
        Collector time minus the device's monotonic clock, estimated as the minimum of
        ``received_at - sent_mono`` over the boot's messages: the network only ever adds
        delay, and the monotonic clock never steps, unlike a wall clock fixed by NTP.
    skew
        The device's wall clock minus collector time at its latest message
        (``sent_wall - (sent_mono + offset)``): positive when the device runs ahead.
    samples
        Messages the estimate was made from.
    """

    device_id: str
    boot_id: str
    offset: float
    skew: float
    samples: int
    updated_at: float

    def correct(self, device_time: float, *, sent_wall: float, sent_mono: float) -> float:
        """``device_time`` (device wall clock) on the collector's clock.

        The time elapsed on the device's wall clock between ``device_time`` and the send is
        carried onto the monotonic clock of the send, then moved by the boot's offset.
        """
        return device_time - sent_wall + sent_mono + self.offset


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrival:
    """One accepted (verified) message, as ingest hands it to :meth:`FleetStore.record_arrivals`.

    Attributes
    ----------
    device_id, boot_id, sent_wall, sent_mono, received_at
        The message's clocks, folded into its boot's estimate (:meth:`FleetStore.observe_clock`),
        and the device marked seen at ``received_at``.
    window
        The complete window the message finishes, or None (a duplicate, a part). Its
        ``corrected_closed_at`` is set by the store, from the boot's estimate once this
        message is folded in (:meth:`ClockOffset.correct`, with ``sent_wall``/``sent_mono``).
    row
        The window's row (``collector.stores.rows.window_to_row``; ingest's holds the window's
        JSON document as received, stored as it is instead of the verdicts encoded again),
        built by the sender before the commit, which then only sets its
        ``corrected_closed_at``: the commit is the one step of ingest that runs one batch at
        a time. None: the store builds it from ``window``.
    split
        The window came in several parts: the parts held for it are deleted as it is stored.
    """

    device_id: str
    boot_id: str
    sent_wall: float
    sent_mono: float
    received_at: float
    window: StoredWindow | None = None
    row: tuple[Any, ...] | None = None
    split: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ArrivalOutcome:
    """What :meth:`FleetStore.record_arrivals` did with one :class:`Arrival`."""

    stored: bool  # its window is new (False: no window, or one already held)
    clock: ClockOffset  # its boot's estimate, this message included
    corrected_closed_at: float | None  # its window's close on the collector's clock (None without a window)
    window_id: int | None = None  # the store's id of the window stored, for its BucketFold


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetRetention:
    """How much a fleet store keeps; ``None`` keeps everything along that axis.

    Parameters
    ----------
    max_age_seconds
        Windows received longer ago than this are deleted.
    max_windows
        Only the most recently received windows up to this count are kept.
    pending_max_age_seconds
        Parts of a window whose other parts never came are dropped after this long.
    """

    max_age_seconds: float | None = None
    max_windows: int | None = None
    pending_max_age_seconds: float = 7 * 86400.0

    def __post_init__(self) -> None:
        from edge_runtime.errors import ConfigError

        if self.max_age_seconds is not None and not self.max_age_seconds > 0:
            raise ConfigError(f"The 'max_age_seconds' parameter of FleetRetention must be a number in (0, inf) "
                              f"or None. Got {self.max_age_seconds!r} instead.")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"The 'max_windows' parameter of FleetRetention must be an int >= 1 or None. "
                              f"Got {self.max_windows!r} instead.")
        if not self.pending_max_age_seconds > 0:
            raise ConfigError(f"The 'pending_max_age_seconds' parameter of FleetRetention must be a number in "
                              f"(0, inf). Got {self.pending_max_age_seconds!r} instead.")


@runtime_checkable
class FleetStore(Protocol):
    """The interface of a fleet store (``collector.stores.open_store(url)`` gives one).

    Writes are safe from several threads and, for PostgreSQL, from several processes:
    deduplication is the database's unique constraint, never a read-then-write.
    """

    url: str

    # ---------------------------------------------------------------- devices
    def add_device(self, device_id: str, public_key: str, *, now: float) -> DeviceRecord:
        """Register a device, or give a removed one back its place (with this key)."""
        ...

    def remove_device(self, device_id: str) -> None:
        """Refuse the device from now on; its windows stay. Raises ``UnknownDeviceError``."""
        ...

    def device(self, device_id: str) -> DeviceRecord | None:
        """The device's record (removed or not), or None when it was never added."""
        ...

    def devices(self) -> list[DeviceRecord]:
        """Every device ever added, removed ones included, by id."""
        ...

    def touch_device(self, device_id: str, seen_at: float) -> None:
        """Move ``last_seen`` forward to ``seen_at`` (never back)."""
        ...

    # ---------------------------------------------------------------- models
    def add_model(self, model: ModelRecord) -> None:
        """Register a bundle's model, replacing an earlier record of the same sha256."""
        ...

    def model(self, sha256: str) -> ModelRecord | None:
        """The model registered with this sha256, or None."""
        ...

    def models(self) -> list[ModelRecord]:
        """Every registered model, by name then version."""
        ...

    # ---------------------------------------------------------------- windows
    def insert_window(self, window: StoredWindow) -> bool:
        """Store a window; False (and nothing written) when its key is already held.

        Also deletes the pending parts of that key, and merges its profile into its base
        bucket (unless the profile cannot be read), in the same transaction.
        """
        ...

    def record_arrivals(self, arrivals: Sequence[Arrival]) -> list[ArrivalOutcome]:
        """Fold a batch of accepted messages in, in ONE transaction (a group commit), each device's in order.

        For each: its clocks (:meth:`observe_clock`), the device seen (:meth:`touch_device`),
        and its window, if any, stored as :meth:`insert_window` stores one, its
        ``corrected_closed_at`` set from the boot's estimate, but not yet merged into its
        base bucket: the caller merges the profiles in memory and writes them with
        :meth:`fold_buckets` (:mod:`collector.bucket_folding`); until then
        :meth:`bucket_profiles` adds them itself. When this returns, all of it is
        committed; when it raises, none of it is.
        """
        ...

    def fold_buckets(self, folds: Sequence[BucketFold], *, orphans_before: float | None = None) -> int:
        """Write windows merged in memory into their base buckets, in ONE transaction; how many windows.

        A fold is written only if none of its windows is in its bucket already (another
        process folded them, as orphans): otherwise those of its windows still outside
        are read and merged from their rows instead. With ``orphans_before``, windows
        received before it and still outside their buckets (their collector stopped
        before folding them) are read and merged too.
        """
        ...

    def bucket_profiles(self, model_sha256: str | None = None, since: float | None = None,
                        until: float | None = None) -> dict[tuple[str, float], bytes]:
        """The base buckets' profile bytes by ``(model_sha256, start)``, whose start is in [since, until).

        Each holds the profiles of the stored windows whose ``corrected_closed_at`` is in
        ``[start, start + BASE_BUCKET_SECONDS)`` (:mod:`collector.stores.bucketing`), merged
        once each whichever collector process stored them: the stored bucket, and the
        windows not folded into it yet, read in the same snapshot. A window whose profile
        could not be read is in no bucket.
        """
        ...

    def has_window(self, key: WindowKey) -> bool:
        """Whether a window with this key is stored."""
        ...

    def windows(self, model_sha256: str | None = None, since: float | None = None, until: float | None = None,
                *, device_id: str | None = None, with_profile: bool = True) -> Iterator[StoredWindow]:
        """Stored windows, by ``corrected_closed_at``, then device, database, model and ``seq_first``.

        ``since`` (inclusive) and ``until`` (exclusive) bound ``corrected_closed_at``. The
        windows are read page by page as the iterator is consumed, so a scan of the whole
        store holds only a page in memory. ``with_profile=False`` is the views' light read:
        the windows come with an empty ``profile`` and empty ``verdicts`` (``drift_count``
        still counts their drift verdicts), neither read from the database.
        """
        ...

    def window_count(self, device_id: str | None = None) -> int:
        """How many windows are stored (for one device, when given)."""
        ...

    # ---------------------------------------------------------------- parts
    def add_part(self, part: PendingPart) -> list[PendingPart]:
        """Hold one part; return every held part of its document, by part number.

        Adding a part twice keeps one copy. Concurrent writers of the same document
        are serialized, so the writer of the last missing part sees them all.
        """
        ...

    # ---------------------------------------------------------------- clocks
    def observe_clock(self, device_id: str, boot_id: str, *, sent_wall: float, sent_mono: float,
                      received_at: float) -> ClockOffset:
        """Fold one message's clocks into its boot's estimate and return the estimate."""
        ...

    def clock_offsets(self, device_id: str | None = None) -> list[ClockOffset]:
        """Every boot's estimate (of one device, when given), latest updated last."""
        ...

    # ---------------------------------------------------------------- rejections
    def count_rejection(self, reason: str, device_id: str | None = None) -> None:
        """Add one to the counter of ``reason`` (a short slug such as ``"bad-signature"``)."""
        ...

    def rejections(self) -> Mapping[str, int]:
        """Rejections so far, by reason."""
        ...

    # ---------------------------------------------------------------- upkeep
    def enforce_retention(self, policy: FleetRetention, *, now: float) -> int:
        """Delete what ``policy`` no longer keeps; return how many windows went."""
        ...

    def close(self) -> None:
        """Release the connection(s)."""
        ...
