"""The fleet store for fleets larger than one machine: PostgreSQL through psycopg 3.

Several collector processes run stateless in front of one database. Nothing is
decided by a read-then-write: a window is stored by ``INSERT ... ON CONFLICT DO
NOTHING`` against the UNIQUE constraint on its idempotency key, so two collectors
receiving the same window store it once. The parts of a split window are gathered
under a transaction-scoped advisory lock on their key, so the process that receives
the last missing part sees every other one.

The base buckets (:mod:`collector.stores.bucketing`) are written by
:meth:`PostgresFleetStore.fold_buckets` (and :meth:`~PostgresFleetStore.insert_window`):
each bucket row is locked (``SELECT ... FOR UPDATE``) before its profile is read, merged
and written back, so two collectors writing one bucket at once serialize on it and
neither loses the other's merge; buckets are taken by key, so two writes do not wait on
each other in a cycle. Within a batch (:meth:`PostgresFleetStore.record_arrivals`) rows
are written device by device, for the same reason.

Each store holds one connection (a collector process is one store); a broken
connection is replaced on the next call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

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

__all__ = ["PostgresFleetStore"]

SCHEMA_VERSION = 4  # 2: base_buckets; 3: windows.bucketed; 4: windows.signals
_T = TypeVar("_T")
# pg_advisory_xact_lock key under which the schema is created: two processes starting
# at once would otherwise race on CREATE TABLE IF NOT EXISTS (a duplicate pg_type row).
_SCHEMA_LOCK = 0x65646765  # "edge"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collector_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    added_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION,
    removed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS models (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    reference_profile BYTEA NOT NULL,
    manifest TEXT NOT NULL,
    added_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id TEXT NOT NULL,
    database_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    seq_first BIGINT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    seq_last BIGINT NOT NULL,
    opened_at DOUBLE PRECISION NOT NULL,
    closed_at DOUBLE PRECISION NOT NULL,
    corrected_closed_at DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    "rows" BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    partial BOOLEAN NOT NULL,
    quality TEXT NOT NULL,
    latency TEXT,
    budget TEXT,
    verdicts TEXT NOT NULL,
    profile BYTEA NOT NULL,
    losses TEXT NOT NULL,
    outbox_depth BIGINT NOT NULL,
    boot_id TEXT NOT NULL,
    drift_count INTEGER NOT NULL,
    bucketed BOOLEAN NOT NULL DEFAULT TRUE,
    signals TEXT NOT NULL DEFAULT '{}',
    CONSTRAINT windows_idempotency_key UNIQUE (device_id, database_id, model_sha256, seq_first)
);
-- Schema 3: the windows of an older store are all in their buckets (the default).
ALTER TABLE windows ADD COLUMN IF NOT EXISTS bucketed BOOLEAN NOT NULL DEFAULT TRUE;
CREATE INDEX IF NOT EXISTS windows_unbucketed ON windows (received_at) WHERE NOT bucketed;
CREATE INDEX IF NOT EXISTS windows_by_time ON windows (corrected_closed_at, device_id, database_id, model_sha256, seq_first);
CREATE INDEX IF NOT EXISTS windows_by_model ON windows (model_sha256, corrected_closed_at, device_id, database_id, seq_first);
CREATE INDEX IF NOT EXISTS windows_by_device ON windows (device_id, corrected_closed_at, database_id, model_sha256, seq_first);
CREATE INDEX IF NOT EXISTS windows_by_arrival ON windows (received_at);
CREATE TABLE IF NOT EXISTS pending_parts (
    device_id TEXT NOT NULL,
    database_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    seq_first BIGINT NOT NULL,
    document_sha256 TEXT NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    message BYTEA NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (device_id, database_id, model_sha256, seq_first, document_sha256, part)
);
CREATE TABLE IF NOT EXISTS clock_offsets (
    device_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    clock_offset DOUBLE PRECISION NOT NULL,
    skew DOUBLE PRECISION NOT NULL,
    samples BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (device_id, boot_id)
);
CREATE TABLE IF NOT EXISTS base_buckets (
    model_sha256 TEXT NOT NULL,
    start DOUBLE PRECISION NOT NULL,
    profile BYTEA NOT NULL,
    window_count BIGINT NOT NULL,
    PRIMARY KEY (model_sha256, start)
);
CREATE TABLE IF NOT EXISTS rejections (
    reason TEXT NOT NULL,
    device_id TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (reason, device_id)
);
"""


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _marks(names: tuple[str, ...]) -> str:
    return ", ".join(["%s"] * len(names))


