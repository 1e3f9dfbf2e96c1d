"""The default fleet store: one SQLite file (``sqlite:///path/fleet.db``), embedded, nothing to start.

The file is in WAL mode, so the fleet views read while ingest writes. Every write runs
in a ``BEGIN IMMEDIATE`` transaction: SQLite takes its one write lock up front, so two
collector processes on one file serialize instead of failing on a lock upgrade.
Deduplication is the windows table's primary key with ``INSERT ... ON CONFLICT DO NOTHING``.

The file is ``synchronous=FULL``: a commit is on disk when it returns, so a 200 answer
means the window is durable. Ingest commits in groups (:meth:`SQLiteFleetStore.record_arrivals`:
one transaction, one fsync, for every message that arrived meanwhile), which is what
keeps that affordable. The stored windows' profiles reach their base buckets
(:mod:`collector.stores.bucketing`) in a later transaction (:meth:`SQLiteFleetStore.fold_buckets`);
the write lock makes that merge safe from several processes. Reads run on a
connection per thread, so they never wait for a commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from collector.errors import FleetStoreError, UnknownDeviceError
from collector.stores.base import (
    Arrival,
    ArrivalOutcome,
    ClockOffset,
    DeviceRecord,
    FleetRetention,
    ModelRecord,
    PendingPart,
    StoredWindow,
    WindowKey,
)
from collector.stores.bucketing import (
    BASE_BUCKET_SECONDS,
    BucketFold,
    add_unfolded,
    bucket_start,
    fold_into_bucket,
    group_profiles,
    read_profile,
)
from collector.stores.rows import (
    CLOCK_COLUMNS,
    DEVICE_COLUMNS,
    LIGHT_WINDOW_COLUMNS,
    MODEL_COLUMNS,
    PART_COLUMNS,
    WINDOW_COLUMNS,
    clock_from_row,
    device_from_row,
    light_window_from_row,
    model_from_row,
    model_to_row,
    part_from_row,
    part_to_row,
    signals_text,
    window_from_row,
    window_to_row,
    with_corrected_close,
)

__all__ = ["SQLiteFleetStore"]

SCHEMA_VERSION = 4  # 2: base_buckets; 3: windows.bucketed; 4: windows.signals, the big columns last
_T = TypeVar("_T")

# A window's big columns (verdicts, profile: ~65 KB) are last in its row (schema 4): a column
# stored after them is reached only by walking the row's overflow pages, which made the light
# read of 10,000 windows ~0.3 s of SQL (~0.07 s with them last).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    added_at REAL NOT NULL,
    last_seen REAL,
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS models (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    reference_profile BLOB NOT NULL,
    manifest TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    database_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    seq_first INTEGER NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    seq_last INTEGER NOT NULL,
    opened_at REAL NOT NULL,
    closed_at REAL NOT NULL,
    corrected_closed_at REAL NOT NULL,
    received_at REAL NOT NULL,
    "rows" INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    partial INTEGER NOT NULL,
    quality TEXT NOT NULL,
    latency TEXT,
    budget TEXT,
    losses TEXT NOT NULL,
    outbox_depth INTEGER NOT NULL,
    boot_id TEXT NOT NULL,
    drift_count INTEGER NOT NULL,
    bucketed INTEGER NOT NULL DEFAULT 1,
    signals TEXT NOT NULL DEFAULT '{}',
    verdicts TEXT NOT NULL,
    profile BLOB NOT NULL,
    UNIQUE (device_id, database_id, model_sha256, seq_first)
);
CREATE INDEX IF NOT EXISTS windows_by_time ON windows (corrected_closed_at, device_id, database_id, model_sha256, seq_first);
CREATE INDEX IF NOT EXISTS windows_by_model ON windows (model_sha256, corrected_closed_at, device_id, database_id, seq_first);
CREATE INDEX IF NOT EXISTS windows_by_device ON windows (device_id, corrected_closed_at, database_id, model_sha256, seq_first);
CREATE INDEX IF NOT EXISTS windows_by_arrival ON windows (received_at);
CREATE TABLE IF NOT EXISTS pending_parts (
    device_id TEXT NOT NULL,
    database_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    seq_first INTEGER NOT NULL,
    document_sha256 TEXT NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    message BLOB NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (device_id, database_id, model_sha256, seq_first, document_sha256, part)
);
CREATE TABLE IF NOT EXISTS clock_offsets (
    device_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    clock_offset REAL NOT NULL,
    skew REAL NOT NULL,
    samples INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (device_id, boot_id)
);
CREATE TABLE IF NOT EXISTS base_buckets (
    model_sha256 TEXT NOT NULL,
    start REAL NOT NULL,
    profile BLOB NOT NULL,
    window_count INTEGER NOT NULL,
    PRIMARY KEY (model_sha256, start)
);
CREATE TABLE IF NOT EXISTS rejections (
    reason TEXT NOT NULL,
    device_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (reason, device_id)
);
"""


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


