"""The monitoring database: the only module that talks SQL.

One SQLite file per device holds the decision log, the closed monitoring
windows (with their sketches as portable bytes), per-feature drift results and
events. It runs in WAL mode with ``synchronous=NORMAL``: a committed batch
survives a crash of the process (kill -9); a power cut may lose the last
committed batches. Writes come in batches, one transaction each.

Examples
--------
>>> import tempfile, pathlib
>>> from edge_runtime.config import RetentionPolicy
>>> from edge_runtime.monitoring.store import MonitorStore
>>> store = MonitorStore(pathlib.Path(tempfile.mkdtemp()) / "m.db", RetentionPolicy())
>>> import numpy as np
>>> from edge_runtime.monitoring.decision_log import DecisionBlock
>>> model_id = store.register_model("m", "1", "00")
>>> block = DecisionBlock(ids=np.array([1, 2]), ts=np.array([1.7e9, 1.7e9 + 1]), model_id=model_id,
...                       latency_us=np.array([5.5, 6.0]), codes=np.array([1, 0]), vocabulary=("no", "yes"),
...                       scores=np.array([0.9, 0.8]), hashes=np.array([0xab12, 7]))
>>> store.append_decisions(block)
>>> [(row["request_id"], row["model"], row["prediction"], row["input_hash"]) for row in store.tail(5)]
[(1, 'm', 'yes', '000000000000ab12'), (2, 'm', 'no', '0000000000000007')]
>>> store.close()
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from edge_runtime.config import RetentionPolicy
from edge_runtime.errors import (
    EdgeRuntimeError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
)
from edge_runtime.monitoring.decision_log import (
    BLOCK_COLUMNS,
    DecisionBlock,
    expand_block,
)
from edge_runtime.monitoring.migrations import INSERT_BLOCK, INSERT_VERDICTS, migrations
from edge_runtime.monitoring.window_merge import merge_documents, merge_profiles
from edge_runtime.monitoring.windows import (
    StoredVerdicts,
    decode_verdicts,
    encode_verdicts,
)

__all__ = ["MERGE_GROUP", "OUTBOX_LOW_WATER", "OUTBOX_SHARE", "MonitorStore", "corrupt_copies", "store_error"]

_INSERT_FEATURES = "INSERT OR REPLACE INTO decision_features (request_id, features) VALUES (?, ?)"
_SNAPSHOT_COLUMNS = ("id", "writer", "seq", "opened_at", "updated_at", "rows", "rejected", "quality", "latency",
                     "budget")
_REPLACE_SNAPSHOT = (f"INSERT OR REPLACE INTO current_window ({', '.join(_SNAPSHOT_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(_SNAPSHOT_COLUMNS))})")
_LOGGED_LESS_AGAIN = ("SELECT (SELECT value FROM counters WHERE name = 'logged_rows') - "
                      "COALESCE((SELECT rows FROM decision_blocks WHERE first_id = ?), 0)")
_HIGH_WATER = 0.9  # make room when a write would take the files past this share of the budget
_LOW_WATER = 0.75  # ... by deleting down to about this share
_ROW_OVERHEAD = 160  # bytes a window, drift or event row takes besides its blobs and JSON
_BLOCK_OVERHEAD = 200  # bytes a block row takes besides its arrays
_DECISION_BYTES = 32  # bytes per decision in a block: ts 8, latency 4, prediction 4, score 4, hash 8, slack
_DEFAULT_LOCK_TIMEOUT = 1.0  # seconds a writer waits for another's lock before StoreBusyError
# The sync outbox (windows not yet acknowledged by the collector, once the database is enrolled)
# may take this share of the byte budget; past it, the oldest never-sent windows are merged,
# MERGE_GROUP at a time, down to OUTBOX_LOW_WATER; what cannot be merged goes, counted as lost.
OUTBOX_SHARE = 0.5
OUTBOX_LOW_WATER = 0.4
MERGE_GROUP = 4
_MERGES_PER_CALL = 32
# A window saved again keeps its row's attempts: the collector may hold it already.
_INSERT_OUTBOX = ("INSERT INTO outbox (seq_first, seq_last, created_at, bytes, model_sha256) VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT (seq_first) DO UPDATE SET bytes = excluded.bytes")
_OUTBOX_ROW_BYTES = 100  # an outbox row besides the window it points to
_WINDOW_DOCUMENT_COLUMNS = ("model", "version", "model_sha256", "opened_at", "closed_at", "rows", "rejected",
                            "partial", "quality", "latency", "budget")

# SQLite's primary result codes (the low byte of sqlite_errorcode), for the error classes.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26


def _read_only_connection(path: Path, lock_timeout: float) -> sqlite3.Connection:
    """A connection that cannot write; ``immutable`` where even SQLite's shared-memory file cannot
    be made (a read-only mount, where no one writes either)."""
    uri = path.resolve().as_uri()
    try:
        connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False, timeout=lock_timeout,
                                     isolation_level=None)
        connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False, isolation_level=None)


def _check_is_monitoring_database(path: Path) -> None:
    """Refuse, without writing a byte, a file that is not an edge-runtime monitoring database.

    Readers open a database only to read it: an unrelated SQLite file, or an empty
    one, must not come back with the monitoring tables created in it.
    """
    not_ours = StoreError(f"'{path}' is not an edge-runtime monitoring database")
    if path.stat().st_size == 0:
        raise not_ours
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            sets = {row[0] for row in connection.execute("SELECT DISTINCT migration_set FROM _sqlite_migrations")}
        finally:
            connection.close()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            raise not_ours from exc
        raise store_error(exc, path, "open it") from exc
    if migrations.name not in sets:
        raise not_ours


def _check_writable_target(path: Path) -> None:
    """Refuse to write into a file that is not ours: another program's SQLite database, a CSV.

    A damaged monitoring database is ours (it is moved aside and replaced); a file
    that is not SQLite at all, or a SQLite database with tables of another program,
    is never touched.
    """
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\x00":
        raise StoreError(f"'{path}' is not an edge-runtime monitoring database (not a SQLite file); "
                         "refusing to write to it")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            sets = ({row[0] for row in connection.execute("SELECT DISTINCT migration_set FROM _sqlite_migrations")}
                    if "_sqlite_migrations" in tables else set())
        finally:
            connection.close()
    except sqlite3.Error:
        return  # a SQLite file that cannot be read: a damaged database, handled as corrupt when opened
    if tables and migrations.name not in sets:
        raise StoreError(f"'{path}' is not an edge-runtime monitoring database (it holds other tables); "
                         "refusing to write to it")


def corrupt_copies(path: Path) -> list[Path]:
    """The damaged databases moved aside next to ``path`` (``<name>.corrupt-<time>``), oldest first."""
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def store_error(exc: sqlite3.Error, path: Path, action: str) -> StoreError:
    """The StoreError subclass for a sqlite3 error, naming the database and what was being done.

    Examples
    --------
    >>> import sqlite3, pathlib
    >>> err = sqlite3.OperationalError("database or disk is full")
    >>> type(store_error(err, pathlib.Path("m.db"), "write")).__name__
    'StoreFullError'
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    message = f"monitoring database '{path}': cannot {action}: {exc}"
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return StoreCorruptError(message)
    if primary == _SQLITE_FULL or "disk is full" in text or "database or disk is full" in text:
        return StoreFullError(message)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text or "busy" in text:
        return StoreBusyError(message)
    return StoreError(message)



