"""The monitoring database: retention, migrations, crash durability."""

from __future__ import annotations

import json

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlite_utils import Database

from edge_runtime import Runtime
from edge_runtime.config import MonitoringConfig, RetentionPolicy, RuntimeConfig
from edge_runtime.errors import StoreCorruptError, StoreError
from edge_runtime.monitoring.decision_log import DecisionBlock
from edge_runtime.monitoring.migrations import migrations
from edge_runtime.monitoring.store import MonitorStore


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _decision(i: int, ts: float) -> tuple[Any, ...]:
    return (i, ts, 1, 4.0, "yes", 0.9, i)


def _block(ids: list[int], ts: list[float], model_id: int = 1) -> DecisionBlock:
    n = len(ids)
    return DecisionBlock(ids=np.array(ids), ts=np.array(ts), model_id=model_id, latency_us=np.full(n, 4.0),
                         codes=np.ones(n, dtype=np.int32), vocabulary=("no", "yes"), scores=np.full(n, 0.9),
                         hashes=np.array(ids))


def test_blocks_round_trip_every_field(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.db")
    model_id = store.register_model("m", "2", "00")
    gaps = DecisionBlock(ids=np.array([3, 5, 9]), ts=np.array([1.5e9, 1.5e9 + 0.25, 1.5e9 + 1]), model_id=model_id,
                         latency_us=np.array([4.5, 5.5, 6.5]), codes=np.array([1, 0, 2]),
                         vocabulary=("a", "b", "c"), scores=np.array([0.5, 0.25, 1.0]), hashes=np.array([-1, 0, 255]))
    regression = DecisionBlock(ids=np.array([10, 11]), ts=np.array([1.6e9, 1.6e9]), model_id=model_id,
                               latency_us=np.array([1.0, 2.0]), codes=None, vocabulary=None,
                               scores=np.array([151.5, -2.0]), hashes=np.array([1, 2]))
    store.append_decisions(gaps)
    store.append_decisions(regression)
    store.append_decisions(gaps)  # written again (an interrupted flush re-run): replaces itself
    rows = store.tail(10)
    assert [r["request_id"] for r in rows] == [3, 5, 9, 10, 11] and store.decision_count() == 5
    assert [r["prediction"] for r in rows] == ["b", "a", "c", "151.5", "-2.0"]
    assert [r["ts"] for r in rows[:3]] == [1.5e9, 1.5e9 + 0.25, 1.5e9 + 1]
    assert [r["latency_us"] for r in rows[:3]] == [4.5, 5.5, 6.5] and rows[1]["score"] == 0.25
    assert [r["input_hash"] for r in rows[:3]] == ["ffffffffffffffff", "0000000000000000", "00000000000000ff"]
    assert {(r["model"], r["version"]) for r in rows} == {("m", "2")}
    assert [r["request_id"] for r in store.decisions(after=5)] == [9, 10, 11]
    # Ids come from the database's counter, in ranges, whatever was logged.
    assert store.reserve_request_ids(4) == 1 and store.next_request_id() == 5
    store.close()


def test_a_batch_block_stores_its_time_and_latency_once_and_old_blocks_still_read() -> None:
    from edge_runtime.monitoring.decision_log import expand_block

    batch = DecisionBlock(ids=np.arange(20, 24), ts=np.full(4, 1.7e9), model_id=1, latency_us=np.full(4, 2.5),
                          codes=np.array([1, 0, 1, 1]), vocabulary=("no", "yes"),
                          scores=np.array([0.5, 0.75, 1.0, 0.25]), hashes=np.array([1, 2, 3, 4]))
    record = batch.record()
    assert (len(record[7]), len(record[8]), len(record[9])) == (8, 4, 4)  # one time, one latency, a byte a code
    # The first block format: every field in full, codes as int32.
    old = record[:7] + (np.full(4, 1.7e9).tobytes(), np.full(4, 2.5, dtype="<f4").tobytes(),
                        np.array([1, 0, 1, 1], dtype="<i4").tobytes()) + record[10:]
    new_rows, old_rows = (list(expand_block(r, {1: ("m", "1")})) for r in (record, old))
    assert new_rows == old_rows
    assert [(r["ts"], r["latency_us"], r["prediction"]) for r in new_rows] == [
        (1.7e9, 2.5, "yes"), (1.7e9, 2.5, "no"), (1.7e9, 2.5, "yes"), (1.7e9, 2.5, "yes")]


def test_retention_by_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MonitorStore(tmp_path / "m.db", RetentionPolicy(max_rows=100), clock=clock)
    assert store.register_model("m", "1", "00") == 1
    for start in range(1, 251, 10):
        store.append_decisions(_block(list(range(start, start + 10)), [clock.now + start] * 10))
        assert store.decision_count() <= 100  # at every write, not only after a retention pass
    store.enforce_retention()
    assert store.decision_count() == 100  # whole blocks go: the bound falls on a block edge here
    assert store.tail(1)[0]["request_id"] == 250 and store.tail(100)[0]["request_id"] == 151
    store.append_decisions(_block(list(range(251, 256)), [clock.now + 300] * 5))
    store.enforce_retention()
    assert store.decision_count() == 95  # a block straddling the bound goes whole: the bound is never passed
    store.close()


def test_retention_by_age_uses_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MonitorStore(tmp_path / "m.db", RetentionPolicy(max_age_days=1), clock=clock)
    store.register_model("m", "1", "00")
    store.append_decisions(_block([1], [clock.now - 2 * 86400]))
    store.append_decisions(_block([2], [clock.now - 3600]))
    store.save_window({"seq": 0, "closed_at": clock.now - 2 * 86400, "rows": 1, "rejected": 0}, [], [])

    store.save_window({"seq": 1, "closed_at": clock.now, "rows": 1, "rejected": 0}, [], [])
    store.enforce_retention()
    assert [r["request_id"] for r in store.tail(10)] == [2]
    assert [w["seq"] for w in store.windows()] == [1]
    store.close()


def test_retention_by_window_count(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.db", RetentionPolicy(max_windows=3, max_age_days=0))
    for _ in range(6):
        seq = store.allocate_window_seq()
        store.save_window({"seq": seq, "closed_at": 2e9, "rows": 1, "rejected": 0},
                          [{"name": "x", "kind": "numeric", "status": "ok", "metric": "ks", "value": 0.0,
                            "threshold": 0.1, "warn_threshold": 0.05, "details": {}}], [])
    store.enforce_retention()
    assert [w["seq"] for w in store.windows()] == [3, 4, 5]
    assert {r["window_seq"] for r in store.drift_results()} == {3, 4, 5}
    assert store.next_window_seq() == 6  # never reused
    store.close()


@pytest.mark.slow
def test_database_never_grows_past_its_byte_budget(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    budget = 1024 * 1024
    config = RuntimeConfig(
        monitoring=MonitoringConfig(db=tmp_path / "m.db", window_rows=2000, log_features=True, flush_rows=64),
        retention=RetentionPolicy(max_bytes=budget))
    rows = cancer_data[0].to_numpy()
    sizes = []
    with Runtime(cancer_bundle, config=config) as rt:
        for i in range(40_000):
            rt.predict(rows[i % len(rows)])
            if i % 64 == 0:  # right after each flush
                sizes.append(rt.monitor.store.size_bytes())
        kept = rt.monitor.store.decision_count()
    assert max(sizes) <= budget, sizes
    assert 100 < kept < 40_000  # oldest rows went, recent ones stayed
    store = MonitorStore(tmp_path / "m.db")
    assert store.integrity_ok() and store.size_bytes() <= budget
    assert store.tail(1)[0]["request_id"] == 40_000
    store.close()


def test_migrates_an_older_database_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m002_partial_windows")  # the first released schema
    db["models"].insert({"id": 1, "name": "m", "version": "1", "sha256": "00"})
    db["models"].insert({"id": 2, "name": "m", "version": "2", "sha256": "01"})
    old = [_decision(7, 1e9), (8, 1e9 + 1, 1, 3.0, "no", 0.6, -5), (9, 1e9 + 2, 2, 2.0, "yes", 0.7, 9)]
    db["decision_features"].insert({"request_id": 8, "features": '{"x": 1}'})
    db["decisions"].insert_all(dict(zip(("request_id", "ts", "model_id", "latency_us", "prediction", "score",
                                         "input_hash"), row)) for row in old)
    db["windows"].insert({"seq": 0, "rows": 10, "rejected": 0, "closed_at": 2e9})
    assert "partial" not in db["windows"].columns_dict
    db.close()

    store = MonitorStore(path, RetentionPolicy(max_age_days=0))
    assert [m.name for m in migrations.applied(store.db)] == ["m001_initial", "m002_partial_windows",
                                                              "m003_budget_state", "m004_decision_blocks",
                                                              "m005_several_writers", "m006_window_verdicts",
                                                              "m007_sync_outbox"]
    assert store.next_window_seq() == 1 and len(store.database_id) == 36  # counters from the old rows
    assert [row[0] for row in store.db.execute("SELECT seq_first FROM outbox")] == [0]  # to be sent too
    assert store.db["windows"].columns_dict["partial"] is int
    assert store.windows()[0]["partial"] == 0 and store.windows()[0]["budget"] is None
    moved = store.tail(10)  # the old per-row log, now in blocks (one per model)
    assert [(r["request_id"], r["ts"], r["version"], r["latency_us"], r["prediction"], r["score"], r["input_hash"])
            for r in moved] == [(7, 1e9, "1", 4.0, "yes", np.float32(0.9), "0000000000000007"),
                                (8, 1e9 + 1, "1", 3.0, "no", np.float32(0.6), "fffffffffffffffb"),
                                (9, 1e9 + 2, "2", 2.0, "yes", np.float32(0.7), "0000000000000009")]
    assert moved[1]["features"] == '{"x": 1}' and store.next_request_id() == 10
    assert "decisions" not in store.db.table_names()
    store.close()


def test_m006_moves_old_drift_rows_into_one_record_per_window(tmp_path: Path) -> None:
    """Verdicts stored a row and a JSON document per feature read back the same after m006."""
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m006_window_verdicts")
    numeric = {"status": "drift", "drift": True, "metric": "psi", "value": 0.31, "threshold": 0.2,
               "warn_threshold": 0.1, "rows": 5000, "reference_rows": 20000,
               "metrics": {"ks": {"value": 0.12, "warn_threshold": 0.05, "threshold": 0.1, "sketch_error": 0.03},
                           "psi": {"value": 0.31, "warn_threshold": 0.1, "threshold": 0.2}}}
    empty = {"status": "ok", "drift": False, "metric": "js", "value": 0.0, "threshold": None,
             "warn_threshold": None, "rows": 0, "reference_rows": 10,
             "metrics": {"js": {"value": 0.0, "warn_threshold": None, "threshold": None},
                         "chi2": {"value": 0.0, "df": 0.0, "p_value": 1.0}}}
    old = [(1, "x", "numeric", numeric), (1, "city", "categorical", empty), (2, "x", "numeric", None)]
    for seq, name, kind, details in old:
        shown = details or {"status": "ok", "metric": "ks", "value": 0.0, "threshold": 0.1, "warn_threshold": 0.05}
        db["drift"].insert({"window_seq": seq, "name": name, "kind": kind, "status": shown["status"],
                            "metric": shown["metric"], "value": shown["value"], "threshold": shown["threshold"],
                            "warn_threshold": shown["warn_threshold"],
                            "details": json.dumps(details) if details else None})
    expected = [dict(row, details=json.loads(row["details"]) if row["details"] else None)
                for row in db.query("SELECT * FROM drift ORDER BY window_seq, rowid")]
    db.close()
    store = MonitorStore(path, RetentionPolicy(max_age_days=0))
    assert "drift" not in store.db.table_names()
    assert store.drift_results() == expected
    assert store.drift_results(2) == expected[2:]
    store.close()


def test_migration_moves_many_old_rows_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m004_decision_blocks")
    db["models"].insert({"id": 1, "name": "m", "version": "1", "sha256": "00"})
    db["decisions"].insert_all({"request_id": i, "ts": 1e9 + i, "model_id": 1, "latency_us": 5.0,
                                "prediction": str(i % 3), "score": 0.5, "input_hash": i} for i in range(1, 2501))
    db.close()
    store = MonitorStore(path, RetentionPolicy(max_age_days=0))
    assert [r[0] for r in store.db.execute("SELECT rows FROM decision_blocks ORDER BY first_id")] == [1024, 1024, 452]
    assert [d["request_id"] for d in store.decisions()] == list(range(1, 2501))
    assert [d["prediction"] for d in store.tail(3)] == [str(i % 3) for i in (2498, 2499, 2500)]
    store.close()
    store.close()  # harmless twice


def test_readers_do_not_create_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        MonitorStore(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()


def test_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"'.*bad.db' is not an edge-runtime monitoring database \(not a SQLite"):
        MonitorStore(path)  # never written to: it may be someone's file
    assert path.read_bytes() == b"this is not sqlite" * 100
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)  # a SQLite header over garbage
    with pytest.raises(StoreCorruptError, match="cannot open it"):
        MonitorStore(damaged)


CHILD = textwrap.dedent("""
    import sys, numpy as np
    from sklearn.datasets import load_breast_cancer
    from edge_runtime import Runtime
    from edge_runtime.config import MonitoringConfig, RuntimeConfig
    bundle, db, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = load_breast_cancer().data
    config = RuntimeConfig(monitoring=MonitoringConfig(db=db, flush_rows=64, flush_ms=60_000, window_rows=1000))
    rt = Runtime(bundle, config=config)
    if mode == "rows":
        for i in range(1, 2_000_000):
            rt.predict(rows[i % len(rows)])
            if i % 500 == 0:
                rt.flush()
                print("flushed", i, flush=True)
    else:  # batches of 512 on the worker thread, several waiting for it when the kill comes
        batch = np.concatenate([rows, rows])[:512]
        for i in range(1, 100_000):
            rt.predict_batch(batch)
            if i % 5 == 0:
                rt.flush()
                print("flushed", i * 512, flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rows", "batches"])
def test_kill_9_loses_only_unflushed_rows(tmp_path: Path, cancer_bundle: Path, mode: str) -> None:
    db = tmp_path / "crash.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cancer_bundle), str(db), mode],
                             stdout=subprocess.PIPE, text=True)
    flushed = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            flushed = int(line.split()[1])
            if flushed >= 5000:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    store = MonitorStore(db)
    assert store.integrity_ok()
    count = store.decision_count()
    assert count >= flushed  # every row flushed before the kill is there
    ids = [r["request_id"] for r in store.tail(count)]
    assert ids == list(range(1, count + 1))  # and nothing in between was lost
    assert len(store.windows()) >= 5
    store.close()


@pytest.mark.parametrize("content", ["empty", "other"])
def test_readers_refuse_what_is_not_a_monitoring_database_and_write_nothing(tmp_path: Path, content: str) -> None:
    import sqlite3

    from click.testing import CliRunner

    from edge_runtime.cli import main

    path = tmp_path / "other.db"
    if content == "empty":
        path.write_bytes(b"")
    else:
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE t (x INTEGER)")
        connection.commit()
        connection.close()
    before = path.read_bytes()
    for command in ("status", "drift", "log"):
        result = CliRunner().invoke(main, [command, "--db", str(path)])
        assert result.exit_code == 1
        assert result.stderr == f"Error: '{path}' is not an edge-runtime monitoring database\n"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_block_larger_than_the_whole_log_keeps_its_newest_rows(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.db", RetentionPolicy(max_rows=100))
    store.register_model("m", "1", "00")
    store.append_decisions(_block(list(range(1, 1025)), [2e9] * 1024))
    assert store.decision_count() == 100
    assert [r["request_id"] for r in store.tail(100)] == list(range(925, 1025))
    store.close()
