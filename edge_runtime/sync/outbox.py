"""The sync outbox: what waits to go upstream, what was refused, what was lost, and who may send.

Every closed window gets an outbox row in the transaction that writes it
(:meth:`edge_runtime.monitoring.store.MonitorStore.save_window`); this module
reads those rows for the sync loop and records what became of them. Its tables
(from migration ``m007_sync_outbox``) live in the monitoring database:

- ``outbox``: one row per window, or per merged range of windows, not yet
  acknowledged. ``attempts`` 0 means never sent (only such rows are merged).
- ``outbox_dead``: rows the collector refused for good (dead letters).
- ``sync_losses``: windows that will never reach the collector, by reason.
- ``sync_state``: the device id once enrolled, and how the last runs went.
- ``sync_lease``: one sync loop per database; a lease with an expiry.

Examples
--------
>>> import tempfile, pathlib
>>> from edge_runtime.monitoring.store import MonitorStore
>>> from edge_runtime.sync.outbox import Outbox
>>> store = MonitorStore(pathlib.Path(tempfile.mkdtemp()) / "m.db")
>>> store.save_window({"seq": None, "model": "m", "version": "1", "model_sha256": "ab", "opened_at": 1.0,
...                    "closed_at": 2.0, "rows": 5, "rejected": 0, "quality": {}, "latency": None,
...                    "summary": None, "profile": b"", "partial": 0, "budget": None}, None, [])
>>> outbox = Outbox(store)
>>> [(e.seq_first, e.seq_last, e.attempts) for e in outbox.pending()]
[(0, 0, 0)]
>>> outbox.enroll("dev-1")
>>> outbox.take_lease("me", 60.0), outbox.take_lease("someone else", 60.0)
(True, False)
>>> outbox.mark_sent(outbox.pending()[0], 1234)
>>> outbox.status().outbox_windows, outbox.status().windows_sent
(0, 1)
>>> store.close()
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_runtime.errors import SyncError
from edge_runtime.monitoring.store import MonitorStore

__all__ = ["DeadLetter", "Outbox", "OutboxEntry", "SyncStatus"]

_LEASE = "sync"
_ENTRY_COLUMNS = "seq_first, seq_last, windows, attempts, bytes, created_at"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox row: a window (``seq_first == seq_last``) or a merged range of windows."""

    seq_first: int
    seq_last: int
    windows: int  # windows it stands for (1 unless merged)
    attempts: int  # sends tried; 0: never sent, so it may still be merged
    bytes: int  # about what it takes in the database
    created_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An outbox row the collector refused for good (a 4xx other than authentication)."""

    seq_first: int
    seq_last: int
    windows: int
    dead_at: float
    status: int | None
    detail: str
    attempts: int


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What ``edge-runtime sync status`` shows: the outbox, the last runs, losses and dead letters."""

    device_id: str | None
    enrolled_at: float | None
    outbox_windows: int
    outbox_entries: int
    outbox_bytes: int
    oldest_seq: int | None
    last_attempt_at: float | None
    last_success_at: float | None
    last_error: str | None
    last_error_at: float | None
    consecutive_failures: int
    next_attempt_at: float | None
    windows_sent: int
    bytes_sent: int
    losses: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    recent_dead_letters: tuple[DeadLetter, ...] = ()
    lease_holder: str | None = None
    lease_expires_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["recent_dead_letters"] = [asdict(d) for d in self.recent_dead_letters]
        return out