_WINDOW_SELECT = f"SELECT {_columns(WINDOW_COLUMNS)} FROM windows"
_LIGHT_SELECT = f"SELECT {_columns(LIGHT_WINDOW_COLUMNS)} FROM windows"
_INSERT_WINDOW = (f"INSERT INTO windows ({_columns(WINDOW_COLUMNS)}, bucketed) "
                  f"VALUES ({', '.join('?' * len(WINDOW_COLUMNS))}, ?) ON CONFLICT DO NOTHING RETURNING id")
# Added by schema 3; the windows of an older store are all in their buckets (the default).
_UPGRADES = ("ALTER TABLE windows ADD COLUMN bucketed INTEGER NOT NULL DEFAULT 1",)
_UNBUCKETED_INDEX = "CREATE INDEX IF NOT EXISTS windows_unbucketed ON windows (received_at) WHERE bucketed = 0"
# windows() order: a total order (the idempotency key after the time), and its page size.
_ORDER = "corrected_closed_at, device_id, database_id, model_sha256, seq_first"
_PAGE = 256
_LIGHT_PAGE = 4096  # a light window is a few hundred bytes
_KEY_WHERE = "device_id = ? AND database_id = ? AND model_sha256 = ? AND seq_first = ?"
_INDEXES = ("windows_by_time", "windows_by_model", "windows_by_device", "windows_by_arrival", "windows_unbucketed")


