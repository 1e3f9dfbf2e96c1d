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
>>> from edge_runtime.store import MonitorStore
>>> store = MonitorStore(pathlib.Path(tempfile.mkdtemp()) / "m.db", RetentionPolicy())
>>> model_id = store.register_model("m", "1", "00")
>>> store.append_decisions([(1, 1700000000.0, model_id, 5.5, "yes", 0.9, 0xab12)])
>>> [(row["model"], row["prediction"], row["input_hash"]) for row in store.tail(5)]
[('m', 'yes', '000000000000ab12')]
>>> store.close()
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from edge_runtime.config import RetentionPolicy
from edge_runtime.errors import StoreError

__all__ = ["DECISION_COLUMNS", "MonitorStore", "StoreError", "migrations"]  # StoreError re-exported for readers

# Seven narrow columns: each bound parameter costs (a 9-column row with the
# model's name, version and a NULL features column took 2.0 µs to insert here,
# these 7 take 1.2 µs). Model identity and raw features live in their own tables.
DECISION_COLUMNS = ("request_id", "ts", "model_id", "latency_us", "prediction", "score", "input_hash")
_INSERT_DECISION = (f"INSERT OR REPLACE INTO decisions ({', '.join(DECISION_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(DECISION_COLUMNS))})")
_INSERT_FEATURES = "INSERT OR REPLACE INTO decision_features (request_id, features) VALUES (?, ?)"
_DECISION_LOG = """
    SELECT d.request_id, d.ts, m.name AS model, m.version, d.latency_us, d.prediction, d.score,
           printf('%016x', d.input_hash) AS input_hash, f.features
    FROM decisions d JOIN models m ON m.id = d.model_id
    LEFT JOIN decision_features f ON f.request_id = d.request_id
"""
_SNAPSHOT_COLUMNS = ("id", "seq", "opened_at", "updated_at", "rows", "rejected", "quality", "latency", "budget")
_REPLACE_SNAPSHOT = (f"INSERT OR REPLACE INTO current_window ({', '.join(_SNAPSHOT_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(_SNAPSHOT_COLUMNS))})")
_DRIFT_COLUMNS = ("window_seq", "name", "kind", "status", "metric", "value", "threshold", "warn_threshold",
                  "details")
_HIGH_WATER = 0.9  # make room when a write would take the files past this share of the budget
_LOW_WATER = 0.75  # ... by deleting down to about this share
_ROW_OVERHEAD = 160  # bytes a decision row takes besides its feature JSON (measured: ~120 + index)


migrations = Migrations("edge_runtime")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("models").create({"id": int, "name": str, "version": str, "sha256": str}, pk="id")
    db.table("models").create_index(["name", "version", "sha256"], unique=True)
    db.table("decisions").create({
        "request_id": int, "ts": float, "model_id": int, "latency_us": float, "prediction": str,
        "score": float, "input_hash": int,
    }, pk="request_id")
    # Raw feature values, only when enabled (privacy): a table of their own, easy to purge.
    db.table("decision_features").create({"request_id": int, "features": str}, pk="request_id")
    db.create_view("decision_log", _DECISION_LOG)
    db.table("windows").create({
        "seq": int, "model": str, "version": str, "model_sha256": str, "opened_at": float,
        "closed_at": float, "rows": int, "rejected": int, "quality": str, "latency": str,
        "summary": str, "profile": bytes,
    }, pk="seq")
    db.table("drift").create({
        "window_seq": int, "name": str, "kind": str, "status": str, "metric": str, "value": float,
        "threshold": float, "warn_threshold": float, "details": str,
    }, pk=("window_seq", "name"))
    db.table("events").create({
        "id": int, "ts": float, "window_seq": int, "kind": str, "name": str, "status": str, "message": str,
    }, pk="id")
    # One row: the window still open in the serving process, so another process can show it.
    db.table("current_window").create({
        "id": int, "seq": int, "opened_at": float, "updated_at": float, "rows": int, "rejected": int,
        "quality": str, "latency": str,
    }, pk="id")


@migrations()
def m002_partial_windows(db: Database) -> None:
    # A window closed early (at shutdown) is marked, so readers can weigh it.
    db.table("windows").add_column("partial", int, not_null_default=0)


