"""Several writers on one monitoring database, and many threads on one Runtime: nothing lost, nothing shared.

Request ids and window numbers come from the database, so they are unique across
Runtimes, processes and restarts; every decision is logged and every window
records the writer that closed it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edge_runtime import MonitoringDatabase, Runtime
from edge_runtime.monitoring.store import MonitorStore


def _logged_ids(db: Path) -> list[int]:
    store = MonitorStore(db, create=False)
    try:
        return [d["request_id"] for d in store.decisions()]
    finally:
        store.close()


def test_threads_share_one_runtime(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    with Runtime(cancer_bundle) as alone:
        expected = [alone.predict(r).label for r in rows]
        expected_proba = np.array([alone.predict(r).scores for r in rows])
    failures: list[BaseException] = []
    answers: dict[int, list[tuple[int, Any, Any]]] = {}
    with Runtime(cancer_bundle, db=tmp_path / "m.db", window_rows=1000) as rt:

        def serve(worker: int) -> None:
            mine = answers.setdefault(worker, [])
            try:
                order = np.random.default_rng(worker).permutation(len(rows))
                for i in np.concatenate([order, order, order]).tolist():
                    p = rt.predict(rows[i])
                    mine.append((i, p.label, p.request_id))
                    assert np.allclose(p.scores, expected_proba[i], atol=1e-6)
                batch = rt.predict_batch(rows[:300])
                mine.extend((i, label, rid) for i, label, rid in zip(range(300), batch.labels, batch.request_ids))
            except BaseException as exc:  # surfaced below, with the thread's name
                failures.append(exc)

        threads = [threading.Thread(target=serve, args=(w,), name=f"serve-{w}") for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures
    served = [a for mine in answers.values() for a in mine]
    assert len(served) == 4 * (3 * len(rows) + 300)
    assert all(label == expected[i] for i, label, _ in served)
    ids = [rid for _, _, rid in served]
    assert len(set(ids)) == len(ids)  # no two answers share a request id
    assert sorted(_logged_ids(tmp_path / "m.db")) == sorted(ids)  # and every one is logged
    with MonitoringDatabase(tmp_path / "m.db") as db:
        assert sum(w.rows for w in db.drift().windows) == len(ids)


def test_runtimes_of_one_process_share_a_database(tmp_path: Path, cancer_bundle: Path, cancer_data: Any) -> None:
    rows = cancer_data[0].to_numpy()
    db = tmp_path / "m.db"
    first = Runtime(cancer_bundle, db=db, window_rows=500)
    second = Runtime(cancer_bundle, db=db, window_rows=500)
    ids = []
    for i in range(2500):
        ids.append(first.predict(rows[i % len(rows)]).request_id)
        ids.append(second.predict(rows[(i + 7) % len(rows)]).request_id)
    first.close()
    second.close()
    assert len(set(ids)) == 5000
    assert sorted(_logged_ids(db)) == sorted(ids)
    with MonitoringDatabase(db) as reader:
        windows = reader.drift().windows
    assert sum(w.rows for w in windows) == 5000
    assert len({w.index for w in windows}) == len(windows)
    assert {w.writer for w in windows} == {1, 2}
    # Restarted, a writer carries on after every id ever handed out.
    with Runtime(cancer_bundle, db=db) as third:
        assert third.predict(rows[0]).request_id > max(ids)


CHILD = """
import sys
from edge_runtime.cli import main
main(["predict", sys.argv[1], "--input", sys.argv[2], "--db", sys.argv[3], "--window-rows", "2000",
      "--output", sys.argv[4], "--batch-size", sys.argv[5]], prog_name="edge-runtime")
"""


@pytest.mark.slow
def test_processes_write_one_database_and_lose_nothing(tmp_path: Path, cancer_bundle: Path,
                                                      cancer_data: Any) -> None:
    frame = cancer_data[0]
    source = tmp_path / "rows.csv"
    pd.concat([frame] * 15, ignore_index=True).iloc[:8000].to_csv(source, index=False)
    db = tmp_path / "m.db"  # created by the children, all at once
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(cancer_bundle), str(source), str(db),
                                  str(tmp_path / f"out{i}.csv"), str(batch)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i, batch in enumerate((1, 64, 512, 1024))]
    for child in children:
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
    ids = _logged_ids(db)
    with MonitoringDatabase(db) as reader:
        failures = [e.message for e in reader.status().events if e.kind == "monitoring"]
    assert len(ids) == 4 * 8000 and len(set(ids)) == len(ids), failures
    with MonitoringDatabase(db) as reader:
        windows = reader.drift().windows
        status = reader.status()
    assert sum(w.rows for w in windows) == 4 * 8000
    assert len({w.writer for w in windows}) == 4 and status.decisions == 4 * 8000