class _WindowGone(LookupError):
    """An outbox row, or the window it points to, is not in the database."""


class MonitorStore:
    """The SQLite file of one device.

    Parameters
    ----------
    path : str or Path
        The database file; created with its folder if missing, migrated in place if old.
    retention : RetentionPolicy
        Bounds applied by :meth:`enforce_retention`.
    clock : callable, optional
        Returns the current Unix time; replaced by a fake clock in tests.
    create : bool
        Create the file when missing; readers pass False and get StoreError instead.
    """

    def __init__(self, path: str | Path, retention: RetentionPolicy | None = None, *,
                 clock: Callable[[], float] = time.time, create: bool = True,
                 lock_timeout: float = _DEFAULT_LOCK_TIMEOUT, read_only: bool = False) -> None:
        self.path = Path(path)
        retention = retention or RetentionPolicy()
        self.retention = retention
        self.clock = clock
        self.lock_timeout = lock_timeout
        self._closed = False
        if not create and not self.path.exists():
            raise StoreError(f"monitoring database '{self.path}' does not exist")
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"monitoring database '{self.path}' is not a file")
        if read_only:
            _check_is_monitoring_database(self.path)
        elif self.path.exists() and self.path.stat().st_size > 0:
            _check_writable_target(self.path)
        self._read_only = read_only
        self._readable: dict[int, bool] = {}  # whether outbox rows' profiles read (merging)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"monitoring database '{self.path}': cannot create its folder: {exc}") from exc
        try:
            # Not bound to the opening thread: the monitor may write a batch's block
            # from its worker thread; it never uses the connection from two at once.
            # ``timeout`` is SQLite's busy timeout: a writer that meets another's lock
            # waits that long, then gets StoreBusyError.
            # isolation_level=None: no implicit BEGIN before a write; every transaction is
            # an explicit one (a forgotten implicit one would block the next BEGIN IMMEDIATE).
            if read_only:
                # Readers never write: not even WAL files or a checkpoint (a full disk or a
                # read-only mount must not stop anyone from reading).
                connection = _read_only_connection(self.path, lock_timeout)
            else:
                connection = sqlite3.connect(str(self.path), check_same_thread=False, timeout=lock_timeout,
                                             isolation_level=None)
            self.db = Database(connection)
        except sqlite3.Error as exc:
            raise store_error(exc, self.path, "open it") from exc
        if read_only:
            self._open_for_reading()
            return
        try:
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Keep the write-ahead log well inside the byte budget: checkpoint
            # early and truncate the file after each checkpoint.
            wal_pages = max(16, min(256, retention.max_bytes // 4096 // 16))
            self.db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
            self.db.execute(f"PRAGMA journal_size_limit={wal_pages * 4096}")
            # Several writers may open a new or old file at once: the first one to take
            # the write lock migrates it, the others then find nothing pending.
            with self._write_transaction():
                migrations.apply(self.db)
            self._page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
            self._corrupt_copies_bytes = sum(p.stat().st_size for p in corrupt_copies(self.path))
            self._used_bound = float(self._used_bytes())
            self.database_id = str(self.db.execute("SELECT database_id FROM database WHERE id = 1").fetchone()[0])
            self._inode = os.stat(self.path).st_ino
        except sqlite3.Error as exc:
            self.db.close()
            raise store_error(exc, self.path, "open it") from exc

    def _open_for_reading(self) -> None:
        try:
            pending = migrations.pending(self.db)
            if pending:
                raise StoreError(f"monitoring database '{self.path}' was written by an older edge-runtime "
                                 f"(it lacks {pending[0].name}); a Runtime opening it upgrades it")
            self._page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
            self._corrupt_copies_bytes = 0
            self._used_bound = 0.0
            self.database_id = str(self.db.execute("SELECT database_id FROM database WHERE id = 1").fetchone()[0])
            self._inode = os.stat(self.path).st_ino
        except sqlite3.Error as exc:
            self.db.close()
            raise store_error(exc, self.path, "read it") from exc
        except StoreError:
            self.db.close()
            raise

    def raise_counters(self, next_request_id: int, next_window_seq: int) -> None:
        """Make the counters hand out nothing below these (a fresh database after a replaced one
        continues the old one's numbering, so no id is given twice)."""
        with self._errors("raise the counters"), self._write_transaction():
            self.db.execute("UPDATE counters SET value = MAX(value, ?) WHERE name = 'next_request_id'",
                            [next_request_id])
            self.db.execute("UPDATE counters SET value = MAX(value, ?) WHERE name = 'next_window_seq'",
                            [next_window_seq])

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: take the write lock first (waiting up to the busy timeout), so that
        what is read inside cannot change before the write (no lost update between writers)."""
        if self.db.conn.in_transaction:  # left open by a failed write: start clean
            self.db.conn.rollback()
        # On the connection itself: sqlite-utils' execute() parses each statement's first
        # keyword (~5 µs), twice a block of decisions.
        self.db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.conn.execute("COMMIT")  # may fail too (busy, full): then roll back below
        except BaseException:
            if self.db.conn.in_transaction:
                self.db.conn.rollback()
            raise

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Raise sqlite3 errors as StoreError subclasses naming the database and the action."""
        try:
            yield
        except sqlite3.Error as exc:
            raise store_error(exc, self.path, action) from exc

    @contextlib.contextmanager
    def transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``) on the connection, for the sync outbox's SQL;
        sqlite3 errors come out as StoreError subclasses naming ``action``."""
        with self._errors(action), self._write_transaction():
            yield self.db.conn

    @contextlib.contextmanager
    def reading(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection, for reads; sqlite3 errors come out as StoreError subclasses naming ``action``."""
        with self._errors(action):
            yield self.db.conn

    def vanished(self) -> bool:
        """True when the file was deleted or replaced since it was opened (writes would go nowhere)."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except OSError:
            return True

    def quick_check(self) -> str:
        """``PRAGMA quick_check``: 'ok', or the first problem found.

        Raises
        ------
        StoreCorruptError
            The file cannot even be read as a database.
        """
        with self._errors("check it"):
            return str(self.db.execute("PRAGMA quick_check(1)").fetchone()[0])

    # -------------------------------------------------------------- writers
    def register_writer(self) -> int:
        """A new writer id for this process's monitor (recorded with its pid and host)."""
        now = self.clock()
        with self._errors("register a writer"), self._write_transaction():
            cursor = self.db.execute("INSERT INTO writers (pid, host, started_at, last_seen) VALUES (?, ?, ?, ?)",
                                     [os.getpid(), socket.gethostname(), now, now])
            return int(cursor.lastrowid or 0)

    def close_writer(self, writer: int, unused_ids: tuple[int, int] | None = None) -> None:
        """Mark a writer closed and drop its open-window snapshot.

        ``unused_ids`` (first, end) is the rest of the writer's last range of request
        ids: given back when no other writer reserved ids after it, so that a single
        writer's ids stay consecutive across restarts.
        """
        with self._errors("close a writer"), self._write_transaction():
            if unused_ids is not None and unused_ids[0] < unused_ids[1]:
                self.db.execute("UPDATE counters SET value = ? WHERE name = 'next_request_id' AND value = ?",
                                [unused_ids[0], unused_ids[1]])
            self.db.execute("UPDATE writers SET closed_at = ?, last_seen = ? WHERE id = ?",
                            [self.clock(), self.clock(), writer])
            self.db.execute("DELETE FROM current_window WHERE id = ?", [writer])

    def writers(self) -> list[dict[str, Any]]:
        """Every writer that ever opened this database, oldest first."""
        with self._errors("read the writers"):
            return list(self.db.query("SELECT * FROM writers ORDER BY id"))

    def reserve_request_ids(self, n: int) -> int:
        """Reserve ``n`` consecutive request ids for one writer; return the first.

        Ids are never handed out twice, across writers and restarts; a writer that
        stops leaves the rest of its range unused.
        """
        with self._errors("reserve request ids"), self._write_transaction():
            first = int(self.db.execute("SELECT value FROM counters WHERE name = 'next_request_id'").fetchone()[0])
            self.db.execute("UPDATE counters SET value = ? WHERE name = 'next_request_id'", [first + n])
        return first

    def extend_request_ids(self, end: int, n: int) -> bool:
        """Extend a writer's range that ends at ``end`` by ``n`` ids, if no other writer reserved after it.

        Keeps one writer's ids consecutive; False means reserve a fresh range instead.
        """
        with self._errors("reserve request ids"), self._write_transaction():
            cursor = self.db.execute("UPDATE counters SET value = ? WHERE name = 'next_request_id' AND value = ?",
                                     [end + n, end])
            return cursor.rowcount == 1

    def allocate_window_seq(self) -> int:
        """The sequence number of a new window (never reused)."""
        with self._errors("number a window"), self._write_transaction():
            return self._take_window_seq()

    def _take_window_seq(self) -> int:
        """Take the next window number; inside a write transaction."""
        seq = int(self.db.conn.execute("SELECT value FROM counters WHERE name = 'next_window_seq'").fetchone()[0])
        self.db.conn.execute("UPDATE counters SET value = ? WHERE name = 'next_window_seq'", [seq + 1])
        return seq

    # --------------------------------------------------------------- writes
    def register_model(self, name: str, version: str, sha256: str) -> int:
        """The id of a model in the ``models`` table, added on first sight."""
        with self._errors("register a model"), self._write_transaction():
            self.db.execute("INSERT OR IGNORE INTO models (name, version, sha256) VALUES (?, ?, ?)",
                            [name, version, sha256])
            row = self.db.execute("SELECT id FROM models WHERE name = ? AND version = ? AND sha256 = ?",
                                  [name, version, sha256]).fetchone()
        return int(row[0])

    def append_decisions(self, block: DecisionBlock | None, features: Sequence[tuple[int, str]] = (),
                         snapshot: dict[str, Any] | None = None, *, writer: int = 1,
                         windows: Sequence[tuple[dict[str, Any], Sequence[dict[str, Any]] | StoredVerdicts | None,
                                                 Sequence[dict[str, Any]]]] = ()) -> None:
        """Insert closed windows (as :meth:`save_window`), a block of decisions, their raw features
        if any, and the writer's open-window snapshot, in one transaction. Writing the same block
        again replaces it.

        The log never holds more than ``max_rows`` decisions: the oldest blocks go in
        the same transaction, before the new one is inserted. Windows that waited
        (the database failed when they closed) ride in the same transaction.
        Windows and a snapshot without a number (``seq`` None) are numbered in
        the transaction, in that order, and their dicts get the numbers.
        """
        if (block is None or not len(block)) and snapshot is None and not windows:
            return
        n = len(block) if block is not None else 0
        prepared = [(*self._prepare_window(window, drift), events) for window, drift, events in windows]
        action = "write decisions" if n or snapshot is not None else "write a window"
        with self._errors(action):
            self._reserve(sum(len(f) for _, f in features) + _DECISION_BYTES * n + _BLOCK_OVERHEAD + 4096
                          + sum(size + _ROW_OVERHEAD * len(events) for _, _, size, events in prepared))
            with self._write_transaction():
                seqs = [self._insert_window(record, verdicts, events, writer, size)
                        for record, verdicts, size, events in prepared]
                if block is not None and n > self.retention.max_rows:
                    # One block larger than the whole log: only its newest decisions fit.
                    block = block.newest(self.retention.max_rows)
                    kept = set(block.ids.tolist())
                    features = [f for f in features if f[0] in kept]
                    n = len(block)
                if block is not None and n:
                    # A block written again (an interrupted flush re-run) replaces itself.
                    # One query for both: the log's row count, less the rows written before.
                    logged = int(self.db.conn.execute(_LOGGED_LESS_AGAIN, [int(block.ids[0])]).fetchone()[0])
                    if logged + n > self.retention.max_rows:
                        logged -= self._delete_oldest_decisions(logged + n - self.retention.max_rows)
                    self.db.conn.execute(INSERT_BLOCK, block.record())
                    self.db.conn.execute("UPDATE counters SET value = ? WHERE name = 'logged_rows'", [logged + n])
                if features:
                    self.db.conn.executemany(_INSERT_FEATURES, features)
                if snapshot is not None:
                    record = dict(snapshot, id=writer, writer=writer)
                    if record.get("seq") is None:  # numbered after the windows written above
                        record["seq"] = self._take_window_seq()
                    for key in ("quality", "latency", "budget"):
                        value = record.get(key)
                        record[key] = value if isinstance(value, str) else json.dumps(value)  # a str is JSON
                    # Raw SQL: sqlite-utils' insert() inspects the table on every call (~0.3 ms).
                    self.db.conn.execute(_REPLACE_SNAPSHOT, [record.get(c) for c in _SNAPSHOT_COLUMNS])
            for (window, _, _), seq in zip(windows, seqs):  # numbered once committed
                window["seq"] = seq
            if snapshot is not None:
                snapshot["seq"] = record["seq"]

    def _counter(self, name: str) -> int:
        return int(self.db.execute("SELECT value FROM counters WHERE name = ?", [name]).fetchone()[0])

    def _set_counter(self, name: str, value: int) -> None:
        self.db.execute("UPDATE counters SET value = ? WHERE name = ?", [value, name])

    def _delete_oldest_decisions(self, at_least: int) -> int:
        """Delete whole blocks, lowest ids first, until ``at_least`` decisions went; return how many."""
        deleted, last_first = 0, None
        for first_id, rows in self.db.execute("SELECT first_id, rows FROM decision_blocks ORDER BY first_id"):
            deleted += rows
            last_first = first_id
            if deleted >= at_least:
                break
        if last_first is None:
            return 0
        return self._delete_decisions_before(last_first + 1)

    def open_windows(self) -> list[dict[str, Any]]:
        """The snapshot of every writer's open window, most recently updated first."""
        with self._errors("read the open windows"):
            rows = list(self.db.query("SELECT * FROM current_window ORDER BY updated_at DESC"))
        for row in rows:
            for key in ("quality", "latency", "budget"):
                row[key] = json.loads(row[key]) if row.get(key) else None
        return rows

    def current_window(self) -> dict[str, Any] | None:
        """The most recently updated open-window snapshot of any writer, if any."""
        rows = self.open_windows()
        return rows[0] if rows else None

    def save_window(self, window: dict[str, Any], drift: Sequence[dict[str, Any]] | StoredVerdicts | None,
                    events: Sequence[dict[str, Any]], *, writer: int = 1) -> None:
        """Persist a closed window with its drift results (rows, or encoded) and events, in one transaction.

        The writer's open-window snapshot is cleared in the same transaction. A window
        without a number (``seq`` None) is numbered in that transaction too, and the
        number is written back into ``window``: a close then commits once, not twice.
        """
        self.append_decisions(None, windows=[(window, drift, events)], writer=writer)

    def _prepare_window(self, window: dict[str, Any], drift: Sequence[dict[str, Any]] | StoredVerdicts | None
                        ) -> tuple[dict[str, Any], tuple[str, bytes, bytes] | None, int]:
        """A window's row with its JSON columns as text, its stored verdicts, and about how many bytes they take."""
        record = dict(window)
        for key in ("quality", "latency", "summary", "budget"):
            value = record.get(key)
            record[key] = value if isinstance(value, str) else json.dumps(value)  # a str is JSON already
        verdicts = ((drift.layout, drift.codes, drift.numbers) if isinstance(drift, StoredVerdicts)
                    else encode_verdicts(drift) if drift else None)
        size = (len(record.get("profile") or b"") + sum(len(part) for part in verdicts or ())
                + len(record["quality"]) + _ROW_OVERHEAD * 2)
        return record, verdicts, size

    def _insert_window(self, record: dict[str, Any], verdicts: tuple[str, bytes, bytes] | None,
                       events: Sequence[dict[str, Any]], writer: int, size: int) -> int:
        """Write a prepared window, its verdicts, events and outbox row; inside a write transaction.
        Returns its number."""
        record["writer"] = writer
        seq = record["seq"]
        if seq is None:
            seq = record["seq"] = self._take_window_seq()
        # Raw SQL: sqlite-utils' insert() inspects the table on every call.
        columns = list(record)
        self.db.conn.execute(f"INSERT OR REPLACE INTO windows ({', '.join(columns)}) "
                             f"VALUES ({', '.join('?' * len(columns))})", [record[c] for c in columns])
        if verdicts is not None:
            self.db.conn.execute(INSERT_VERDICTS, [seq, *verdicts])
        else:  # a window saved again without verdicts has none
            self.db.conn.execute("DELETE FROM window_verdicts WHERE window_seq = ?", [seq])
        if events:
            self.db.conn.executemany(
                "INSERT INTO events (ts, window_seq, kind, name, status, message) VALUES (?, ?, ?, ?, ?, ?)",
                [(e["ts"], seq, e["kind"], e["name"], e["status"], e["message"]) for e in events])
        self.db.conn.execute("DELETE FROM current_window WHERE id = ?", [writer])
        # The sync outbox's row, in the window's own transaction (one crash never splits them).
        # Nothing is encoded here: the payload is built from the window when it is sent.
        self.db.conn.execute(_INSERT_OUTBOX, [seq, seq, self.clock(), size + _OUTBOX_ROW_BYTES,
                                              record.get("model_sha256")])
        return int(seq)

    def add_event(self, kind: str, name: str, status: str, message: str, window_seq: int | None = None, *,
                  ts: float | None = None) -> None:
        """Record one event (e.g. a budget violation), at ``ts`` or now."""
        with self._errors("write an event"), self._write_transaction():
            self.db.execute("INSERT INTO events (ts, window_seq, kind, name, status, message) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [self.clock() if ts is None else ts, window_seq, kind, name, status, message])

    # ---------------------------------------------------------------- reads
    def next_request_id(self) -> int:
        """The first request id not yet handed to any writer."""
        with self._errors("read a counter"):
            return self._counter("next_request_id")

    def next_window_seq(self) -> int:
        """The first window sequence number not yet handed to any writer (numbers are never reused)."""
        with self._errors("read a counter"):
            return self._counter("next_window_seq")

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` most recent decisions, oldest first, each a dict (raw features under ``features``)."""
        with self._errors("read the decision log"):
            if n <= 0:
                return []
            models = self._models()
            blocks, count = [], 0
            for row in self.db.execute(f"SELECT {', '.join(BLOCK_COLUMNS)} FROM decision_blocks "
                                       "ORDER BY first_id DESC"):
                blocks.append(row)
                count += row[2]
                if count >= n:
                    break
            decisions = [d for row in reversed(blocks) for d in expand_block(row, models)][-n:]
            return self._with_features(decisions)

    def decisions(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Every decision with a request id above ``after``, oldest first, block by block."""
        with self._errors("read the decision log"):
            models = self._models()
            cursor = self.db.execute(f"SELECT {', '.join(BLOCK_COLUMNS)} FROM decision_blocks WHERE last_id > ? "
                                     "ORDER BY first_id", [after])
            for row in cursor:
                yield from self._with_features([d for d in expand_block(row, models) if d["request_id"] > after])

    def _models(self) -> dict[int, tuple[str, str]]:
        return {r[0]: (r[1], r[2]) for r in self.db.execute("SELECT id, name, version FROM models")}

    def _with_features(self, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not decisions:
            return decisions
        features = dict(self.db.execute(
            "SELECT request_id, features FROM decision_features WHERE request_id BETWEEN ? AND ?",
            [decisions[0]["request_id"], decisions[-1]["request_id"]]).fetchall())
        for decision in decisions:
            decision["features"] = features.get(decision["request_id"])
        return decisions

    def windows(self, limit: int | None = None, *, with_profile: bool = False) -> list[dict[str, Any]]:
        """Closed windows, oldest first (the last ``limit`` when given), JSON columns parsed."""
        with self._errors("read the windows"):
            columns = "*" if with_profile else ", ".join(
                c for c in self.db.table("windows").columns_dict if c != "profile")
            sql = f"SELECT {columns} FROM windows ORDER BY seq DESC" + (" LIMIT ?" if limit else "")
            rows = list(self.db.query(sql, [limit] if limit else []))[::-1]
            for row in rows:
                for key in ("quality", "latency", "summary", "budget"):
                    row[key] = json.loads(row[key]) if row.get(key) else None
            return rows

    def drift_results(self, window_seq: int | None = None) -> list[dict[str, Any]]:
        """Per-feature drift results, for one window or all, ordered by window."""
        with self._errors("read the drift results"):
            where = "WHERE window_seq = ?" if window_seq is not None else ""
            rows = []
            for seq, layout, codes, numbers in self.db.execute(
                    f"SELECT window_seq, layout, codes, numbers FROM window_verdicts {where} ORDER BY window_seq",
                    [window_seq] if window_seq is not None else []):
                rows += [{"window_seq": seq, **row} for row in decode_verdicts(layout, codes, numbers)]
            return rows

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent events, oldest first."""
        with self._errors("read the events"):
            return list(self.db.query("SELECT * FROM events ORDER BY id DESC LIMIT ?", [limit]))[::-1]

    def decision_count(self) -> int:
        """Rows in the decision log."""
        with self._errors("count decisions"):
            return int(self.db.execute("SELECT COALESCE(SUM(rows), 0) FROM decision_blocks").fetchone()[0])

    def size_bytes(self) -> int:
        """Bytes on disk: the database file plus its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
            except OSError:
                pass
        return total

    def integrity_ok(self) -> bool:
        """True when ``PRAGMA integrity_check`` answers ok."""
        return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # ------------------------------------------------------------ retention
    def enforce_retention(self) -> int:
        """Delete the oldest rows beyond the age and window bounds; return how many decisions went.

        The row bound is kept exactly at every write (:meth:`append_decisions`); here
        decisions go a whole block at a time once its newest decision is past the age
        bound, and windows beyond ``max_windows`` or the age bound go with their
        verdicts and events. Once the database is enrolled for sync, a window still in
        the outbox stays, and an outbox past its share of ``max_bytes`` is merged
        (:data:`OUTBOX_SHARE`).
        """
        policy = self.retention
        deleted = 0
        with self._errors("enforce retention"):
            self._relieve_outbox()
        with self._errors("enforce retention"), self._write_transaction():
            if policy.max_age_days > 0:
                cutoff = self.clock() - policy.max_age_days * 86400
                deleted += self._delete_blocks("ts_last < ?", [cutoff])
                self._delete_windows("closed_at < ?", [cutoff])
            last = self.db.execute("SELECT MAX(seq) FROM windows").fetchone()[0]
            if last is not None and last - policy.max_windows >= 0:
                self._delete_windows("seq <= ?", [last - policy.max_windows])
        return deleted

    def _delete_decisions_before(self, request_id: int) -> int:
        """Delete the blocks that start before ``request_id``, and their features; return their decisions."""
        return self._delete_blocks("first_id < ?", [request_id])

    def _delete_blocks(self, where: str, params: list[Any]) -> int:
        """Delete the blocks matching ``where`` with their raw features; keep the row counter in step."""
        spans = self.db.execute(f"SELECT first_id, last_id, rows FROM decision_blocks WHERE {where}",
                                params).fetchall()
        if not spans:
            return 0
        for first, last, _ in spans:
            self.db.execute("DELETE FROM decision_features WHERE request_id BETWEEN ? AND ?", [first, last])
        self.db.execute(f"DELETE FROM decision_blocks WHERE {where}", params)
        deleted = int(sum(rows for _, _, rows in spans))
        self._set_counter("logged_rows", max(0, self._counter("logged_rows") - deleted))
        return deleted

    def _delete_windows(self, where: str, params: list[Any], *, unsent: bool = False) -> None:
        """Delete the windows matching ``where`` with their verdicts and events.

        Once the database is enrolled for sync, a window still in the outbox stays
        (``unsent`` deletes it anyway: merged into a coarser outbox row). Before,
        outbox rows go with their windows.
        """
        enrolled = self._enrolled()
        if enrolled and not unsent:
            where = f"({where}) AND seq NOT IN (SELECT seq_first FROM outbox)"
        seqs = [r[0] for r in self.db.execute(f"SELECT seq FROM windows WHERE {where}", params)]
        if not seqs:
            return
        marks = ", ".join("?" * len(seqs))
        self.db.execute(f"DELETE FROM window_verdicts WHERE window_seq IN ({marks})", seqs)
        self.db.execute(f"DELETE FROM events WHERE window_seq IN ({marks})", seqs)
        self.db.execute(f"DELETE FROM windows WHERE seq IN ({marks})", seqs)
        if not enrolled:
            self.db.execute(f"DELETE FROM outbox WHERE seq_first IN ({marks})", seqs)

    def _enrolled(self) -> bool:
        """True once a sync run enrolled the database (its windows are then kept until sent)."""
        row = self.db.execute("SELECT enrolled_at FROM sync_state WHERE id = 1").fetchone()
        return row is not None and row[0] is not None

    # ---------------------------------------------------------------- outbox
    def window_document(self, seq_first: int) -> tuple[dict[str, Any], bytes] | None:
        """The document (see :mod:`edge_runtime.monitoring.window_merge`) and profile bytes of an outbox row;
        None when the row or its window is gone.

        A plain row's are read from its window; a merged row carries its own.
        """
        with self._errors("read an outbox window"):
            try:
                return self._window_document(seq_first)
            except _WindowGone:
                return None

    def _window_document(self, seq_first: int) -> tuple[dict[str, Any], bytes]:
        row = self.db.conn.execute("SELECT document, profile FROM outbox WHERE seq_first = ?", [seq_first]).fetchone()
        if row is None:
            raise _WindowGone(seq_first)
        if row[0] is not None:
            return json.loads(row[0]), bytes(row[1] or b"")
        window = self.db.conn.execute(f"SELECT {', '.join(_WINDOW_DOCUMENT_COLUMNS)}, profile FROM windows "
                                      "WHERE seq = ?", [seq_first]).fetchone()
        if window is None:
            raise _WindowGone(seq_first)
        document = dict(zip(_WINDOW_DOCUMENT_COLUMNS, window))
        for key in ("quality", "latency", "budget"):
            document[key] = json.loads(document[key]) if document[key] else None
        document["partial"] = bool(document["partial"])
        stored = self.db.conn.execute("SELECT layout, codes, numbers FROM window_verdicts WHERE window_seq = ?",
                                      [seq_first]).fetchone()
        document["verdicts"] = decode_verdicts(*stored) if stored is not None else []
        return document, bytes(window[-1] or b"")

    def count_loss(self, reason: str, windows: int) -> None:
        """Add ``windows`` windows lost for ``reason``; inside a write transaction."""
        self.db.conn.execute("INSERT INTO sync_losses (reason, windows, updated_at) VALUES (?, ?, ?) "
                             "ON CONFLICT (reason) DO UPDATE SET windows = windows + excluded.windows, "
                             "updated_at = excluded.updated_at", [reason, windows, self.clock()])

    def _outbox_bytes(self) -> int:
        return int(self.db.conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM outbox").fetchone()[0])

    def _relieve_outbox(self) -> None:
        """Keep an enrolled outbox within :data:`OUTBOX_SHARE` of the byte budget.

        Past it, the oldest never-attempted rows are merged (:data:`MERGE_GROUP` at a
        time) down to :data:`OUTBOX_LOW_WATER`; if that is not enough, the oldest rows
        go, counted as lost (``outbox_full``), down to the share.
        """
        budget = self.retention.max_bytes - self._corrupt_copies_bytes
        if not self._enrolled() or self._outbox_bytes() <= OUTBOX_SHARE * budget:
            return
        # Bounded per call (this runs in a writer's path, before a write): each merge takes
        # a few ms, and each frees about three windows, more than a write adds.
        for _ in range(_MERGES_PER_CALL):
            if self._outbox_bytes() <= OUTBOX_LOW_WATER * budget:
                return
            with self._write_transaction():
                if not self._merge_oldest_group():
                    break
        else:
            return  # more merging at the next call: nothing is lost while some can merge
        with self._write_transaction():
            while self._outbox_bytes() > OUTBOX_SHARE * budget:
                row = self.db.conn.execute("SELECT seq_first, windows FROM outbox ORDER BY seq_first "
                                           "LIMIT 1").fetchone()
                if row is None:
                    break
                self.db.conn.execute("DELETE FROM outbox WHERE seq_first = ?", [row[0]])
                self.count_loss("outbox_full", int(row[1]))

    def _merge_oldest_group(self) -> bool:
        """Merge the oldest group of never-attempted outbox rows that can merge; inside a write transaction.

        A group: consecutive sequence numbers (no window between them that is not in
        it: the collector may hold it), one model, never attempted, readable profiles
        (sketches of any strides merge), and rows standing for as many windows each,
        so that windows coarsen in tiers (1, 4, 16, ... windows) rather than the oldest row growing
        without end. The oldest full group of :data:`MERGE_GROUP` rows goes first,
        else the oldest run of two or more. Returns False when there is none.
        """
        rows = self.db.conn.execute("SELECT seq_first, seq_last, windows, attempts, model_sha256 FROM outbox "
                                    "ORDER BY seq_first").fetchall()
        self._readable = {seq: self._readable[seq] for seq, *_ in rows if seq in self._readable}  # rows still here
        group: list[tuple[Any, ...]] = []
        fallback: list[tuple[Any, ...]] = []
        run: list[tuple[Any, ...]] = []
        for seq_first, seq_last, windows, attempts, sha in rows:
            mergeable = not attempts and self._profile_readable(seq_first)
            entry = (seq_first, seq_last, windows, sha)
            last = run[-1] if run else None
            if last is not None and mergeable and seq_first == last[1] + 1 and (sha, windows) == (last[3], last[2]):
                run.append(entry)
            else:
                if len(run) >= 2 and not fallback:
                    fallback = run
                run = [entry] if mergeable else []
            if len(run) == MERGE_GROUP:
                group = run
                break
        if not group:
            group = fallback or (run if len(run) >= 2 else [])
        if not group:
            return False
        stored = [self._window_document(entry[0]) for entry in group]
        merged_profile = merge_profiles([profile for _, profile in stored])
        document = merge_documents([doc for doc, _ in stored], merged_profile)
        profile_bytes = merged_profile.to_bytes()
        text = json.dumps(document)
        seqs = [entry[0] for entry in group]
        marks = ", ".join("?" * len(seqs))
        self.db.conn.execute(f"DELETE FROM outbox WHERE seq_first IN ({marks})", seqs)
        self._delete_windows(f"seq IN ({marks})", seqs, unsent=True)
        self.db.conn.execute(
            "INSERT INTO outbox (seq_first, seq_last, windows, created_at, bytes, model_sha256, model, version, "
            "document, profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [group[0][0], group[-1][1], sum(entry[2] for entry in group), self.clock(),
             len(profile_bytes) + len(text) + _OUTBOX_ROW_BYTES + _ROW_OVERHEAD, document["model_sha256"],
             document["model"], document["version"], text, profile_bytes])
        return True

    def _profile_readable(self, seq_first: int) -> bool:
        """Whether an outbox row's profile can be read, so merged (checked once per row)."""
        if seq_first not in self._readable:
            row = self.db.conn.execute("SELECT COALESCE(o.profile, w.profile) FROM outbox o LEFT JOIN windows w "
                                       "ON w.seq = o.seq_first WHERE o.seq_first = ?", [seq_first]).fetchone()
            try:
                readable = bool(row and row[0]) and merge_profiles([bytes(row[0])]) is not None
            except (ValueError, EdgeRuntimeError):
                readable = False  # never merged: left for the sync run to send as it is
            self._readable[seq_first] = readable
        return self._readable[seq_first]

    def _used_bytes(self) -> int:
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    def _reserve(self, incoming: int) -> None:
        """Make room for a write of about ``incoming`` bytes before it happens.

        A write lands in the write-ahead log first and in the database file at the
        next checkpoint, so it needs its size twice. SQLite does not shrink a file
        on DELETE, it reuses the freed pages: freeing pages before a write keeps
        the files from growing, instead of cutting them back afterwards.
        """
        budget = self.retention.max_bytes - self._corrupt_copies_bytes
        # Two PRAGMA queries cost ~10 µs: between them, count what was written
        # since (an upper bound, as deletes are not subtracted) and query again
        # only when that bound reaches the high-water mark.
        self._used_bound += 2 * incoming
        if self._used_bound <= _HIGH_WATER * budget:
            return
        used = self._used_bytes()
        if used + 2 * incoming > _HIGH_WATER * budget:
            self._shrink_to(max(0.0, _LOW_WATER * budget - 2 * incoming))
            used = self._used_bytes()
        self._used_bound = used + 2 * incoming

    def _shrink_to(self, target: float) -> int:
        """Delete the oldest rows, decisions or windows (whichever are older), until ``target`` bytes are used."""
        deleted = 0
        self._relieve_outbox()
        for _ in range(200):  # each round frees a chunk; bounded in case nothing more can go
            if self._used_bytes() <= target:
                break
            with self._write_transaction():  # reads inside: another writer may be deleting too
                # Windows still in an enrolled outbox are not the retention's to delete.
                kept = " WHERE seq NOT IN (SELECT seq_first FROM outbox)" if self._enrolled() else ""
                oldest_decision = self.db.execute("SELECT MIN(ts_first) FROM decision_blocks").fetchone()[0]
                oldest_window = self.db.execute(f"SELECT MIN(closed_at) FROM windows{kept}").fetchone()[0]
                if oldest_decision is not None and (oldest_window is None or oldest_decision <= oldest_window):
                    blocks = self.db.execute("SELECT COUNT(*) FROM decision_blocks").fetchone()[0]
                    cut = max(1, blocks // 10)
                    first = self.db.execute("SELECT first_id FROM decision_blocks ORDER BY first_id "
                                            "LIMIT 1 OFFSET ?", [cut - 1]).fetchone()[0]
                    deleted += self._delete_decisions_before(first + 1)
                elif oldest_window is not None:
                    first = self.db.execute(f"SELECT MIN(seq) FROM windows{kept}").fetchone()[0]
                    self._delete_windows("seq <= ?", [first])
                else:
                    break
        return deleted

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Checkpoint the write-ahead log and close the connection; closing twice is harmless.

        The connection is closed even when the checkpoint fails (a full disk); the
        failure is raised after, as a StoreError.
        """
        if self._closed:
            return
        self._closed = True
        failure: sqlite3.Error | None = None
        if self._read_only:
            self.db.close()
            return
        try:
            # PASSIVE: other writers may be busy; TRUNCATE would hold the write lock
            # until every reader moved on (and other writers' timeouts run meanwhile).
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            failure = exc
        finally:
            self.db.close()
        if failure is not None:
            raise store_error(failure, self.path, "checkpoint its write-ahead log") from failure
