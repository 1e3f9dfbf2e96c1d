"""Monitoring never takes serving down: a failing database degrades monitoring, and it recovers by itself.

Real failures, not mocks: a small tmpfs that fills up and is remounted read-only
(where the machine grants mount rights, as CI's root does; elsewhere SQLite's own
``max_page_count`` raises a real SQLITE_FULL), a second connection holding the
write lock, bytes overwritten in the file, the file deleted under a running writer.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime import MonitoringDatabase, Runtime, RuntimeConfig
from edge_runtime.cli import main
from edge_runtime.config import MonitoringConfig, RetentionPolicy
from edge_runtime.errors import StoreError
from edge_runtime.monitoring.store import corrupt_copies
from edge_runtime.testing import FakeClock


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 1.5 MB tmpfs, mounted for the test (root with mount rights), else a plain folder."""
    folder = Path(tempfile.mkdtemp())
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted and os.environ.get("CI") == "true" and os.geteuid() == 0:
        pytest.fail("CI runs as root and must be able to mount a tmpfs for the full-disk test")
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def _config(db: Path, **monitoring: Any) -> RuntimeConfig:
    return RuntimeConfig(monitoring=MonitoringConfig(db=db, window_rows=2000, **monitoring),
                         retention=RetentionPolicy(max_bytes=64 * 1024 * 1024))


def _is_mounted(folder: Path) -> bool:
    return any(line.split()[1] == str(folder) for line in Path("/proc/mounts").read_text().splitlines())


def _fill(folder: Path, leave_bytes: int) -> Path:
    """Fill the file system of ``folder`` up to ``leave_bytes`` free; return the ballast file."""
    ballast = folder / "ballast"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(ballast, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))
    return ballast


def test_a_full_disk_leaves_serving_untouched_and_monitoring_recovers(small_disk: Path, cancer_bundle: Path,
                                                                      cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    clock = FakeClock()
    db = small_disk / "m.db"
    expected = None
    with Runtime(cancer_bundle, config=_config(db, flush_rows=256), clock=clock) as rt:
        expected = [rt.predict(r).label for r in rows[:200]]
        rt.flush()
        if _is_mounted(small_disk):
            ballast = _fill(small_disk, leave_bytes=64 * 1024)
        else:  # SQLite's own limit: the file may not grow by a page
            ballast = None
            pages = rt.monitor.store.db.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
            rt.monitor.store.db.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]
        served = 0
        # Rows drawn from the whole training set: a window of a few hundred rows repeated
        # is a real shift to the drift tests, whose events would push this test's out of
        # the ten that status() shows.
        draw = np.random.default_rng(0)
        for _ in range(40):  # ~20,000 single rows and batches on a full disk: every one answered
            for i in draw.integers(0, len(rows), 256).tolist():
                assert rt.predict(rows[i]).label is not None
            served += 256 + len(rt.predict_batch(rows[draw.integers(0, len(rows), 300)]))
            clock.advance(0.5)
        health = rt.monitor.health()  # type: ignore[attr-defined]
        assert health.state == "degraded" and "full" in (health.error or "")
        assert health.unlogged_decisions > 0
        # Space comes back: the next retry (backoff capped at a minute) writes again.
        if ballast is not None:
            ballast.unlink()
        else:
            rt.monitor.store.db.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[attr-defined]
        clock.advance(61)
        for i in draw.integers(0, len(rows), 600).tolist():
            rt.predict(rows[i])
        rt.flush()
        assert rt.monitor.health().state == "ok"  # type: ignore[attr-defined]
        assert [rt.predict(r).label for r in rows[:200]] == expected
    with MonitoringDatabase(db) as reader:
        status = reader.status()
        recovered = [e for e in status.events if e.kind == "monitoring" and e.name == "recovered"]
    assert recovered and "could not be logged" in recovered[0].message
    assert sum(w.quality.unlogged for w in status.windows) > 0  # the loss is counted where it happened


