"""The monitoring database's schema, as numbered migrations (sqlite-utils ``Migrations``).

The database carries the migrations applied to it (table ``_sqlite_migrations``);
opening an older file applies the rest in place. A migration is never edited once
released: a change of schema is a new one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlite_utils import Database, Migrations

from edge_runtime.monitoring.decision_log import BLOCK_COLUMNS, DecisionBlock
from edge_runtime.monitoring.windows import encode_verdicts

__all__ = ["INSERT_BLOCK", "INSERT_VERDICTS", "migrations"]

INSERT_VERDICTS = "INSERT OR REPLACE INTO window_verdicts (window_seq, layout, codes, numbers) VALUES (?, ?, ?, ?)"
INSERT_BLOCK = (f"INSERT OR REPLACE INTO decision_blocks ({', '.join(BLOCK_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(BLOCK_COLUMNS))})")
# The first schema's per-row log and its view, kept for migrations m001-m003.
_M001_DECISION_LOG = """
    SELECT d.request_id, d.ts, m.name AS model, m.version, d.latency_us, d.prediction, d.score,
           printf('%016x', d.input_hash) AS input_hash, f.features
    FROM decisions d JOIN models m ON m.id = d.model_id
    LEFT JOIN decision_features f ON f.request_id = d.request_id
"""

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
    db.create_view("decision_log", _M001_DECISION_LOG)
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


@migrations()
def m004_decision_blocks(db: Database) -> None:
    # The decision log becomes columnar (one row per block of decisions); the
    # rows of the old table move over, 1,024 to a block, then it goes.
    db.table("decision_blocks").create({
        "first_id": int, "last_id": int, "rows": int, "ts_first": float, "ts_last": float, "model_id": int,
        "ids": bytes, "ts": bytes, "latency_us": bytes, "predictions": bytes, "vocabulary": str,
        "scores": bytes, "input_hashes": bytes,
    }, pk="first_id")
    db.table("decision_blocks").create_index(["last_id"], unique=True)
    chunk: list[tuple[Any, ...]] = []
    # Streamed: a device may hold a million old rows.
    for row in db.execute(f"SELECT {', '.join(_OLD_DECISION_COLUMNS)} FROM decisions ORDER BY request_id"):
        if chunk and (len(chunk) == 1024 or row[2] != chunk[0][2]):  # one model per block
            db.execute(INSERT_BLOCK, _old_rows_block(chunk).record())
            chunk = []
        chunk.append(tuple(row))
    if chunk:
        db.execute(INSERT_BLOCK, _old_rows_block(chunk).record())
    db.execute("DROP VIEW IF EXISTS decision_log")
    db.table("decisions").drop()



_OLD_DECISION_COLUMNS = ("request_id", "ts", "model_id", "latency_us", "prediction", "score", "input_hash")


def _old_rows_block(chunk: Sequence[tuple[Any, ...]]) -> DecisionBlock:
    """Rows of the first schema's per-row table, in :data:`_OLD_DECISION_COLUMNS` order, as one block."""
    words = sorted({str(r[4]) for r in chunk})
    code = {w: i for i, w in enumerate(words)}
    return DecisionBlock(ids=np.array([r[0] for r in chunk]), ts=np.array([r[1] for r in chunk]),
                         model_id=chunk[0][2], latency_us=np.array([r[3] for r in chunk]),
                         codes=np.array([code[str(r[4])] for r in chunk]), vocabulary=tuple(words),
                         scores=np.array([r[5] for r in chunk]), hashes=np.array([r[6] for r in chunk]))



@migrations()
def m005_several_writers(db: Database) -> None:
    # Several processes (and Runtimes) may write one database: request ids and window
    # numbers are handed out here, in write transactions, so no two writers share one
    # and none is reused after a restart. Each database gets an id of its own, so that
    # a replacement file's windows are never taken for replays of the old one's.
    next_id = db.execute("SELECT COALESCE(MAX(last_id), 0) + 1 FROM decision_blocks").fetchone()[0]
    next_seq = db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM windows").fetchone()[0]
    logged = db.execute("SELECT COALESCE(SUM(rows), 0) FROM decision_blocks").fetchone()[0]
    db.table("counters").create({"name": str, "value": int}, pk="name")
    db.execute("INSERT INTO counters (name, value) VALUES ('next_request_id', ?), ('next_window_seq', ?), "
               "('logged_rows', ?)", [next_id, next_seq, logged])
    db.table("database").create({"id": int, "database_id": str, "created_at": float}, pk="id")
    db.execute("INSERT INTO database (id, database_id, created_at) VALUES (1, ?, ?)",
               [str(uuid.uuid4()), time.time()])
    db.table("writers").create({"id": int, "pid": int, "host": str, "started_at": float, "last_seen": float,
                                "closed_at": float}, pk="id")
    db.table("windows").add_column("writer", int)
    # The open-window snapshot is one row per writer now: its id is the writer's.
    db.table("current_window").add_column("writer", int)
    db.table("decision_blocks").create_index(["ts_last"])


