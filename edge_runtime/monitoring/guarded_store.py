"""The monitor's way to its database: a failing database degrades monitoring, never serving.

Every write of the monitor goes through :class:`GuardedStore`. With
``on_error = "degrade"`` (the default), a write that fails (a full disk, a
read-only or vanished file, a lock held past the timeout) is counted instead of
raised: decisions that could not be logged are counted, closed windows and events
wait in memory (bounded) for the database to come back, and writes are retried
with exponential backoff (1 s doubling to 60 s). The first write that succeeds
again writes what waited and an event saying what was lost and why. A corrupted
file is moved aside (``<name>.corrupt-<UTC time>``, the newest
``keep_corrupt`` copies kept, counted against ``max_bytes``) and a fresh database,
with a new database id, is started in its place; a file deleted or replaced
under a running writer is treated the same way, without the move. With
``on_error = "raise"`` every failure is raised as a
:class:`~edge_runtime.errors.StoreError` subclass.

Examples
--------
>>> import tempfile, pathlib
>>> from edge_runtime.monitoring.guarded_store import GuardedStore
>>> from edge_runtime.monitoring.store import MonitorStore
>>> guard = GuardedStore(MonitorStore(pathlib.Path(tempfile.mkdtemp()) / "m.db"))
>>> guard.health().state, guard.reserve_request_ids(10), guard.reserve_request_ids(10)
('ok', 1, 11)
>>> guard.close()
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge_runtime.config import RetentionPolicy
from edge_runtime.errors import StoreCorruptError, StoreError
from edge_runtime.monitoring.decision_log import DecisionBlock
from edge_runtime.monitoring.store import MonitorStore, corrupt_copies
from edge_runtime.monitoring.windows import StoredVerdicts

__all__ = ["GuardedStore", "MonitorHealth", "move_aside", "open_store"]

T = TypeVar("T")

_FIRST_BACKOFF = 1.0  # seconds before the first retry after a failure
_MAX_BACKOFF = 60.0
_PENDING_WINDOWS = 16  # closed windows kept in memory while the database is unavailable
_PENDING_EVENTS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorHealth:
    """Whether monitoring can write its database, and what it could not write.

    Attributes
    ----------
    state : {'ok', 'degraded'}
        ``degraded`` while writes fail; serving goes on.
    error : str or None
        The last failure, while degraded.
    since : float or None
        When writes started failing (Unix time).
    unlogged_decisions : int
        Decisions that could not be written, since the monitor started.
    lost_windows, lost_events : int
        Closed windows and events dropped because too many waited in memory.
    pending_windows, pending_events : int
        Waiting in memory for the database to come back.
    replaced_databases : int
        Corrupted or vanished database files replaced by a fresh one.
    """

    state: str
    error: str | None
    since: float | None
    unlogged_decisions: int
    lost_windows: int
    lost_events: int
    pending_windows: int
    pending_events: int
    replaced_databases: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Skipped(Exception):
    """A write not attempted: the database failed recently and its retry is not due."""


class GuardedStore:
    """A :class:`MonitorStore` whose failures degrade monitoring instead of raising.

    Parameters
    ----------
    store : MonitorStore
        The opened database; a replacement is opened with the same settings.
    on_error : {'degrade', 'raise'}
    keep_corrupt : int
        Corrupted files kept for diagnosis.
    """

    def __init__(self, store: MonitorStore, *, on_error: str = "degrade", keep_corrupt: int = 2) -> None:
        self.store: MonitorStore | None = store
        self._raise = on_error == "raise"
        self._keep_corrupt = keep_corrupt
        self._clock = store.clock
        self._path, self._retention, self._lock_timeout = store.path, store.retention, store.lock_timeout
        self._models: dict[tuple[str, str, str], int] = {}
        self.writer = store.register_writer()
        self._error: StoreError | None = None
        self._since: float | None = None
        self._retry_at = 0.0
        self._backoff = _FIRST_BACKOFF
        self._unlogged = 0
        self._unlogged_since_failure = 0
        self._lost_windows = 0
        self._lost_events = 0
        self._replaced = 0
        self._gate = threading.RLock()
        self._reopen_pending = False  # the file was moved aside or vanished: open a fresh one first
        # The highest ids and window numbers handed out: a fresh database continues above them.
        self._id_high = 0
        self._seq_high = 0
        self._windows: deque[tuple[dict[str, Any], list[dict[str, Any]] | StoredVerdicts | None,
                                   list[dict[str, Any]]]] = deque()
        self._events: deque[tuple[float, str, str, str, str, int | None]] = deque()

    # ------------------------------------------------------------ identity
    @classmethod
    def unopened(cls, path: Path, retention: RetentionPolicy, *, clock: Callable[[], float], lock_timeout: float,
                 error: StoreError, keep_corrupt: int = 2) -> GuardedStore:
        """A guard whose database could not be opened at start (``error``): it keeps trying, with
        backoff, and monitoring starts writing the first time the database opens."""
        guard = cls.__new__(cls)
        guard.store = None
        guard._raise = False
        guard._keep_corrupt = keep_corrupt
        guard._clock = clock
        guard._path, guard._retention, guard._lock_timeout = path, retention, lock_timeout
        guard._models = {}
        guard.writer = 0
        guard._unlogged = guard._unlogged_since_failure = guard._lost_windows = guard._lost_events = 0
        guard._replaced = 0
        guard._gate = threading.RLock()
        guard._reopen_pending = True
        guard._id_high = guard._seq_high = 0
        guard._windows, guard._events = deque(), deque()
        guard._error, guard._since, guard._backoff = None, None, _FIRST_BACKOFF
        guard._fail(error, clock())
        return guard

    @property
    def database_id(self) -> str:
        """The id of the database being written (a replacement has a new one); empty before one opens."""
        return self.store.database_id if self.store is not None else ""

    def model_id(self, name: str, version: str, sha256: str) -> int | None:
        """The model's id in the current database (registered on first use), None while it fails."""
        key = (name, version, sha256)
        known = self._models.get(key)
        if known is not None:
            return known
        found: int | None = self._attempt(lambda store: store.register_model(name, version, sha256))
        if found is not None:
            self._models[key] = found
        return found

    def reserve_request_ids(self, n: int) -> int | None:
        """The first of ``n`` fresh request ids, or None while the database fails."""
        first: int | None = self._attempt(lambda store: store.reserve_request_ids(n))
        if first is not None:
            self._id_high = max(self._id_high, first + n)
        return first

    def extend_request_ids(self, end: int, n: int) -> bool:
        """Extend the writer's range ending at ``end`` by ``n`` ids; False when another writer came after."""
        extended = bool(self._attempt(lambda store: store.extend_request_ids(end, n), default=False))
        if extended:
            self._id_high = max(self._id_high, end + n)
        return extended

    def allocate_window_seq(self) -> int | None:
        """A fresh window sequence number, or None while the database fails (one is given at save)."""
        seq: int | None = self._attempt(lambda store: store.allocate_window_seq())
        if seq is not None:
            self._seq_high = max(self._seq_high, seq + 1)
        return seq

    # --------------------------------------------------------------- writes
    def append_decisions(self, block: DecisionBlock | None, model: tuple[str, str, str],
                         features: Sequence[tuple[int, str]], snapshot: dict[str, Any] | None) -> bool:
        """Write a block of decisions (and the open-window snapshot); False when it was not written."""
        def write(store: MonitorStore) -> None:
            model_id = self.model_id(*model)
            if model_id is None:
                raise _Skipped()
            written = dataclasses.replace(block, model_id=model_id) if block is not None else None
            # Windows waiting (closed just before, or while the database failed) ride along.
            pending = list(self._windows)
            store.append_decisions(written, features, snapshot, writer=self.writer, windows=pending)
            self._written_windows(len(pending))
            if snapshot is not None and snapshot.get("seq") is not None:  # numbered in that write, maybe
                self._seq_high = max(self._seq_high, int(snapshot["seq"]) + 1)

        done: bool = self._attempt(write, default=False, result=True)
        if not done and block is not None:
            self.count_unlogged(len(block))
        return done

    def count_unlogged(self, n: int) -> None:
        """Count decisions served but not logged (also those that got no request id)."""
        self._unlogged += n
        self._unlogged_since_failure += n

    def save_window(self, record: dict[str, Any], results: list[dict[str, Any]] | StoredVerdicts | None,
                    events: list[dict[str, Any]]) -> bool:
        """Write a closed window, or keep it in memory until the database comes back (then it is
        written with the next decisions, or by itself)."""
        self._windows.append((record, results, events))
        while len(self._windows) > _PENDING_WINDOWS:
            self._windows.popleft()
            self._lost_windows += 1
        return bool(self._attempt(self._write_pending, default=False, result=True))

    def _written_windows(self, n: int) -> None:
        """The ``n`` oldest waiting windows were written: drop them, and keep their numbers' high mark."""
        for _ in range(n):
            record, _, _ = self._windows.popleft()
            self._seq_high = max(self._seq_high, int(record["seq"]) + 1)

    def add_event(self, kind: str, name: str, status: str, message: str, window_seq: int | None) -> None:
        """Record an event now, or keep it until the database comes back."""
        self._events.append((self._clock(), kind, name, status, message, window_seq))
        while len(self._events) > _PENDING_EVENTS:
            self._events.popleft()
            self._lost_events += 1
        self._attempt(self._write_pending)

    def enforce_retention(self) -> None:
        """Apply the retention bounds (skipped while the database fails)."""
        self._attempt(lambda store: store.enforce_retention())

    def health(self) -> MonitorHealth:
        """What monitoring could not write, and whether it can now."""
        return MonitorHealth(state="degraded" if self._error is not None else "ok",
                             error=str(self._error) if self._error is not None else None, since=self._since,
                             unlogged_decisions=self._unlogged, lost_windows=self._lost_windows,
                             lost_events=self._lost_events, pending_windows=len(self._windows),
                             pending_events=len(self._events), replaced_databases=self._replaced)

    def close(self, unused_ids: tuple[int, int] | None = None) -> None:
        """Write what waits (one last try), mark the writer closed and close the database.

        ``unused_ids`` (first, end) of the writer's reserved request ids are given
        back when no other writer reserved after them. The database is closed
        whatever happens; with ``on_error = "raise"`` a failure is raised after.
        """
        with self._gate:
            self._close(unused_ids)

    def _close(self, unused_ids: tuple[int, int] | None) -> None:
        failure: StoreError | None = None
        try:
            self._retry_at = 0.0
            self._attempt(self._write_pending)
            if self._error is None:
                self._attempt(lambda store: store.close_writer(self.writer, unused_ids))
        except StoreError as exc:
            failure = exc
        try:
            if self.store is not None:
                self.store.close()
        except StoreError as exc:
            failure = failure or exc
        if failure is not None and self._raise:
            raise failure

    # ------------------------------------------------------------ internals
    def _write_pending(self, store: MonitorStore) -> None:
        """Write the windows and events that waited, oldest first (each removed once written)."""
        while self._windows:
            record, results, events = self._windows[0]
            # A window not numbered yet (opened while the database failed, or never
            # snapshotted) is numbered in its own write transaction.
            store.save_window(record, results, events, writer=self.writer)
            self._written_windows(1)
        while self._events:
            ts, kind, name, status, message, window_seq = self._events[0]
            store.add_event(kind, name, status, message, window_seq, ts=ts)
            self._events.popleft()

    def _attempt(self, action: Callable[[MonitorStore], T], *, default: Any = None,
                 result: Any = None) -> Any:
        """Run a write; on failure degrade (or raise). Returns ``result`` (or the action's value) or ``default``."""
        # The caller's thread (reserving ids) and the monitor's worker (writing a batch)
        # may both reach here: one SQLite connection is used by one thread at a time.
        with self._gate:
            return self._attempt_locked(action, default, result)

    def _attempt_locked(self, action: Callable[[MonitorStore], T], default: Any, result: Any) -> Any:
        now = self._clock()
        if self._error is not None and now < self._retry_at:
            return default
        if not self._reopen_pending and self.store is not None and self.store.vanished():
            # Writes to a deleted file succeed and go nowhere: start a fresh one first.
            self._replace("the database file vanished or was replaced", move=False)
            if self._reopen_pending:
                return default
        try:
            if self._reopen_pending:
                self._open_fresh()
            assert self.store is not None  # opened above, or this attempt raised
            value = action(self.store)
        except _Skipped:
            return default
        except StoreCorruptError as exc:
            if self._raise:
                raise
            self._replace(f"the database was corrupt ({exc})", move=True)
            return default
        except StoreError as exc:
            if self._raise:
                raise
            self._fail(exc, self._clock())  # the backoff runs from the failure, not the attempt's start
            return default
        if self._error is not None:
            self._recover(now)
        return value if result is None else result

    def _fail(self, exc: StoreError, now: float) -> None:
        if self._error is None:
            self._since = now
            self._unlogged_since_failure = 0
            self._backoff = _FIRST_BACKOFF
        else:
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
        self._error = exc
        self._retry_at = now + self._backoff

    def _recover(self, now: float) -> None:
        error, since = self._error, self._since or now
        self._error, self._since, self._backoff = None, None, _FIRST_BACKOFF
        message = (f"monitoring writes failed for {now - since:.0f} s and work again; "
                   f"{self._unlogged_since_failure} decisions could not be logged ({error})")
        self._events.append((now, "monitoring", "recovered", "ok", message, None))
        self._attempt(self._write_pending)

    def _replace(self, reason: str, *, move: bool) -> None:
        """Start a fresh database at the same path, after moving a corrupted one aside."""
        try:
            if self.store is not None:
                self.store.close()
        except StoreError:
            pass  # it is being replaced: its last checkpoint does not matter
        moved = f"; moved to {move_aside(self._path, self._keep_corrupt).name}" if move else ""
        self._reopen_pending = True
        self._replaced += 1
        self._events.append((self._clock(), "monitoring", "replaced", "warn", f"{reason}{moved}", None))
        self._retry_at = 0.0
        self._attempt(self._write_pending)

    def _open_fresh(self) -> None:
        """Open the replacement database; raises StoreError (and is retried later) when it cannot."""
        self.store = MonitorStore(self._path, self._retention, clock=self._clock, lock_timeout=self._lock_timeout)
        self._reopen_pending = False
        self._models.clear()
        self.store.raise_counters(self._id_high, self._seq_high)
        self.writer = self.store.register_writer()
        self._events.append((self._clock(), "monitoring", "fresh", "ok",
                             f"started a fresh database {self.store.database_id}", None))