_WINDOW_SELECT = f"SELECT {_columns(WINDOW_COLUMNS)} FROM windows"
_LIGHT_SELECT = f"SELECT {_columns(LIGHT_WINDOW_COLUMNS)} FROM windows"
_INSERT_WINDOW = (f"INSERT INTO windows ({_columns(WINDOW_COLUMNS)}, bucketed) VALUES ({_marks(WINDOW_COLUMNS)}, %s) "
                  "ON CONFLICT ON CONSTRAINT windows_idempotency_key DO NOTHING RETURNING id")
# windows() order: a total order (the idempotency key after the time), and its page size.
_ORDER = "corrected_closed_at, device_id, database_id, model_sha256, seq_first"
_PAGE = 256
_LIGHT_PAGE = 4096  # a light window is a few hundred bytes
_KEY_WHERE = "device_id = %s AND database_id = %s AND model_sha256 = %s AND seq_first = %s"


def _key_args(key: WindowKey) -> tuple[Any, ...]:
    return (key.device_id, key.database_id, key.model_sha256, key.seq_first)


def _upgrade(cur: psycopg.Cursor[Any], version: int) -> None:
    """Bring the tables of an older schema up to date (in the opening transaction, under its lock).

    4: the windows' ``signals`` column, backfilled from their verdicts page by page.
    """
    if version < 4:
        cur.execute("ALTER TABLE windows ADD COLUMN IF NOT EXISTS signals TEXT NOT NULL DEFAULT '{}'")
        after = 0
        while True:
            cur.execute("SELECT id, verdicts FROM windows WHERE id > %s ORDER BY id LIMIT %s", (after, _PAGE))
            page = cur.fetchall()
            if page:
                cur.executemany("UPDATE windows SET signals = %s WHERE id = %s",
                                [(signals_text(verdicts), id_) for id_, verdicts in page])
            if len(page) < _PAGE:
                return
            after = page[-1][0]


def _redacted(url: str) -> str:
    """The URL without its password (``user:password@`` or ``?password=``), for messages.

    >>> _redacted("postgresql://u:pw@db/fleet?password=pw&sslmode=require")
    'postgresql://u:***@db/fleet?password=***&sslmode=require'
    """
    url, mark, query = url.partition("?")
    if mark:
        query = "&".join(item.split("=", 1)[0] + "=***" if item.split("=", 1)[0].lower() == "password" else item
                         for item in query.split("&"))
    head, at, tail = url.rpartition("@")
    if at and ":" in head.split("//", 1)[-1]:
        scheme, _, user_password = head.partition("//")
        url = f"{scheme}//{user_password.split(':', 1)[0]}:***@{tail}"
    return url + mark + query