def _key_args(key: WindowKey) -> tuple[Any, ...]:
    return (key.device_id, key.database_id, key.model_sha256, key.seq_first)


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring the tables of an older schema up to date (in the opening transaction).

    4: the windows table rebuilt, its big columns last (see ``_SCHEMA``), with the
    ``signals`` column filled from the verdicts in the same pass: one copy of every window.
    (Schema 3's ``bucketed`` column is added before.)
    """
    if any(row[1] == "signals" for row in db.execute("PRAGMA table_info(windows)")):
        return
    db.create_function("signals_of", 1, signals_text, deterministic=True)
    db.execute("ALTER TABLE windows RENAME TO windows_schema_3")
    for index in _INDEXES:  # they moved with the table: their names are the new table's
        db.execute(f"DROP INDEX IF EXISTS {index}")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    copied = ("id", *(c for c in WINDOW_COLUMNS if c != "signals"), "bucketed")
    db.execute(f"INSERT INTO windows ({_columns(copied)}, signals) SELECT {_columns(copied)}, signals_of(verdicts) "
               "FROM windows_schema_3")
    db.execute("DROP TABLE windows_schema_3")


class SQLiteFleetStore:
    """A :class:`~collector.stores.base.FleetStore` in one SQLite file.

    Parameters
    ----------
    path : str or Path
        The database file; created with its tables when absent.
    busy_timeout : float
        Seconds to wait for another process's write lock.

    Examples
    --------
    >>> import tempfile
    >>> store = SQLiteFleetStore(tempfile.mkdtemp() + "/fleet.db")
    >>> store.add_device("pump-7", "ed25519:" + "A" * 43 + "=", now=0.0).removed
    False
    >>> store.window_count()
    0
    >>> store.close()
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        # One writing connection shared by the server's worker threads, serialized by a lock
        # (SQLite writes one at a time anyway), and a reading connection per thread: in WAL
        # mode a read never waits for a commit, so ingest's lookups go on while a group of
        # windows is being written and synced.
        self._lock = threading.RLock()
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # Checkpoint every 32 MB of WAL rather than 4: a base bucket rewritten by every batch
            # is copied into the database once per checkpoint, not once per batch.
            self._db.execute("PRAGMA wal_autocheckpoint=8000")
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            with self._write() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise FleetStoreError(f"fleet store '{self.path}' has schema version {version}; this collector "
                                          f"knows up to {SCHEMA_VERSION}")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if "bucketed" not in {row[1] for row in db.execute("PRAGMA table_info(windows)")}:
                    for statement in _UPGRADES:
                        db.execute(statement)
                _upgrade(db)
                db.execute(_UNBUCKETED_INDEX)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise FleetStoreError(f"cannot open fleet store '{self.path}': {exc}") from exc

    # ---------------------------------------------------------------- plumbing
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise FleetStoreError(f"fleet store '{self.path}': {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK")
                    raise FleetStoreError(f"fleet store '{self.path}': {exc}") from exc

    def _reader(self) -> sqlite3.Connection:
        reader: sqlite3.Connection | None = getattr(self._local, "db", None)
        if reader is None:
            with self._lock:
                if self._closed:
                    raise FleetStoreError(f"fleet store '{self.path}' is closed")
                reader = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                         check_same_thread=False)
                reader.execute("PRAGMA query_only=1")
                self._readers.append(reader)
            self._local.db = reader
        return reader

    def _read(self, query: str, args: tuple[Any, ...], convert: Callable[[Any], _T]) -> list[_T]:
        try:
            return [convert(row) for row in self._reader().execute(query, args).fetchall()]
        except sqlite3.Error as exc:
            raise FleetStoreError(f"fleet store '{self.path}': {exc}") from exc

    # ---------------------------------------------------------------- devices
    def add_device(self, device_id: str, public_key: str, *, now: float) -> DeviceRecord:
        with self._write() as db:
            db.execute("INSERT INTO devices (device_id, public_key, added_at, last_seen, removed) "
                       "VALUES (?, ?, ?, NULL, 0) ON CONFLICT (device_id) DO UPDATE SET "
                       "public_key = excluded.public_key, removed = 0", (device_id, public_key, now))
        record = self.device(device_id)
        assert record is not None
        return record

    def remove_device(self, device_id: str) -> None:
        with self._write() as db:
            if db.execute("UPDATE devices SET removed = 1 WHERE device_id = ?", (device_id,)).rowcount == 0:
                raise UnknownDeviceError(device_id)

    def device(self, device_id: str) -> DeviceRecord | None:
        found = self._read(f"SELECT {_columns(DEVICE_COLUMNS)} FROM devices WHERE device_id = ?", (device_id,),
                           device_from_row)
        return found[0] if found else None

    def devices(self) -> list[DeviceRecord]:
        return self._read(f"SELECT {_columns(DEVICE_COLUMNS)} FROM devices ORDER BY device_id", (), device_from_row)

    def touch_device(self, device_id: str, seen_at: float) -> None:
        with self._write() as db:
            db.execute("UPDATE devices SET last_seen = max(coalesce(last_seen, ?), ?) WHERE device_id = ?",
                       (seen_at, seen_at, device_id))

    # ---------------------------------------------------------------- models
    def add_model(self, model: ModelRecord) -> None:
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in MODEL_COLUMNS[1:])
        with self._write() as db:
            db.execute(f"INSERT INTO models ({_columns(MODEL_COLUMNS)}) VALUES ({', '.join('?' * len(MODEL_COLUMNS))}) "
                       f"ON CONFLICT (sha256) DO UPDATE SET {updates}", model_to_row(model))

    def model(self, sha256: str) -> ModelRecord | None:
        found = self._read(f"SELECT {_columns(MODEL_COLUMNS)} FROM models WHERE sha256 = ?", (sha256,),
                           model_from_row)
        return found[0] if found else None

    def models(self) -> list[ModelRecord]:
        return self._read(f"SELECT {_columns(MODEL_COLUMNS)} FROM models ORDER BY name, version, sha256", (),
                          model_from_row)

    # ---------------------------------------------------------------- windows
    def insert_window(self, window: StoredWindow) -> bool:
        with self._write() as db:
            stored = self._insert(db, window_to_row(window), window.key, bucketed=True) is not None
            if stored:
                profile = read_profile(window.profile)
                if profile is not None:
                    key = (window.model_sha256, bucket_start(window.corrected_closed_at, BASE_BUCKET_SECONDS))
                    self._merge_into(db, key, [profile])
        return stored

    def _insert(self, db: sqlite3.Connection, row: tuple[Any, ...], key: WindowKey, *,
                bucketed: bool, split: bool = True) -> int | None:
        """The new window's id, or None when its key is held already; its held parts deleted
        unless it came whole (``split`` False)."""
        found = db.execute(_INSERT_WINDOW, (*row, int(bucketed))).fetchone()
        if split:
            db.execute(f"DELETE FROM pending_parts WHERE {_KEY_WHERE}", _key_args(key))
        return None if found is None else int(found[0])

    def _merge_into(self, db: sqlite3.Connection, key: tuple[str, float], profiles: Sequence[Any],
                    merged: int | None = None) -> None:
        """Merge profiles into one stored base bucket (same transaction); ``merged`` windows counted
        (default: as many as merge)."""
        row = db.execute("SELECT profile FROM base_buckets WHERE model_sha256 = ? AND start = ?", key).fetchone()
        data, count = fold_into_bucket(row[0] if row else None, profiles)
        db.execute("INSERT INTO base_buckets (model_sha256, start, profile, window_count) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (model_sha256, start) DO UPDATE SET profile = excluded.profile, "
                   "window_count = window_count + excluded.window_count",
                   (*key, data, count if merged is None else merged))

    def fold_buckets(self, folds: Sequence[BucketFold], *, orphans_before: float | None = None) -> int:
        folded = 0
        with self._write() as db:
            for fold in sorted(folds, key=lambda f: (f.model_sha256, f.start)):
                marks = ", ".join("?" * len(fold.window_ids))
                db.execute("SAVEPOINT fold")
                claimed = db.execute(f"UPDATE windows SET bucketed = 1 WHERE bucketed = 0 AND id IN ({marks})",
                                     fold.window_ids).rowcount
                if claimed == len(fold.window_ids):
                    if fold.profile is not None:
                        self._merge_into(db, (fold.model_sha256, fold.start), [fold.profile], fold.merged)
                    db.execute("RELEASE fold")
                    folded += claimed
                else:  # some were folded elsewhere: the others from their rows, not this merge
                    db.execute("ROLLBACK TO fold")
                    db.execute("RELEASE fold")
                    folded += self._fold_rows(db, f"id IN ({marks})", fold.window_ids)
            if orphans_before is not None:
                folded += self._fold_rows(db, "received_at < ?", (orphans_before,))
        return folded

    def _fold_rows(self, db: sqlite3.Connection, where: str, args: Sequence[Any]) -> int:
        rows = db.execute(f"UPDATE windows SET bucketed = 1 WHERE bucketed = 0 AND {where} "
                          "RETURNING model_sha256, corrected_closed_at, profile", tuple(args)).fetchall()
        for key, profiles in sorted(group_profiles(rows).items()):
            self._merge_into(db, key, profiles)
        return len(rows)

    def record_arrivals(self, arrivals: Sequence[Arrival]) -> list[ArrivalOutcome]:
        # As few statements as a batch allows: the committing thread takes the GIL back after
        # each one, behind the threads parsing the next messages (measured ~0.25 ms a statement).
        outcomes = []
        seen: dict[str, float] = {}
        with self._write() as db:
            for arrival in arrivals:
                clock = self._observe(db, arrival.device_id, arrival.boot_id, sent_wall=arrival.sent_wall,
                                      sent_mono=arrival.sent_mono, received_at=arrival.received_at)
                seen[arrival.device_id] = max(seen.get(arrival.device_id, arrival.received_at), arrival.received_at)
                window_id, corrected = None, None
                if arrival.window is not None:
                    corrected = clock.correct(arrival.window.closed_at, sent_wall=arrival.sent_wall,
                                              sent_mono=arrival.sent_mono)
                    row = arrival.row or window_to_row(arrival.window)
                    window_id = self._insert(db, with_corrected_close(row, corrected), arrival.window.key,
                                             bucketed=False, split=arrival.split)
                outcomes.append(ArrivalOutcome(stored=window_id is not None, clock=clock,
                                               corrected_closed_at=corrected, window_id=window_id))
            if seen:  # every device of the batch in one statement
                values = ", ".join(["(?, ?)"] * len(seen))
                db.execute(f"UPDATE devices SET last_seen = max(coalesce(last_seen, seen.column2), seen.column2) "
                           f"FROM (VALUES {values}) AS seen WHERE devices.device_id = seen.column1",
                           [value for pair in seen.items() for value in pair])
        return outcomes

    def bucket_profiles(self, model_sha256: str | None = None, since: float | None = None,
                        until: float | None = None) -> dict[tuple[str, float], bytes]:
        where, args = [], []
        for clause, value in (("model_sha256 = ?", model_sha256), ("start >= ?", since), ("start < ?", until)):
            if value is not None:
                where.append(clause)
                args.append(value)
        query = "SELECT model_sha256, start, profile FROM base_buckets" + (
            " WHERE " + " AND ".join(where) if where else "")
        # The windows not folded yet, from the same snapshot: a fold between the two reads
        # would otherwise count its windows twice, or not at all.
        loose, loose_args = ["bucketed = 0"], []
        for clause, value in (("model_sha256 = ?", model_sha256),
                              ("corrected_closed_at >= ?", None if since is None else since - BASE_BUCKET_SECONDS),
                              ("corrected_closed_at < ?", None if until is None else until + BASE_BUCKET_SECONDS)):
            if value is not None:
                loose.append(clause)
                loose_args.append(value)
        reader = self._reader()
        try:
            reader.execute("BEGIN")
            try:
                stored = {(str(sha), float(start)): bytes(data) for sha, start, data in reader.execute(query, args)}
                unfolded = reader.execute("SELECT model_sha256, corrected_closed_at, profile FROM windows WHERE "
                                          + " AND ".join(loose), loose_args).fetchall()
            finally:
                reader.execute("COMMIT")
        except sqlite3.Error as exc:
            raise FleetStoreError(f"fleet store '{self.path}': {exc}") from exc
        return add_unfolded(stored, unfolded, since=since, until=until)

    def has_window(self, key: WindowKey) -> bool:
        return bool(self._read(f"SELECT 1 FROM windows WHERE {_KEY_WHERE}", _key_args(key), lambda row: row))

    def windows(self, model_sha256: str | None = None, since: float | None = None, until: float | None = None,
                *, device_id: str | None = None, with_profile: bool = True) -> Iterator[StoredWindow]:
        where, args = [], []
        for clause, value in (("model_sha256 = ?", model_sha256), ("corrected_closed_at >= ?", since),
                              ("corrected_closed_at < ?", until), ("device_id = ?", device_id)):
            if value is not None:
                where.append(clause)
                args.append(value)
        # Page by the sort key (keyset pagination): each page is one short read, so a long scan
        # neither holds the connection between pages nor loads every window into memory at once.
        after: tuple[Any, ...] = ()
        while True:
            clauses = [*where, f"({_ORDER}) > ({', '.join(['?'] * 5)})"] if after else where
            query = (_WINDOW_SELECT if with_profile else _LIGHT_SELECT) + (
                " WHERE " + " AND ".join(clauses) if clauses else "")
            page = self._read(f"{query} ORDER BY {_ORDER} LIMIT {_PAGE if with_profile else _LIGHT_PAGE}",
                              (*args, *after), window_from_row if with_profile else light_window_from_row)
            yield from page
            if len(page) < (_PAGE if with_profile else _LIGHT_PAGE):
                return
            last = page[-1]
            after = (last.corrected_closed_at, last.device_id, last.database_id, last.model_sha256, last.seq_first)

    def window_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return self._read("SELECT count(*) FROM windows", (), lambda row: int(row[0]))[0]
        return self._read("SELECT count(*) FROM windows WHERE device_id = ?", (device_id,), lambda row: int(row[0]))[0]

    # ---------------------------------------------------------------- parts
    def add_part(self, part: PendingPart) -> list[PendingPart]:
        marks = ", ".join("?" * len(PART_COLUMNS))
        with self._write() as db:
            db.execute(f"INSERT INTO pending_parts ({_columns(PART_COLUMNS)}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                       part_to_row(part))
            rows = db.execute(f"SELECT {_columns(PART_COLUMNS)} FROM pending_parts WHERE {_KEY_WHERE} "
                              "AND document_sha256 = ? ORDER BY part",
                              (*_key_args(part.key), part.document_sha256)).fetchall()
        return [part_from_row(row) for row in rows]

    # ---------------------------------------------------------------- clocks
    def observe_clock(self, device_id: str, boot_id: str, *, sent_wall: float, sent_mono: float,
                      received_at: float) -> ClockOffset:
        with self._write() as db:
            return self._observe(db, device_id, boot_id, sent_wall=sent_wall, sent_mono=sent_mono,
                                 received_at=received_at)

    def _observe(self, db: sqlite3.Connection, device_id: str, boot_id: str, *, sent_wall: float, sent_mono: float,
                 received_at: float) -> ClockOffset:
        offset = received_at - sent_mono
        # One statement: the SET expressions all read the row as it was, so the skew is taken
        # against the new offset, min(old, this message's).
        row = db.execute("INSERT INTO clock_offsets (device_id, boot_id, clock_offset, skew, samples, updated_at) "
                         "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (device_id, boot_id) DO UPDATE SET "
                         "clock_offset = min(clock_offset, excluded.clock_offset), samples = samples + 1, "
                         "updated_at = max(updated_at, excluded.updated_at), "
                         "skew = ? - (? + min(clock_offset, excluded.clock_offset)) "
                         f"RETURNING {_columns(CLOCK_COLUMNS)}",
                         (device_id, boot_id, offset, sent_wall - (sent_mono + offset), received_at,
                          sent_wall, sent_mono)).fetchall()[0]
        return clock_from_row(row)

    def clock_offsets(self, device_id: str | None = None) -> list[ClockOffset]:
        query = f"SELECT {_columns(CLOCK_COLUMNS)} FROM clock_offsets"
        args: tuple[Any, ...] = ()
        if device_id is not None:
            query += " WHERE device_id = ?"
            args = (device_id,)
        return self._read(query + " ORDER BY updated_at, device_id, boot_id", args, clock_from_row)

    # ---------------------------------------------------------------- rejections
    def count_rejection(self, reason: str, device_id: str | None = None) -> None:
        with self._write() as db:
            db.execute("INSERT INTO rejections (reason, device_id, count) VALUES (?, ?, 1) "
                       "ON CONFLICT (reason, device_id) DO UPDATE SET count = count + 1", (reason, device_id or ""))

    def rejections(self) -> Mapping[str, int]:
        rows = self._read("SELECT reason, sum(count) FROM rejections GROUP BY reason ORDER BY reason", (),
                          lambda row: (str(row[0]), int(row[1])))
        return dict(rows)

    # ---------------------------------------------------------------- upkeep
    def enforce_retention(self, policy: FleetRetention, *, now: float) -> int:
        deleted = 0
        with self._write() as db:
            if policy.max_age_seconds is not None:
                deleted += db.execute("DELETE FROM windows WHERE received_at < ?",
                                      (now - policy.max_age_seconds,)).rowcount
            if policy.max_windows is not None:
                # id is the insertion order: the newest max_windows rows stay.
                deleted += db.execute("DELETE FROM windows WHERE id <= (SELECT id FROM windows ORDER BY id DESC "
                                      "LIMIT 1 OFFSET ?)", (policy.max_windows,)).rowcount
            db.execute("DELETE FROM pending_parts WHERE received_at < ?", (now - policy.pending_max_age_seconds,))
            if deleted:  # a base bucket goes with the last of its windows
                db.execute("DELETE FROM base_buckets WHERE NOT EXISTS (SELECT 1 FROM windows w WHERE "
                           "w.model_sha256 = base_buckets.model_sha256 AND w.corrected_closed_at >= base_buckets.start "
                           "AND w.corrected_closed_at < base_buckets.start + ?)", (BASE_BUCKET_SECONDS,))
        return deleted

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            self._db.close()
            self._closed = True
