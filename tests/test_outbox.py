"""The sync outbox: written with each window, kept until sent once enrolled, merged under pressure,
losses counted, dead letters, and the lease between processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.config import RetentionPolicy
from edge_runtime.errors import SyncError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.store import MERGE_GROUP, OUTBOX_SHARE, MonitorStore
from edge_runtime.sync.outbox import Outbox
from tests.sync_helpers import FakeClock, window

ROOT = Path(__file__).parent.parent


def verdict_rows(status: str) -> list[dict[str, Any]]:
    return [{"name": "x0", "kind": "numeric", "status": status, "metric": "ks", "value": 0.2, "threshold": 0.3,
             "warn_threshold": 0.1, "details": None}]


def test_every_closed_window_gets_its_outbox_row_in_its_transaction(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.db")
    record = window(seed=1)
    store.save_window(record, verdict_rows("warn"), [])
    outbox = Outbox(store)
    [entry] = outbox.pending()
    assert (entry.seq_first, entry.seq_last, entry.windows, entry.attempts) == (record["seq"],) * 2 + (1, 0)
    document, profile = outbox.document(entry)
    assert profile == record["profile"]
    assert (document["rows"], document["rejected"], document["partial"], document["model_sha256"]) == (
        2000, 1, False, "ab" * 32)
    assert document["quality"] == record["quality"] and document["budget"] == record["budget"]
    assert [(v["name"], v["status"]) for v in document["verdicts"]] == [("x0", "warn")]
    # Saved again (a retried write): still one row, and its attempts are kept.
    outbox.mark_attempted(entry)
    store.save_window(record, None, [])
    assert [(e.seq_first, e.attempts) for e in outbox.pending()] == [(record["seq"], 1)]
    store.close()


def test_before_enrolment_outbox_rows_go_with_their_windows_and_nothing_is_lost(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.db", RetentionPolicy(max_windows=3, max_age_days=0))
    for seed in range(6):
        store.save_window(window(rows=50, seed=seed), None, [])
    store.enforce_retention()
    outbox = Outbox(store)
    assert [w["seq"] for w in store.windows()] == [3, 4, 5]
    assert [e.seq_first for e in outbox.pending()] == [3, 4, 5]
    assert outbox.losses() == {} and outbox.status().device_id is None
    store.close()


def test_once_enrolled_retention_never_deletes_a_window_still_in_the_outbox(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MonitorStore(tmp_path / "m.db", RetentionPolicy(max_windows=2, max_age_days=1), clock=clock)
    outbox = Outbox(store)
    outbox.enroll("dev-1")
    for seed in range(5):
        store.save_window(window(rows=50, seed=seed, closed_at=clock.now), None, [])
    clock.now += 5 * 86400  # every window is past the age bound too
    store.enforce_retention()
    assert [w["seq"] for w in store.windows()] == [0, 1, 2, 3, 4]
    for entry in outbox.pending()[:3]:
        outbox.mark_sent(entry, 100)
    store.enforce_retention()  # sent: retention's again
    assert [w["seq"] for w in store.windows()] == [3, 4]
    assert outbox.status().windows_sent == 3 and outbox.status().bytes_sent == 300
    with pytest.raises(SyncError, match="syncs as device 'dev-1', not 'dev-2'"):
        outbox.enroll("dev-2")
    outbox.enroll("dev-1")  # the same id again: nothing changes
    store.close()


def _fill(store: MonitorStore, n: int, *, stride: int = 1, rows: int = 1500) -> dict[int, int]:
    """Close n windows (running retention as the monitor does); their rows by seq."""
    rows_by_seq = {}
    for i in range(n):
        record = window(rows=rows + i, seed=i, stride=stride, closed_at=1_700_000_000.0 + 60 * i)
        store.save_window(record, verdict_rows("drift" if i % 5 == 0 else "ok"), [])
        rows_by_seq[record["seq"]] = record["rows"]
        store.enforce_retention()
    return rows_by_seq


def test_outbox_past_its_share_merges_the_oldest_never_attempted_windows(tmp_path: Path) -> None:
    policy = RetentionPolicy(max_bytes=400_000, max_age_days=0)
    store = MonitorStore(tmp_path / "m.db", policy)
    outbox = Outbox(store)
    outbox.enroll("dev-1")
    store.save_window(window(rows=1000, seed=99), None, [])  # window 0: tried once, so never merged
    tried = outbox.pending()[0]
    outbox.mark_attempted(tried)
    rows_by_seq = {0: 1000, **_fill(store, 60)}
    status = outbox.status()
    entries = outbox.pending(1000)
    assert status.outbox_bytes <= OUTBOX_SHARE * policy.max_bytes
    assert entries[0].seq_first == 0 and entries[0].seq_last == 0 and entries[0].attempts == 1
    merged = [e for e in entries if e.seq_last > e.seq_first]
    assert merged and all(e.windows == e.seq_last - e.seq_first + 1 for e in entries)
    assert max(e.windows for e in merged) >= MERGE_GROUP ** 2  # merged again once merged ...
    sizes = [e.windows for e in entries[1:]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] < len(rows_by_seq) / 2  # ... in tiers, oldest coarsest
    # Every window is in the outbox exactly once (or counted lost): ranges do not overlap.
    covered = [s for e in entries for s in range(e.seq_first, e.seq_last + 1)]
    assert len(covered) == len(set(covered))
    lost = sum(status.losses.values())
    assert len(covered) + lost == len(rows_by_seq) and lost == 0
    for entry in merged:  # the merged document and profile carry the sums of their windows
        document, profile = outbox.document(entry)
        expected = sum(rows_by_seq[s] for s in range(entry.seq_first, entry.seq_last + 1))
        assert document["rows"] == expected == Profile.from_bytes(profile).rows
        assert document["rejected"] == entry.windows
        assert document["quality"]["features"]["x0"] == {"missing": entry.windows, "out_of_range": 2 * entry.windows}
        assert document["latency"]["p50_us"] > 5  # read from the merged latency sketch
        drifted = any(s % 5 == 1 for s in range(entry.seq_first, entry.seq_last + 1))  # seq i+1 had i % 5 == 0
        assert [v["status"] for v in document["verdicts"]] == ["drift" if drifted else "ok"]
    assert store.integrity_ok()
    store.close()


def test_windows_that_cannot_merge_are_dropped_and_counted_as_lost(tmp_path: Path) -> None:
    policy = RetentionPolicy(max_bytes=200_000, max_age_days=0)
    store = MonitorStore(tmp_path / "m.db", policy)
    outbox = Outbox(store)
    outbox.enroll("dev-1")
    total = 0
    for i in range(40):  # every window tried once (the collector timed out): none may be merged
        store.save_window(window(rows=2000, seed=i, stride=1 + i % 2), None, [])
        outbox.mark_attempted(outbox.pending(1000)[-1])
        store.enforce_retention()
        total += 1
    status = outbox.status()
    assert status.losses["outbox_full"] > 0
    assert status.outbox_windows + status.losses["outbox_full"] == total
    assert status.outbox_bytes <= OUTBOX_SHARE * policy.max_bytes
    entries = outbox.pending(100)
    assert all(e.seq_first == e.seq_last for e in entries) and entries[-1].seq_first == total - 1  # the oldest went
    assert len(store.windows()) < total  # the dropped rows' windows went with normal retention
    store.close()


def test_windows_of_different_strides_merge(tmp_path: Path) -> None:
    policy = RetentionPolicy(max_bytes=300_000, max_age_days=0)
    store = MonitorStore(tmp_path / "m.db", policy)
    outbox = Outbox(store)
    outbox.enroll("dev-1")
    for i in range(40):  # a config change between windows: strides 1, 2, 4
        store.save_window(window(rows=2000, seed=i, stride=(1, 2, 4)[i % 3]), None, [])
        store.enforce_retention()
    merged = [e for e in outbox.pending(100) if e.windows > 1]
    assert merged and outbox.losses() == {}
    for entry in merged:
        _, profile = outbox.document(entry)  # type: ignore[misc]
        assert Profile.from_bytes(profile).rows == 2000 * entry.windows
    store.close()


def test_a_dead_letter_leaves_the_outbox_and_is_counted(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.db")
    outbox = Outbox(store)
    outbox.enroll("dev-1")
    for seed in range(3):
        store.save_window(window(rows=50, seed=seed), None, [])
    first = outbox.pending()[0]
    outbox.mark_attempted(first)
    outbox.dead_letter(first, 422, "unsupported version 9")
    assert [e.seq_first for e in outbox.pending()] == [1, 2]
    status = outbox.status()
    assert status.dead_letters == 1 and status.losses == {"rejected": 1}
    [dead] = status.recent_dead_letters
    assert (dead.seq_first, dead.status, dead.detail, dead.attempts) == (0, 422, "unsupported version 9", 1)
    assert json.loads(json.dumps(status.to_dict()))["recent_dead_letters"][0]["status"] == 422
    store.close()


def test_the_lease_is_held_by_one_holder_until_released_or_expired(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MonitorStore(tmp_path / "m.db", clock=clock)
    outbox = Outbox(store)
    assert outbox.take_lease("a", 30) and not outbox.take_lease("b", 30)
    clock.now += 20
    assert outbox.take_lease("a", 30)  # renewed: now until +50
    clock.now += 20
    assert not outbox.take_lease("b", 30) and outbox.lease_holder() == "a"
    clock.now += 11  # expired: a died
    assert outbox.lease_holder() is None and outbox.take_lease("b", 30)
    assert not outbox.renew_lease("a", 30) and outbox.renew_lease("b", 60)  # a lost it; b holds until +60
    clock.now += 45
    assert outbox.lease_holder() == "b"
    outbox.release_lease("a")  # not a's to give up
    assert outbox.lease_holder() == "b"
    outbox.release_lease("b")
    assert outbox.take_lease("a", 30)
    store.close()


_CONTENDER = textwrap.dedent("""
    import os, sys, time
    from edge_runtime.monitoring.store import MonitorStore
    from edge_runtime.sync.outbox import Outbox
    db, marker, name = sys.argv[1], sys.argv[2], sys.argv[3]
    outbox = Outbox(MonitorStore(db, lock_timeout=30.0))
    held = overlaps = 0
    deadline = time.monotonic() + 60
    while held < 20 and time.monotonic() < deadline:
        if not outbox.take_lease(name, 60.0):
            continue
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            overlaps += 1
        else:
            os.close(fd)
            time.sleep(0.001)
            os.unlink(marker)
        held += 1
        outbox.release_lease(name)
    print(held, overlaps)
""")


def test_two_processes_never_hold_the_lease_at_once(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    MonitorStore(db).close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    children = [subprocess.Popen([sys.executable, "-c", _CONTENDER, str(db), str(tmp_path / "held"), name],
                                 stdout=subprocess.PIPE, text=True, env=env) for name in ("a", "b")]
    results = [child.communicate(timeout=120)[0].split() for child in children]
    assert all(child.returncode == 0 for child in children)
    assert [r[1] for r in results] == ["0", "0"]  # never both inside
    assert [r[0] for r in results] == ["20", "20"]  # and each got its turns