def test_a_read_only_file_system_leaves_the_model_serving(small_disk: Path, cancer_bundle: Path,
                                                          cancer_data: Any) -> None:
    if not _is_mounted(small_disk):
        pytest.skip("needs mount rights to remount read-only")  # CI (root) always has them: see small_disk
    rows = cancer_data[0].to_numpy()
    db = small_disk / "m.db"
    with Runtime(cancer_bundle, config=_config(db, flush_rows=64)) as rt:
        for i in range(100):
            rt.predict(rows[i])
    # A remount needs no file open on it (root can write through any file mode).
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.warns(RuntimeWarning, match="serving without it"):
            rt = Runtime(cancer_bundle, config=_config(db, flush_rows=64))
        with rt:
            assert [rt.predict(rows[i]).label for i in range(300)] == [rt.predict(rows[i]).label for i in range(300)]
        assert rt.monitoring_error is not None and "cannot open it" in rt.monitoring_error
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


def test_a_lock_held_past_the_timeout_degrades_then_recovers(tmp_path: Path, cancer_bundle: Path,
                                                            cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    clock = FakeClock()
    db = tmp_path / "m.db"
    with Runtime(cancer_bundle, config=_config(db, flush_rows=64, lock_timeout_ms=50), clock=clock) as rt:
        rt.predict(rows[0])
        rt.flush()
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer that does not let go
        try:
            for i in range(200):
                assert rt.predict(rows[i % len(rows)]).label is not None
            health = rt.monitor.health()  # type: ignore[attr-defined]
            assert health.state == "degraded" and "locked" in (health.error or "")
        finally:
            other.execute("ROLLBACK")
            other.close()
        clock.advance(61)
        for i in range(100):
            rt.predict(rows[i])
        rt.flush()
        assert rt.monitor.health().state == "ok"  # type: ignore[attr-defined]


def test_strict_mode_raises_a_store_error(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    db = tmp_path / "m.db"
    rt = Runtime(cancer_bundle, config=_config(db, flush_rows=64, lock_timeout_ms=50, on_error="raise"))
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            for i in range(200):
                rt.predict(rows[i % len(rows)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    rt.close()


def _corrupt_the_log(db: Path) -> None:
    """Overwrite the root page of the decision log's table with garbage."""
    connection = sqlite3.connect(db)
    root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'decision_blocks'").fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    with open(db, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(np.random.default_rng(0).integers(0, 256, page_size, dtype=np.uint8).tobytes())


def test_a_corrupted_database_is_reported_and_replaced_and_serving_goes_on(tmp_path: Path, cancer_bundle: Path,
                                                                           cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    db = tmp_path / "m.db"
    config = _config(db, flush_rows=64)
    with Runtime(cancer_bundle, config=config) as rt:
        for i in range(300):
            rt.predict(rows[i])
        first_id = rt.monitor.database_id  # type: ignore[attr-defined]
    _corrupt_the_log(db)

    runner = CliRunner()
    for command in ("status", "drift", "log"):
        result = runner.invoke(main, [command, "--db", str(db)])
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.startswith(f"Error: monitoring database '{db}'")
        assert ("corrupt" in result.stderr or "malformed" in result.stderr) and result.stderr.count("\n") == 1

    for _ in range(3):  # corrupted again and again: at most keep_corrupt (2) copies stay
        with Runtime(cancer_bundle, config=config) as rt:
            labels = [rt.predict(rows[i]).label for i in range(300)]
            assert len(labels) == 300
            assert rt.monitor.health().replaced_databases == 1  # type: ignore[attr-defined]
            assert rt.monitor.database_id != first_id  # type: ignore[attr-defined]
        _corrupt_the_log(db)
    assert len({p.name.split("-wal")[0].split("-shm")[0] for p in corrupt_copies(db)}) == 2
    db.unlink()
    with Runtime(cancer_bundle, config=config) as rt:
        for i in range(300):
            rt.predict(rows[i])
    with MonitoringDatabase(db) as reader:
        assert reader.status().decisions == 300


def test_a_replaced_database_records_why(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    db = tmp_path / "m.db"
    config = _config(db, flush_rows=64)
    with Runtime(cancer_bundle, config=config) as rt:
        for i in range(300):
            rt.predict(rows[i])
    _corrupt_the_log(db)
    with Runtime(cancer_bundle, config=config) as rt:
        for i in range(300):
            rt.predict(rows[i])
    with MonitoringDatabase(db) as reader:
        events = [e for e in reader.status().events if e.kind == "monitoring"]
    assert any("corrupt" in e.message and ".corrupt-" in e.message for e in events), events


def test_a_database_deleted_under_a_running_writer_is_started_afresh(tmp_path: Path, cancer_bundle: Path,
                                                                    cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    db = tmp_path / "m.db"
    with Runtime(cancer_bundle, config=_config(db, flush_rows=64)) as rt:
        for i in range(200):
            rt.predict(rows[i])
        rt.flush()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        for i in range(300):
            rt.predict(rows[i])
    with MonitoringDatabase(db) as reader:
        status = reader.status()
    assert status.decisions >= 300 - 64  # all but what the first write after the deletion held
    assert any("vanished" in e.message for e in status.events)


def test_a_database_that_cannot_be_opened_leaves_the_model_serving(tmp_path: Path, cancer_bundle: Path,
                                                                   cancer_data: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.warns(RuntimeWarning, match="serving without it"):
        rt = Runtime(cancer_bundle, config=_config(blocker / "m.db"))
    assert rt.predict(cancer_data[0].to_numpy()[0]).label in (0, 1)
    assert rt.monitoring_error is not None and "m.db" in rt.monitoring_error
    rt.close()


@pytest.mark.parametrize("content", ["csv", "other-sqlite"])
def test_a_db_path_holding_someone_elses_file_is_never_written(tmp_path: Path, cancer_bundle: Path,
                                                              cancer_data: Any, content: str) -> None:
    target = tmp_path / "precious"
    if content == "csv":
        target.write_text("a,b\n1,2\n")
    else:
        connection = sqlite3.connect(target)
        connection.execute("CREATE TABLE t (x INTEGER)")
        connection.commit()
        connection.close()
    before = target.read_bytes()
    with pytest.warns(RuntimeWarning, match="not an edge-runtime monitoring database"):
        rt = Runtime(cancer_bundle, config=_config(target))
    with rt:
        assert rt.predict(cancer_data[0].to_numpy()[0]).label in (0, 1)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # nothing moved aside, nothing added


def test_ids_stay_unique_when_a_deleted_database_is_replaced(tmp_path: Path, cancer_bundle: Path,
                                                            cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    db = tmp_path / "m.db"
    ids = []
    with Runtime(cancer_bundle, config=_config(db, flush_rows=64)) as rt:
        for i in range(3000):
            ids.append(rt.predict(rows[i % len(rows)]).request_id)
            if i == 1000:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
    with Runtime(cancer_bundle, config=_config(db, flush_rows=64)) as rt:  # a restart on the fresh file
        ids += [rt.predict(rows[i % len(rows)]).request_id for i in range(3000)]
    from edge_runtime.monitoring.store import MonitorStore

    store = MonitorStore(db, create=False)
    logged = [d["request_id"] for d in store.decisions()]
    windows = store.windows()
    store.close()
    assert len(logged) == len(set(logged))  # the fresh database continues the numbering
    assert len(set(ids)) == len(ids)
    assert sum(w["rows"] for w in windows) >= 3000 + 1900  # the windows after the deletion are all there


def test_a_database_locked_at_start_is_opened_later_and_monitoring_begins(tmp_path: Path, cancer_bundle: Path,
                                                                         cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    db = tmp_path / "m.db"
    with Runtime(cancer_bundle, config=_config(db)) as rt:
        rt.predict(rows[0])
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # not even readers: the Runtime cannot open it
    clock = FakeClock()
    try:
        with pytest.warns(RuntimeWarning, match="serving without it until it can"):
            rt = Runtime(cancer_bundle, config=_config(db, flush_rows=64, lock_timeout_ms=50), clock=clock)
        for i in range(100):
            assert rt.predict(rows[i]).label is not None  # served, not logged
    finally:
        other.execute("ROLLBACK")
        other.close()
    clock.advance(61)
    for i in range(300):
        rt.predict(rows[i])
    assert rt.monitor.health().state == "ok"  # type: ignore[attr-defined]
    assert rt.monitor.health().unlogged_decisions == 100  # type: ignore[attr-defined]
    rt.close()
    with MonitoringDatabase(db) as reader:
        status = reader.status()
    assert status.decisions == 1 + 300
    assert any(e.name == "recovered" for e in status.events)