@migrations()
def m006_window_verdicts(db: Database) -> None:
    # A window's verdicts become one row (windows.encode_verdicts): a row and a JSON
    # document per feature cost most of a window close's write. The old rows move over.
    db.table("window_verdicts").create({"window_seq": int, "layout": str, "codes": bytes, "numbers": bytes},
                                       pk="window_seq")
    columns = ("name", "kind", "status", "metric", "value", "threshold", "warn_threshold", "details")
    rows: list[dict[str, Any]] = []
    current = None
    for seq, *values in db.execute(f"SELECT window_seq, {', '.join(columns)} FROM drift ORDER BY window_seq, rowid"):
        if rows and seq != current:
            db.execute(INSERT_VERDICTS, [current, *encode_verdicts(rows)])
            rows = []
        current = seq
        row = dict(zip(columns, values))
        row["details"] = json.loads(row["details"]) if row["details"] else None
        rows.append(row)
    if rows:
        db.execute(INSERT_VERDICTS, [current, *encode_verdicts(rows)])
    db.table("drift").drop()


@migrations()
def m007_sync_outbox(db: Database) -> None:
    # Report upstream (issue 11). Each closed window gets an outbox row in the transaction that
    # writes it: a plain row (seq_first = seq_last, no document) is read from its window when
    # synced. A merged row (retention merged never-attempted windows under outbox pressure)
    # carries its own document and profile, as its windows are gone. ``attempts`` 0 means never
    # sent: only such rows may be merged (the collector may hold one that was tried).
    db.table("outbox").create({
        "seq_first": int, "seq_last": int, "windows": int, "created_at": float, "bytes": int,
        "model_sha256": str, "attempts": int, "last_attempt_at": float, "model": str, "version": str,
        "document": str, "profile": bytes,
    }, pk="seq_first", defaults={"windows": 1, "attempts": 0}, not_null={"seq_last", "windows", "attempts"})
    # Windows closed before this migration wait to be sent too (they follow normal retention
    # until a first sync run enrolls the database). 420: the row overheads the store counts.
    db.execute("INSERT INTO outbox (seq_first, seq_last, created_at, bytes, model_sha256) "
               "SELECT seq, seq, closed_at, COALESCE(length(profile), 0) + COALESCE(length(quality), 0) + 420, "
               "model_sha256 FROM windows")
    # Rows the collector refused for good (4xx but authentication): kept to be shown, never re-sent.
    db.table("outbox_dead").create({
        "id": int, "seq_first": int, "seq_last": int, "windows": int, "dead_at": float, "status": int,
        "detail": str, "attempts": int,
    }, pk="id")
    # Windows that will never reach the collector, by reason (cumulative; reported upstream).
    db.table("sync_losses").create({"reason": str, "windows": int, "updated_at": float}, pk="reason")
    # One row: the device id once a sync enrolled this database, and how the last runs went.
    db.table("sync_state").create({
        "id": int, "device_id": str, "enrolled_at": float, "last_attempt_at": float, "last_success_at": float,
        "last_error": str, "last_error_at": float, "consecutive_failures": int, "windows_sent": int,
        "bytes_sent": int, "next_attempt_at": float,
    }, pk="id")
    db.execute("INSERT INTO sync_state (id, consecutive_failures, windows_sent, bytes_sent) VALUES (1, 0, 0, 0)")
    # One sync loop per database: whoever holds an unexpired lease syncs; the others wait.
    db.table("sync_lease").create({"name": str, "holder": str, "pid": int, "host": str, "taken_at": float,
                                   "expires_at": float}, pk="name")