@migrations()
def m003_budget_state(db: Database) -> None:
    # Budget measurements (latency percentile, CPU share, RSS, violations) per window.
    db.table("windows").add_column("budget", str)
    db.table("current_window").add_column("budget", str)


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
                 clock: Callable[[], float] = time.time, create: bool = True) -> None:
        self.path = Path(path)
        retention = retention or RetentionPolicy()
        self.retention = retention
        self._clock = clock
        if not create and not self.path.is_file():
            raise StoreError(f"monitoring database '{self.path}' does not exist")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = Database(self.path)
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Keep the write-ahead log well inside the byte budget: checkpoint
            # early and truncate the file after each checkpoint.
            wal_pages = max(16, min(1000, retention.max_bytes // 4096 // 16))
            self.db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
            self.db.execute(f"PRAGMA journal_size_limit={wal_pages * 4096}")
            migrations.apply(self.db)
            self._page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open monitoring database '{self.path}': {exc}") from exc

    # --------------------------------------------------------------- writes
    def register_model(self, name: str, version: str, sha256: str) -> int:
        """The id of a model in the ``models`` table, added on first sight."""
        self.db.execute("INSERT OR IGNORE INTO models (name, version, sha256) VALUES (?, ?, ?)",
                        [name, version, sha256])
        self.db.commit()
        row = self.db.execute("SELECT id FROM models WHERE name = ? AND version = ? AND sha256 = ?",
                              [name, version, sha256]).fetchone()
        return int(row[0])

    def append_decisions(self, rows: Sequence[Sequence[Any]], features: Sequence[tuple[int, str]] = (),
                         snapshot: dict[str, Any] | None = None) -> None:
        """Insert decisions (in :data:`DECISION_COLUMNS` order), their raw features if any, and the
        open-window snapshot, in one transaction."""
        if not rows and snapshot is None:
            return
        self._reserve(sum(len(f) for _, f in features) + _ROW_OVERHEAD * len(rows) + 4096)
        with self.db.atomic():
            if rows:
                self.db.conn.executemany(_INSERT_DECISION, rows)
            if features:
                self.db.conn.executemany(_INSERT_FEATURES, features)
            if snapshot is not None:
                record = dict(snapshot, id=1)
                for key in ("quality", "latency", "budget"):
                    record[key] = json.dumps(record.get(key))
                # Raw SQL: sqlite-utils' insert() inspects the table on every call (~0.3 ms).
                self.db.conn.execute(_REPLACE_SNAPSHOT, [record.get(c) for c in _SNAPSHOT_COLUMNS])

    def current_window(self) -> dict[str, Any] | None:
        """The snapshot of the window still open in the serving process, if any."""
        rows = list(self.db.query("SELECT * FROM current_window WHERE id = 1"))
        if not rows:
            return None
        row = rows[0]
        for key in ("quality", "latency", "budget"):
            row[key] = json.loads(row[key]) if row.get(key) else None
        return row

    def save_window(self, window: dict[str, Any], drift: Sequence[dict[str, Any]],
                    events: Sequence[dict[str, Any]]) -> None:
        """Persist a closed window with its drift results and events, in one transaction.

        The open-window snapshot is cleared in the same transaction.
        """
        record = dict(window)
        for key in ("quality", "latency", "summary", "budget"):
            record[key] = json.dumps(record.get(key))
        details = [json.dumps(d.get("details")) for d in drift]
        self._reserve(len(record.get("profile") or b"") + sum(len(t) for t in details)
                      + len(record["quality"]) + _ROW_OVERHEAD * (len(drift) + len(events) + 1) + 4096)
        seq = window["seq"]
        with self.db.atomic():
            # Raw SQL: sqlite-utils' insert() inspects the table on every call.
            columns = list(record)
            self.db.conn.execute(f"INSERT OR REPLACE INTO windows ({', '.join(columns)}) "
                                 f"VALUES ({', '.join('?' * len(columns))})", [record[c] for c in columns])
            self.db.conn.executemany(
                f"INSERT OR REPLACE INTO drift ({', '.join(_DRIFT_COLUMNS)}) VALUES ({', '.join('?' * 9)})",
                [(seq, d["name"], d["kind"], d["status"], d["metric"], d["value"], d["threshold"],
                  d["warn_threshold"], text) for d, text in zip(drift, details)])
            self.db.conn.executemany(
                "INSERT INTO events (ts, window_seq, kind, name, status, message) VALUES (?, ?, ?, ?, ?, ?)",
                [(e["ts"], seq, e["kind"], e["name"], e["status"], e["message"]) for e in events])
            self.db.conn.execute("DELETE FROM current_window")

    def add_event(self, kind: str, name: str, status: str, message: str, window_seq: int | None = None) -> None:
        """Record one event (e.g. a budget violation) now."""
        self.db.table("events").insert({"ts": self._clock(), "window_seq": window_seq, "kind": kind, "name": name,
                                  "status": status, "message": message})

    # ---------------------------------------------------------------- reads
    def next_request_id(self) -> int:
        """One past the highest request id ever logged."""
        row = self.db.execute("SELECT MAX(request_id) FROM decisions").fetchone()
        return int(row[0] or 0) + 1

    def next_window_seq(self) -> int:
        """One past the highest window sequence number ever stored (never reused)."""
        row = self.db.execute("SELECT MAX(seq) FROM windows").fetchone()
        return int(row[0]) + 1 if row[0] is not None else 0

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` most recent decisions, oldest first."""
        rows = list(self.db.query(f"{_DECISION_LOG} ORDER BY d.request_id DESC LIMIT ?", [n]))
        return rows[::-1]

    def windows(self, limit: int | None = None, *, with_profile: bool = False) -> list[dict[str, Any]]:
        """Closed windows, oldest first (the last ``limit`` when given), JSON columns parsed."""
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
        where = "WHERE window_seq = ?" if window_seq is not None else ""
        rows = list(self.db.query(f"SELECT * FROM drift {where} ORDER BY window_seq, rowid",
                                  [window_seq] if window_seq is not None else []))
        for row in rows:
            row["details"] = json.loads(row["details"]) if row.get("details") else None
        return rows

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent events, oldest first."""
        return list(self.db.query("SELECT * FROM events ORDER BY id DESC LIMIT ?", [limit]))[::-1]

    def decision_count(self) -> int:
        """Rows in the decision log."""
        return int(self.db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

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
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # ------------------------------------------------------------ retention
    def enforce_retention(self) -> int:
        """Delete the oldest rows beyond the bounds; return how many decisions went."""
        policy = self.retention
        deleted = 0
        with self.db.atomic():
            newest = self.db.execute("SELECT MAX(request_id) FROM decisions").fetchone()[0]
            if newest is not None and newest - policy.max_rows > 0:
                deleted += self._delete_decisions_before(newest - policy.max_rows + 1)
            if policy.max_age_days > 0:
                cutoff = self._clock() - policy.max_age_days * 86400
                # Decisions arrive in time order, so the old ones are a prefix of the
                # request ids: this scan stops at the first young row, and no index
                # on ts (which cost ~0.5 µs per logged row) is needed.
                young = self.db.execute("SELECT request_id FROM decisions WHERE ts >= ? ORDER BY request_id "
                                        "LIMIT 1", [cutoff]).fetchone()
                bound = young[0] if young else (newest or 0) + 1
                deleted += self._delete_decisions_before(bound)
                self._delete_windows("closed_at < ?", [cutoff])
            last = self.db.execute("SELECT MAX(seq) FROM windows").fetchone()[0]
            if last is not None and last - policy.max_windows >= 0:
                self._delete_windows("seq <= ?", [last - policy.max_windows])
        return deleted

    def _delete_decisions_before(self, request_id: int) -> int:
        self.db.execute("DELETE FROM decision_features WHERE request_id < ?", [request_id])
        return int(self.db.execute("DELETE FROM decisions WHERE request_id < ?", [request_id]).rowcount)

    def _delete_windows(self, where: str, params: list[Any]) -> None:
        seqs = [r[0] for r in self.db.execute(f"SELECT seq FROM windows WHERE {where}", params)]
        if not seqs:
            return
        marks = ", ".join("?" * len(seqs))
        self.db.execute(f"DELETE FROM drift WHERE window_seq IN ({marks})", seqs)
        self.db.execute(f"DELETE FROM events WHERE window_seq IN ({marks})", seqs)
        self.db.execute(f"DELETE FROM windows WHERE seq IN ({marks})", seqs)

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
        budget = self.retention.max_bytes
        if self._used_bytes() + 2 * incoming <= _HIGH_WATER * budget:
            return
        self._shrink_to(max(0.0, _LOW_WATER * budget - 2 * incoming))

    def _shrink_to(self, target: float) -> int:
        """Delete the oldest rows, decisions or windows (whichever are older), until ``target`` bytes are used."""
        deleted = 0
        for _ in range(200):  # each round frees a chunk; bounded in case nothing more can go
            if self._used_bytes() <= target:
                break
            oldest_decision = self.db.execute("SELECT MIN(ts) FROM decisions").fetchone()[0]
            oldest_window = self.db.execute("SELECT MIN(closed_at) FROM windows").fetchone()[0]
            with self.db.atomic():
                if oldest_decision is not None and (oldest_window is None or oldest_decision <= oldest_window):
                    cut = max(1, self.decision_count() // 10)
                    last = self.db.execute("SELECT request_id FROM decisions ORDER BY request_id "
                                           "LIMIT 1 OFFSET ?", [cut - 1]).fetchone()[0]
                    deleted += self._delete_decisions_before(last + 1)
                elif oldest_window is not None:
                    first = self.db.execute("SELECT MIN(seq) FROM windows").fetchone()[0]
                    self._delete_windows("seq <= ?", [first])
                else:
                    break
        return deleted

    def close(self) -> None:
        """Checkpoint the write-ahead log and close the connection."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()