def move_aside(path: Path, keep: int) -> Path:
    """Move a damaged database (with its -wal and -shm) to ``<name>.corrupt-<UTC time>``; keep ``keep`` copies.

    Returns the new path of the database file.
    """
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{target}{suffix}")
    stamps = sorted({p.name[len(path.name) + len(".corrupt-"):].split("-")[0] for p in corrupt_copies(path)})
    for old in stamps[: max(0, len(stamps) - keep)]:
        for copy in path.parent.glob(f"{path.name}.corrupt-{old}*"):
            copy.unlink(missing_ok=True)
    return target


def open_store(path: Path, retention: RetentionPolicy, *, clock: Callable[[], float],
               lock_timeout: float, keep_corrupt: int | None = None,
               on_error: str = "degrade") -> tuple[MonitorStore, str | None]:
    """Open a monitoring database for writing; a corrupted one is moved aside and a fresh one started.

    Returns
    -------
    (MonitorStore, str or None)
        The store, and a sentence saying what was replaced, if anything.

    Raises
    ------
    StoreError
        The database cannot be opened for another reason (a lock held past the
        timeout, a full disk, a read-only folder).
    """
    try:
        return MonitorStore(path, retention, clock=clock, lock_timeout=lock_timeout), None
    except StoreCorruptError as exc:
        if on_error == "raise":
            raise
        moved = move_aside(path, retention.keep_corrupt if keep_corrupt is None else keep_corrupt)
        store = MonitorStore(path, retention, clock=clock, lock_timeout=lock_timeout)
        return store, (f"the database was corrupt ({exc}); moved to {moved.name}; started a fresh database "
                       f"{store.database_id}")