class Outbox:
    """The sync tables of one monitoring database.

    Parameters
    ----------
    store : MonitorStore
        An open, writable store; its clock stamps every record and times the lease.
    """

    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    @property
    def database_id(self) -> str:
        """The monitoring database's own id (a replaced file has another)."""
        return self.store.database_id

    # ---------------------------------------------------------------- enrolment
    @property
    def device_id(self) -> str | None:
        """The device id this database was enrolled under, or None before its first sync run."""
        with self.store.reading("read the sync state") as db:
            row = db.execute("SELECT device_id FROM sync_state WHERE id = 1").fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def enroll(self, device_id: str) -> None:
        """Record that this database syncs as ``device_id``; from now on its windows are kept until sent.

        Raises
        ------
        SyncError
            The database was enrolled under another device id.
        """
        with self.store.transaction("enroll the database for sync") as db:
            row = db.execute("SELECT device_id FROM sync_state WHERE id = 1").fetchone()
            held = None if row is None else row[0]
            if held is not None and held != device_id:
                raise SyncError(f"monitoring database '{self.store.path}' syncs as device '{held}', "
                                f"not '{device_id}'; a database belongs to one device")
            if held is None:
                db.execute("UPDATE sync_state SET device_id = ?, enrolled_at = ? WHERE id = 1",
                           [device_id, self.store.clock()])

    # ------------------------------------------------------------------ entries
    def pending(self, limit: int = 100) -> list[OutboxEntry]:
        """The oldest ``limit`` outbox rows, oldest first."""
        with self.store.reading("read the outbox") as db:
            rows = db.execute(f"SELECT {_ENTRY_COLUMNS} FROM outbox ORDER BY seq_first LIMIT ?", [limit]).fetchall()
        return [OutboxEntry(*row) for row in rows]

    def document(self, entry: OutboxEntry) -> tuple[dict[str, Any], bytes] | None:
        """The entry's document and profile bytes (read from its window, or carried when merged);
        None when its window is gone."""
        return self.store.window_document(entry.seq_first)

    def mark_attempted(self, entry: OutboxEntry) -> None:
        """Count a send about to be tried, before it is: from then on the row is never merged
        (the collector may hold it even if no answer comes back)."""
        with self.store.transaction("mark an outbox row attempted") as db:
            now = self.store.clock()
            db.execute("UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ? WHERE seq_first = ?",
                       [now, entry.seq_first])
            db.execute("UPDATE sync_state SET last_attempt_at = ? WHERE id = 1", [now])

    def mark_sent(self, entry: OutboxEntry, message_bytes: int) -> None:
        """The collector acknowledged the entry: it leaves the outbox (its window is then retention's)."""
        with self.store.transaction("mark an outbox row sent") as db:
            gone = db.execute("DELETE FROM outbox WHERE seq_first = ?", [entry.seq_first]).rowcount
            if gone:
                db.execute("UPDATE sync_state SET windows_sent = windows_sent + ?, bytes_sent = bytes_sent + ? "
                           "WHERE id = 1", [entry.windows, message_bytes])

    def dead_letter(self, entry: OutboxEntry, status: int | None, detail: str) -> None:
        """Move an entry the collector refused for good to the dead letters, counted as lost
        (``rejected``), so it never blocks the windows behind it."""
        with self.store.transaction("dead-letter an outbox row") as db:
            row = db.execute("SELECT attempts FROM outbox WHERE seq_first = ?", [entry.seq_first]).fetchone()
            if row is None:
                return
            db.execute("DELETE FROM outbox WHERE seq_first = ?", [entry.seq_first])
            db.execute("INSERT INTO outbox_dead (seq_first, seq_last, windows, dead_at, status, detail, attempts) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [entry.seq_first, entry.seq_last, entry.windows, self.store.clock(), status, detail[:2000],
                        int(row[0])])
            self.store.count_loss("rejected", entry.windows)

    def count_loss(self, reason: str, windows: int) -> None:
        """Count ``windows`` windows that will never be sent, for ``reason``."""
        with self.store.transaction("count a loss"):
            self.store.count_loss(reason, windows)

    def drop(self, entry: OutboxEntry, reason: str) -> None:
        """Remove an entry that can never be sent (its window is unreadable), counted as lost for ``reason``."""
        with self.store.transaction("drop an outbox row") as db:
            if db.execute("DELETE FROM outbox WHERE seq_first = ?", [entry.seq_first]).rowcount:
                self.store.count_loss(reason, entry.windows)

    def losses(self) -> dict[str, int]:
        """Windows lost so far on this database, by reason (cumulative)."""
        with self.store.reading("read the losses") as db:
            return {str(r): int(n) for r, n in db.execute("SELECT reason, windows FROM sync_losses ORDER BY reason")}

    def depth(self) -> int:
        """Windows waiting in the outbox (a merged row counts its windows)."""
        with self.store.reading("read the outbox") as db:
            return int(db.execute("SELECT COALESCE(SUM(windows), 0) FROM outbox").fetchone()[0])

    def dead_letters(self, limit: int = 20) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        with self.store.reading("read the dead letters") as db:
            rows = db.execute("SELECT seq_first, seq_last, windows, dead_at, status, detail, attempts "
                              "FROM outbox_dead ORDER BY id DESC LIMIT ?", [limit]).fetchall()
        return [DeadLetter(*row) for row in rows]

    # -------------------------------------------------------------------- runs
    def record_success(self) -> None:
        """A run reached the collector and sent what it could."""
        with self.store.transaction("record a sync run") as db:
            db.execute("UPDATE sync_state SET last_success_at = ?, consecutive_failures = 0, next_attempt_at = NULL "
                       "WHERE id = 1", [self.store.clock()])

    def record_failure(self, error: str, next_attempt_at: float | None = None) -> int:
        """A run stopped on ``error`` (never a private key: a status and a detail). Returns the
        failures in a row, this one included."""
        with self.store.transaction("record a sync run") as db:
            db.execute("UPDATE sync_state SET last_error = ?, last_error_at = ?, next_attempt_at = ?, "
                       "consecutive_failures = consecutive_failures + 1 WHERE id = 1",
                       [error[:2000], self.store.clock(), next_attempt_at])
            return int(db.execute("SELECT consecutive_failures FROM sync_state WHERE id = 1").fetchone()[0])

    def consecutive_failures(self) -> int:
        """Failed runs in a row, as recorded."""
        with self.store.reading("read the sync state") as db:
            return int(db.execute("SELECT consecutive_failures FROM sync_state WHERE id = 1").fetchone()[0] or 0)

    def status(self, recent_dead_letters: int = 10) -> SyncStatus:
        """The outbox, the last runs, losses and dead letters, as of now."""
        with self.store.reading("read the sync status") as db:
            state = db.execute("SELECT device_id, enrolled_at, last_attempt_at, last_success_at, last_error, "
                               "last_error_at, consecutive_failures, next_attempt_at, windows_sent, bytes_sent "
                               "FROM sync_state WHERE id = 1").fetchone()
            windows, entries, size, oldest = db.execute(
                "SELECT COALESCE(SUM(windows), 0), COUNT(*), COALESCE(SUM(bytes), 0), MIN(seq_first) "
                "FROM outbox").fetchone()
            dead = int(db.execute("SELECT COUNT(*) FROM outbox_dead").fetchone()[0])
            lease = db.execute("SELECT holder, expires_at FROM sync_lease WHERE name = ?", [_LEASE]).fetchone()
        (device_id, enrolled_at, last_attempt_at, last_success_at, last_error, last_error_at, failures,
         next_attempt_at, sent, sent_bytes) = state
        return SyncStatus(
            device_id=device_id, enrolled_at=enrolled_at, outbox_windows=int(windows), outbox_entries=int(entries),
            outbox_bytes=int(size), oldest_seq=oldest, last_attempt_at=last_attempt_at,
            last_success_at=last_success_at, last_error=last_error, last_error_at=last_error_at,
            consecutive_failures=int(failures or 0), next_attempt_at=next_attempt_at, windows_sent=int(sent or 0),
            bytes_sent=int(sent_bytes or 0), losses=self.losses(), dead_letters=dead,
            recent_dead_letters=tuple(self.dead_letters(recent_dead_letters)),
            lease_holder=lease[0] if lease else None, lease_expires_at=lease[1] if lease else None)

    # ------------------------------------------------------------------- lease
    def take_lease(self, holder: str, ttl_s: float) -> bool:
        """Take (or renew) the database's sync lease for ``ttl_s`` seconds; False while another holds it.

        Several processes contend safely: the check and the write happen in one
        ``BEGIN IMMEDIATE`` transaction. A holder that died loses the lease when it
        expires, or at once when it was a process of this host that no longer exists.
        """
        with self.store.transaction("take the sync lease") as db:
            now = self.store.clock()
            row = db.execute("SELECT holder, expires_at, pid, host FROM sync_lease WHERE name = ?",
                             [_LEASE]).fetchone()
            if row is not None and row[0] != holder and row[1] > now and not _died(row[2], row[3]):
                return False
            db.execute("INSERT OR REPLACE INTO sync_lease (name, holder, pid, host, taken_at, expires_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", [_LEASE, holder, os.getpid(), socket.gethostname(), now,
                                                     now + ttl_s])
            return True

    def renew_lease(self, holder: str, ttl_s: float) -> bool:
        """Extend ``holder``'s lease by ``ttl_s`` seconds from now; False when it lost the lease
        (it expired and another process took it)."""
        with self.store.transaction("renew the sync lease") as db:
            return bool(db.execute("UPDATE sync_lease SET expires_at = ? WHERE name = ? AND holder = ?",
                                   [self.store.clock() + ttl_s, _LEASE, holder]).rowcount)

    def release_lease(self, holder: str) -> None:
        """Give the lease up, if ``holder`` has it."""
        with self.store.transaction("release the sync lease") as db:
            db.execute("DELETE FROM sync_lease WHERE name = ? AND holder = ?", [_LEASE, holder])

    def lease_holder(self) -> str | None:
        """Who holds an unexpired lease now, if anyone."""
        with self.store.reading("read the sync lease") as db:
            row = db.execute("SELECT holder, expires_at FROM sync_lease WHERE name = ?", [_LEASE]).fetchone()
        return str(row[0]) if row is not None and row[1] > self.store.clock() else None


def _died(pid: int | None, host: str | None) -> bool:
    """True when a lease holder was a process of this host that no longer runs (killed, crashed)."""
    if pid is None or host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists, as another user's
    return False
