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

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from edge_runtime.config import RetentionPolicy
from edge_runtime.errors import StoreError
from edge_runtime.monitoring.decision_log import (
    BLOCK_COLUMNS,
    DecisionBlock,
    expand_block,
)
from edge_runtime.monitoring.migrations import INSERT_BLOCK, migrations

__all__ = ["MonitorStore"]

_INSERT_FEATURES = "INSERT OR REPLACE INTO decision_features (request_id, features) VALUES (?, ?)"
_SNAPSHOT_COLUMNS = ("id", "seq", "opened_at", "updated_at", "rows", "rejected", "quality", "latency", "budget")
_REPLACE_SNAPSHOT = (f"INSERT OR REPLACE INTO current_window ({', '.join(_SNAPSHOT_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(_SNAPSHOT_COLUMNS))})")
_DRIFT_COLUMNS = ("window_seq", "name", "kind", "status", "metric", "value", "threshold", "warn_threshold",
                  "details")
_HIGH_WATER = 0.9  # make room when a write would take the files past this share of the budget
_LOW_WATER = 0.75  # ... by deleting down to about this share
_ROW_OVERHEAD = 160  # bytes a window, drift or event row takes besides its blobs and JSON
_BLOCK_OVERHEAD = 200  # bytes a block row takes besides its arrays
_DECISION_BYTES = 32  # bytes per decision in a block: ts 8, latency 4, prediction 4, score 4, hash 8, slack



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
        self._closed = False
        if not create and not self.path.is_file():
            raise StoreError(f"monitoring database '{self.path}' does not exist")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Not bound to the opening thread: the monitor may write a batch's block
            # from its worker thread; it never uses the connection from two at once.
            self.db = Database(sqlite3.connect(str(self.path), check_same_thread=False))
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Keep the write-ahead log well inside the byte budget: checkpoint
            # early and truncate the file after each checkpoint.
            wal_pages = max(16, min(256, retention.max_bytes // 4096 // 16))
            self.db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
            self.db.execute(f"PRAGMA journal_size_limit={wal_pages * 4096}")
            migrations.apply(self.db)
            self._page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
            self._used_bound = float(self._used_bytes())
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

    def append_decisions(self, block: DecisionBlock | None, features: Sequence[tuple[int, str]] = (),
                         snapshot: dict[str, Any] | None = None) -> None:
        """Insert a block of decisions, their raw features if any, and the open-window snapshot,
        in one transaction. Writing the same block again replaces it."""
        if (block is None or not len(block)) and snapshot is None:
            return
        n = len(block) if block is not None else 0
        self._reserve(sum(len(f) for _, f in features) + _DECISION_BYTES * n + _BLOCK_OVERHEAD + 4096)
        with self.db.atomic():
            if block is not None and n:
                self.db.conn.execute(INSERT_BLOCK, block.record())
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
        row = self.db.execute("SELECT MAX(last_id) FROM decision_blocks").fetchone()
        return int(row[0] or 0) + 1

    def next_window_seq(self) -> int:
        """One past the highest window sequence number ever stored (never reused)."""
        row = self.db.execute("SELECT MAX(seq) FROM windows").fetchone()
        return int(row[0]) + 1 if row[0] is not None else 0

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` most recent decisions, oldest first, each a dict (raw features under ``features``)."""
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
        """Delete the oldest rows beyond the bounds; return how many decisions went.

        Decisions go a whole block at a time: the block that straddles the row
        bound goes (so the log never holds more than ``max_rows``), a block goes
        by age once its newest decision is past the age bound.
        """
        policy = self.retention
        deleted = 0
        with self.db.atomic():
            straddling = self._block_at_row_bound(policy.max_rows)
            if straddling is not None:
                deleted += self._delete_decisions_before(straddling + 1)  # that block and older ones
            if policy.max_age_days > 0:
                cutoff = self._clock() - policy.max_age_days * 86400
                # Blocks arrive in time order, so the old ones are a prefix of the
                # request ids: this scan stops at the first young block.
                young = self.db.execute("SELECT first_id FROM decision_blocks WHERE ts_last >= ? "
                                        "ORDER BY first_id LIMIT 1", [cutoff]).fetchone()
                if young:
                    deleted += self._delete_decisions_before(young[0])
                else:
                    deleted += self._delete_decisions_before(self.next_request_id())
                self._delete_windows("closed_at < ?", [cutoff])
            last = self.db.execute("SELECT MAX(seq) FROM windows").fetchone()[0]
            if last is not None and last - policy.max_windows >= 0:
                self._delete_windows("seq <= ?", [last - policy.max_windows])
        return deleted

    def _block_at_row_bound(self, max_rows: int) -> int | None:
        """First id of the newest block that takes the log past ``max_rows`` decisions, if any."""
        first, last = self.db.execute("SELECT MIN(first_id), MAX(last_id) FROM decision_blocks").fetchone()
        if first is None or last - first + 1 <= max_rows:
            return None  # the id span bounds the rows (sampling leaves gaps): no need to walk the blocks
        kept = 0
        for first_id, rows in self.db.execute("SELECT first_id, rows FROM decision_blocks ORDER BY first_id DESC"):
            kept += rows
            if kept > max_rows:
                return int(first_id)
        return None

    def _delete_decisions_before(self, request_id: int) -> int:
        """Delete the blocks that start before ``request_id``, and their features; return their decisions."""
        row = self.db.execute("SELECT COALESCE(SUM(rows), 0), MAX(last_id) FROM decision_blocks "
                              "WHERE first_id < ?", [request_id]).fetchone()
        if not row[0]:
            return 0
        self.db.execute("DELETE FROM decision_features WHERE request_id <= ?", [row[1]])
        self.db.execute("DELETE FROM decision_blocks WHERE first_id < ?", [request_id])
        return int(row[0])

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
        for _ in range(200):  # each round frees a chunk; bounded in case nothing more can go
            if self._used_bytes() <= target:
                break
            oldest_decision = self.db.execute("SELECT MIN(ts_first) FROM decision_blocks").fetchone()[0]
            oldest_window = self.db.execute("SELECT MIN(closed_at) FROM windows").fetchone()[0]
            with self.db.atomic():
                if oldest_decision is not None and (oldest_window is None or oldest_decision <= oldest_window):
                    blocks = self.db.execute("SELECT COUNT(*) FROM decision_blocks").fetchone()[0]
                    cut = max(1, blocks // 10)
                    first = self.db.execute("SELECT first_id FROM decision_blocks ORDER BY first_id "
                                            "LIMIT 1 OFFSET ?", [cut - 1]).fetchone()[0]
                    deleted += self._delete_decisions_before(first + 1)
                elif oldest_window is not None:
                    first = self.db.execute("SELECT MIN(seq) FROM windows").fetchone()[0]
                    self._delete_windows("seq <= ?", [first])
                else:
                    break
        return deleted

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Checkpoint the write-ahead log and close the connection; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()