def _one_line(exc: BaseException) -> str:
    """libpq's message on one line (it adds lines such as "Is the server running...?")."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


class PostgresFleetStore:
    """A :class:`~collector.stores.base.FleetStore` in a PostgreSQL database.

    Parameters
    ----------
    url : str
        A libpq connection URL, ``postgresql://user@host:port/dbname``. The tables are
        created when absent.
    connect_timeout : float
        Seconds to wait for the server when connecting.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        self._dsn = url
        self.url = _redacted(url)  # shown in messages and logs; the password stays in _dsn
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)
            cur.execute("SELECT max(version) FROM collector_schema")
            row = cur.fetchone()
            version = row[0] if row else None
            if version is None:
                cur.execute("INSERT INTO collector_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            elif version < SCHEMA_VERSION:
                _upgrade(cur, version)
                cur.execute("UPDATE collector_schema SET version = %s", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise FleetStoreError(f"fleet store '{_redacted(url)}' has schema version {version}; this "
                                      f"collector knows up to {SCHEMA_VERSION}")

    # ---------------------------------------------------------------- plumbing
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self._dsn, autocommit=True,
                                             connect_timeout=max(1, int(self._connect_timeout)))
            except psycopg.Error as exc:
                raise FleetStoreError(f"cannot connect to fleet store '{self.url}': {_one_line(exc)}") from exc
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                raise FleetStoreError(f"fleet store '{self.url}': {_one_line(exc)}") from exc

    def _read(self, query: str, args: tuple[Any, ...], convert: Callable[[Any], _T]) -> list[_T]:
        with self._transaction() as cur:
            cur.execute(query, args)
            return [convert(row) for row in cur.fetchall()]

    # ---------------------------------------------------------------- devices
    def add_device(self, device_id: str, public_key: str, *, now: float) -> DeviceRecord:
        with self._transaction() as cur:
            cur.execute("INSERT INTO devices (device_id, public_key, added_at, last_seen, removed) "
                        "VALUES (%s, %s, %s, NULL, FALSE) ON CONFLICT (device_id) DO UPDATE SET "
                        "public_key = excluded.public_key, removed = FALSE", (device_id, public_key, now))
        record = self.device(device_id)
        assert record is not None
        return record

    def remove_device(self, device_id: str) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE devices SET removed = TRUE WHERE device_id = %s", (device_id,))
            if cur.rowcount == 0:
                raise UnknownDeviceError(device_id)

    def device(self, device_id: str) -> DeviceRecord | None:
        found = self._read(f"SELECT {_columns(DEVICE_COLUMNS)} FROM devices WHERE device_id = %s", (device_id,),
                           device_from_row)
        return found[0] if found else None

    def devices(self) -> list[DeviceRecord]:
        return self._read(f"SELECT {_columns(DEVICE_COLUMNS)} FROM devices ORDER BY device_id", (), device_from_row)

    def touch_device(self, device_id: str, seen_at: float) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE devices SET last_seen = greatest(last_seen, %s) WHERE device_id = %s",
                        (seen_at, device_id))

    # ---------------------------------------------------------------- models
    def add_model(self, model: ModelRecord) -> None:
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in MODEL_COLUMNS[1:])
        with self._transaction() as cur:
            cur.execute(f"INSERT INTO models ({_columns(MODEL_COLUMNS)}) VALUES ({_marks(MODEL_COLUMNS)}) "
                        f"ON CONFLICT (sha256) DO UPDATE SET {updates}", model_to_row(model))

    def model(self, sha256: str) -> ModelRecord | None:
        found = self._read(f"SELECT {_columns(MODEL_COLUMNS)} FROM models WHERE sha256 = %s", (sha256,),
                           model_from_row)
        return found[0] if found else None

    def models(self) -> list[ModelRecord]:
        return self._read(f"SELECT {_columns(MODEL_COLUMNS)} FROM models ORDER BY name, version, sha256", (),
                          model_from_row)

    # ---------------------------------------------------------------- windows
    def insert_window(self, window: StoredWindow) -> bool:
        with self._transaction() as cur:
            stored = self._insert(cur, window_to_row(window), window.key, bucketed=True) is not None
            if stored:
                profile = read_profile(window.profile)
                if profile is not None:
                    key = (window.model_sha256, bucket_start(window.corrected_closed_at, BASE_BUCKET_SECONDS))
                    self._merge_into(cur, key, [profile])
        return stored

    def _insert(self, cur: psycopg.Cursor[Any], row: tuple[Any, ...], key: WindowKey, *,
                bucketed: bool, split: bool = True) -> int | None:
        """The new window's id, or None when its key is held already; its held parts deleted
        unless it came whole (``split`` False)."""
        cur.execute(_INSERT_WINDOW, (*row, bucketed))
        found = cur.fetchone()
        if split:
            cur.execute(f"DELETE FROM pending_parts WHERE {_KEY_WHERE}", _key_args(key))
        return None if found is None else int(found[0])

    def _merge_into(self, cur: psycopg.Cursor[Any], key: tuple[str, float], profiles: Sequence[Any],
                    merged: int | None = None) -> None:
        """Merge profiles into one stored base bucket (same transaction); ``merged`` windows counted
        (default: as many as merge).

        The bucket row exists (an empty one is inserted first) and is locked before it is
        read: another collector merging into it waits for this commit, then reads the result.
        """
        cur.execute("INSERT INTO base_buckets (model_sha256, start, profile, window_count) "
                    "VALUES (%s, %s, ''::bytea, 0) ON CONFLICT DO NOTHING", key)
        cur.execute("SELECT profile FROM base_buckets WHERE model_sha256 = %s AND start = %s FOR UPDATE", key)
        row = cur.fetchone()
        data, count = fold_into_bucket(bytes(row[0]) if row and row[0] else None, profiles)
        cur.execute("UPDATE base_buckets SET profile = %s, window_count = window_count + %s "
                    "WHERE model_sha256 = %s AND start = %s", (data, count if merged is None else merged, *key))

    def fold_buckets(self, folds: Sequence[BucketFold], *, orphans_before: float | None = None) -> int:
        folded = 0
        with self._transaction() as cur:
            # Buckets by key: two collectors' writes lock them in one order.
            for fold in sorted(folds, key=lambda f: (f.model_sha256, f.start)):
                cur.execute("SAVEPOINT fold")
                cur.execute("UPDATE windows SET bucketed = TRUE WHERE NOT bucketed AND id = ANY(%s)",
                            (list(fold.window_ids),))
                if cur.rowcount == len(fold.window_ids):
                    if fold.profile is not None:
                        self._merge_into(cur, (fold.model_sha256, fold.start), [fold.profile], fold.merged)
                    cur.execute("RELEASE SAVEPOINT fold")
                    folded += len(fold.window_ids)
                else:  # some were folded elsewhere: the others from their rows, not this merge
                    cur.execute("ROLLBACK TO SAVEPOINT fold")
                    cur.execute("RELEASE SAVEPOINT fold")
                    folded += self._fold_rows(cur, "id = ANY(%s)", (list(fold.window_ids),))
            if orphans_before is not None:
                folded += self._fold_rows(cur, "received_at < %s", (orphans_before,))
        return folded

    def _fold_rows(self, cur: psycopg.Cursor[Any], where: str, args: tuple[Any, ...]) -> int:
        cur.execute(f"UPDATE windows SET bucketed = TRUE WHERE NOT bucketed AND {where} "
                    "RETURNING model_sha256, corrected_closed_at, profile", args)
        rows = [(str(sha), float(closed), bytes(data)) for sha, closed, data in cur.fetchall()]
        for key, profiles in sorted(group_profiles(rows).items()):
            self._merge_into(cur, key, profiles)
        return len(rows)

    def record_arrivals(self, arrivals: Sequence[Arrival]) -> list[ArrivalOutcome]:
        # Device by device (each device's in order): two collectors' batches lock the devices'
        # and clocks' rows in one order, so they queue instead of deadlocking. (Two batches
        # holding one device's windows in opposite orders could still; PostgreSQL then
        # aborts one, and its senders retry.)
        def order(i: int) -> str:
            return arrivals[i].device_id

        outcomes: dict[int, ArrivalOutcome] = {}
        last_seen: dict[str, float] = {}
        for arrival in arrivals:
            last_seen[arrival.device_id] = max(last_seen.get(arrival.device_id, arrival.received_at),
                                               arrival.received_at)
        with self._transaction() as cur:
            for i in sorted(range(len(arrivals)), key=order):
                arrival = arrivals[i]
                clock = self._observe(cur, arrival.device_id, arrival.boot_id, sent_wall=arrival.sent_wall,
                                      sent_mono=arrival.sent_mono, received_at=arrival.received_at)
                if arrival.device_id in last_seen:  # once per device and batch
                    cur.execute("UPDATE devices SET last_seen = greatest(last_seen, %s) WHERE device_id = %s",
                                (last_seen.pop(arrival.device_id), arrival.device_id))
                window_id, corrected = None, None
                if arrival.window is not None:
                    corrected = clock.correct(arrival.window.closed_at, sent_wall=arrival.sent_wall,
                                              sent_mono=arrival.sent_mono)
                    row = arrival.row or window_to_row(arrival.window)
                    window_id = self._insert(cur, with_corrected_close(row, corrected), arrival.window.key,
                                             bucketed=False, split=arrival.split)
                outcomes[i] = ArrivalOutcome(stored=window_id is not None, clock=clock, corrected_closed_at=corrected,
                                             window_id=window_id)
        return [outcomes[i] for i in range(len(arrivals))]

    def bucket_profiles(self, model_sha256: str | None = None, since: float | None = None,
                        until: float | None = None) -> dict[tuple[str, float], bytes]:
        where, args = ["window_count > 0"], []
        for clause, value in (("model_sha256 = %s", model_sha256), ("start >= %s", since), ("start < %s", until)):
            if value is not None:
                where.append(clause)
                args.append(value)
        query = "SELECT model_sha256, start, profile FROM base_buckets WHERE " + " AND ".join(where)
        # The windows not folded yet, from the same snapshot: a fold between the two reads
        # would otherwise count its windows twice, or not at all.
        loose, loose_args = ["NOT bucketed"], []
        for clause, value in (("model_sha256 = %s", model_sha256),
                              ("corrected_closed_at >= %s", None if since is None else since - BASE_BUCKET_SECONDS),
                              ("corrected_closed_at < %s", None if until is None else until + BASE_BUCKET_SECONDS)):
            if value is not None:
                loose.append(clause)
                loose_args.append(value)
        with self._transaction() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute(query, tuple(args))
            stored = {(str(sha), float(start)): bytes(data) for sha, start, data in cur.fetchall()}
            cur.execute("SELECT model_sha256, corrected_closed_at, profile FROM windows WHERE " + " AND ".join(loose),
                        tuple(loose_args))
            unfolded = [(str(sha), float(closed), bytes(data)) for sha, closed, data in cur.fetchall()]
        return add_unfolded(stored, unfolded, since=since, until=until)

    def has_window(self, key: WindowKey) -> bool:
        return bool(self._read(f"SELECT 1 FROM windows WHERE {_KEY_WHERE}", _key_args(key), lambda row: row))

    def windows(self, model_sha256: str | None = None, since: float | None = None, until: float | None = None,
                *, device_id: str | None = None, with_profile: bool = True) -> Iterator[StoredWindow]:
        where, args = [], []
        for clause, value in (("model_sha256 = %s", model_sha256), ("corrected_closed_at >= %s", since),
                              ("corrected_closed_at < %s", until), ("device_id = %s", device_id)):
            if value is not None:
                where.append(clause)
                args.append(value)
        # Page by the sort key (keyset pagination): each page is one short read, so a long scan
        # neither holds the connection between pages nor loads every window into memory at once.
        after: tuple[Any, ...] = ()
        while True:
            clauses = [*where, f"({_ORDER}) > ({', '.join(['%s'] * 5)})"] if after else where
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
        return self._read("SELECT count(*) FROM windows WHERE device_id = %s", (device_id,),
                          lambda row: int(row[0]))[0]

    # ---------------------------------------------------------------- parts
    def add_part(self, part: PendingPart) -> list[PendingPart]:
        key = part.key
        with self._transaction() as cur:
            # Serializes the writers of one document: under READ COMMITTED, two processes each
            # inserting a different last part would otherwise both see the set incomplete.
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        ("\x1f".join(map(str, (*_key_args(key), part.document_sha256))),))
            cur.execute(f"INSERT INTO pending_parts ({_columns(PART_COLUMNS)}) VALUES ({_marks(PART_COLUMNS)}) "
                        "ON CONFLICT DO NOTHING", part_to_row(part))
            cur.execute(f"SELECT {_columns(PART_COLUMNS)} FROM pending_parts WHERE {_KEY_WHERE} "
                        "AND document_sha256 = %s ORDER BY part", (*_key_args(key), part.document_sha256))
            rows = cur.fetchall()
        return [part_from_row(row) for row in rows]

    # ---------------------------------------------------------------- clocks
    def observe_clock(self, device_id: str, boot_id: str, *, sent_wall: float, sent_mono: float,
                      received_at: float) -> ClockOffset:
        with self._transaction() as cur:
            return self._observe(cur, device_id, boot_id, sent_wall=sent_wall, sent_mono=sent_mono,
                                 received_at=received_at)

    def _observe(self, cur: psycopg.Cursor[Any], device_id: str, boot_id: str, *, sent_wall: float,
                 sent_mono: float, received_at: float) -> ClockOffset:
        offset = received_at - sent_mono
        # One statement: the SET expressions all read the row as it was, so the skew is taken
        # against the new offset, least(old, this message's).
        cur.execute("INSERT INTO clock_offsets AS c (device_id, boot_id, clock_offset, skew, samples, updated_at) "
                    "VALUES (%s, %s, %s, %s, 1, %s) ON CONFLICT (device_id, boot_id) DO UPDATE SET "
                    "clock_offset = least(c.clock_offset, excluded.clock_offset), samples = c.samples + 1, "
                    "updated_at = greatest(c.updated_at, excluded.updated_at), "
                    "skew = %s - (%s + least(c.clock_offset, excluded.clock_offset)) "
                    f"RETURNING {_columns(CLOCK_COLUMNS)}",
                    (device_id, boot_id, offset, sent_wall - (sent_mono + offset), received_at, sent_wall, sent_mono))
        row = cur.fetchone()
        assert row is not None  # inserted or updated: RETURNING gives the row either way
        return clock_from_row(row)

    def clock_offsets(self, device_id: str | None = None) -> list[ClockOffset]:
        query = f"SELECT {_columns(CLOCK_COLUMNS)} FROM clock_offsets"
        args: tuple[Any, ...] = ()
        if device_id is not None:
            query += " WHERE device_id = %s"
            args = (device_id,)
        return self._read(query + " ORDER BY updated_at, device_id, boot_id", args, clock_from_row)

    # ---------------------------------------------------------------- rejections
    def count_rejection(self, reason: str, device_id: str | None = None) -> None:
        with self._transaction() as cur:
            cur.execute("INSERT INTO rejections AS r (reason, device_id, count) VALUES (%s, %s, 1) "
                        "ON CONFLICT (reason, device_id) DO UPDATE SET count = r.count + 1",
                        (reason, device_id or ""))

    def rejections(self) -> Mapping[str, int]:
        rows = self._read("SELECT reason, sum(count) FROM rejections GROUP BY reason ORDER BY reason", (),
                          lambda row: (str(row[0]), int(row[1])))
        return dict(rows)

    # ---------------------------------------------------------------- upkeep
    def enforce_retention(self, policy: FleetRetention, *, now: float) -> int:
        deleted = 0
        with self._transaction() as cur:
            if policy.max_age_seconds is not None:
                cur.execute("DELETE FROM windows WHERE received_at < %s", (now - policy.max_age_seconds,))
                deleted += cur.rowcount
            if policy.max_windows is not None:
                cur.execute("DELETE FROM windows WHERE id <= (SELECT id FROM windows ORDER BY id DESC "
                            "LIMIT 1 OFFSET %s)", (policy.max_windows,))
                deleted += cur.rowcount
            cur.execute("DELETE FROM pending_parts WHERE received_at < %s", (now - policy.pending_max_age_seconds,))
            if deleted:  # a base bucket goes with the last of its windows
                cur.execute("DELETE FROM base_buckets b WHERE NOT EXISTS (SELECT 1 FROM windows w WHERE "
                            "w.model_sha256 = b.model_sha256 AND w.corrected_closed_at >= b.start "
                            "AND w.corrected_closed_at < b.start + %s)", (BASE_BUCKET_SECONDS,))
        return deleted

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
