"""The fault campaign: a hundred seeded kill -9s at random moments, and what survives them.

Each trial starts a child process that serves and monitors in one scenario (single
rows, batches on the worker thread, windows closing all the time, retention
deleting as it writes, a migration of an older database, several writers starting
on a fresh file at once) and kills it with SIGKILL at a seeded random moment. The
database of each scenario is reused trial after trial, so every trial is also a
restart. After each kill:

- the file passes ``PRAGMA integrity_check``;
- every decision flushed before the kill is there (the child prints the last
  request id of each completed ``flush()``);
- no request id was ever logged twice, across all the restarts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sqlite_utils import Database

from edge_runtime.monitoring.migrations import migrations
from edge_runtime.monitoring.store import MonitorStore

TRIALS = 100
SCENARIOS = ("rows", "batches", "windows", "retention", "migration", "startup")

CHILD = textwrap.dedent("""
    import sys, numpy as np
    from sklearn.datasets import load_breast_cancer
    from edge_runtime import Runtime, RuntimeConfig
    from edge_runtime.config import MonitoringConfig, RetentionPolicy
    bundle, db, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = load_breast_cancer().data
    monitoring = dict(db=db, flush_rows=256, flush_ms=60_000, window_rows=1000)
    # The other scenarios must never delete a flushed decision: their row bound is far above
    # what their trials write (the default 1,000,000 rows was within 1% of it for batches).
    retention = RetentionPolicy(max_rows=100_000_000)
    if scenario == "windows":
        monitoring["window_rows"] = 50
    if scenario == "retention":
        retention = RetentionPolicy(max_rows=3000)
    rt = Runtime(bundle, config=RuntimeConfig(monitoring=MonitoringConfig(**monitoring), retention=retention))
    print("ready", flush=True)
    batch = np.concatenate([rows, rows])[:512]
    for i in range(1, 10_000_000):
        if scenario in ("rows", "retention", "startup", "migration"):
            last = rt.predict(rows[i % len(rows)]).request_id
            due = i % 300 == 0
        else:
            size = 64 if scenario == "windows" else 512
            last = int(rt.predict_batch(batch[:size]).request_ids[-1])
            due = i % 4 == 0
        if due:
            rt.flush()
            # One write per line: under PYTHONUNBUFFERED, print()'s pieces reach the pipe one by
            # one, and a kill between them leaves "flushed" without its id (CI saw that).
            sys.stdout.write(f"flushed {last}\\n")
            sys.stdout.flush()
""")


def _old_database(path: Path) -> None:
    """A database of the schema before several writers (m004), with a little data."""
    db = Database(path)
    migrations.apply(db, stop_before="m005_several_writers")
    db.execute("INSERT INTO models (id, name, version, sha256) VALUES (1, 'old', '1', '00')")
    db.close()


def _flushed(out: str) -> list[int]:
    """The ids the child promised: only whole lines count, since the kill can cut the last one."""
    return [int(line.split()[1]) for line in out.split("\n")[:-1] if line.startswith("flushed ")]


def _logged(path: Path) -> tuple[bool, list[int]]:
    store = MonitorStore(path)
    try:
        return store.integrity_ok(), [d["request_id"] for d in store.decisions()]
    finally:
        store.close()


@pytest.mark.slow
def test_a_hundred_kills_lose_nothing_flushed_and_reuse_no_id(tmp_path: Path, cancer_bundle: Path) -> None:
    rng = np.random.default_rng(20261130)
    promised: dict[str, set[int]] = {s: set() for s in SCENARIOS}
    seen: dict[str, set[int]] = {s: set() for s in SCENARIOS}
    kills = 0
    for trial in range(TRIALS):
        scenario = SCENARIOS[trial % len(SCENARIOS)]
        db = tmp_path / f"{scenario}.db"
        if scenario == "migration":  # a new old-schema database each time: promises start afresh
            db = tmp_path / f"migration-{trial}.db"
            _old_database(db)
            promised[scenario] = set()
        writers = 3 if scenario == "startup" else 1
        children = [subprocess.Popen([sys.executable, "-c", CHILD, str(cancer_bundle), str(db), scenario],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(writers)]
        if scenario in ("startup", "migration"):
            # Killed while importing, opening, migrating, or soon after: ~0.2-1.5 s in.
            time.sleep(float(rng.uniform(0.2, 1.5)))
        else:
            assert children[0].stdout is not None
            assert children[0].stdout.readline().strip() == "ready", children[0].stderr.read() if children[0].stderr else ""
            time.sleep(float(rng.uniform(0.0, 0.8)))
        for child in children:
            os.kill(child.pid, signal.SIGKILL)
        for child in children:
            out, _ = child.communicate(timeout=60)
            assert child.returncode == -signal.SIGKILL
            promised[scenario].update(_flushed(out)[-1:])
        kills += writers
        if not db.exists():
            continue  # killed before the file was created
        ok, ids = _logged(db)
        assert ok, f"trial {trial} ({scenario}): integrity_check failed"
        assert len(ids) == len(set(ids)), f"trial {trial} ({scenario}): a request id logged twice"
        if scenario != "retention":  # retention deletes old decisions on purpose
            assert seen[scenario] <= set(ids), f"trial {trial} ({scenario}): decisions lost"
        missing = {i for i in promised[scenario] if i not in ids and scenario != "retention"}
        assert not missing, f"trial {trial} ({scenario}): flushed decisions {sorted(missing)} are gone"
        if scenario == "retention" and promised[scenario]:
            assert max(promised[scenario]) in ids  # the newest flushed decision is kept
        seen[scenario] = set(ids) if scenario != "migration" else set()
    assert kills >= TRIALS
    # After all the kills, a writer on each database still starts and its ids are new.
    from edge_runtime import Runtime

    for scenario in ("rows", "batches", "windows", "retention", "startup"):
        db = tmp_path / f"{scenario}.db"
        _, before = _logged(db)
        with Runtime(cancer_bundle, db=db) as rt:
            fresh = rt.predict(np.zeros(30)).request_id
        assert fresh is not None and fresh not in before
