"""One contract for every fleet store: SQLite and a real PostgreSQL behave the same."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from dataclasses import replace

import pytest

from collector.errors import UnknownDeviceError
from collector.stores import (
    FleetRetention,
    FleetStore,
    ModelRecord,
    PendingPart,
    StoredWindow,
    WindowKey,
    open_store,
)
from collector.stores.rows import window_to_row
from edge_runtime.errors import ConfigError

KEY = "ed25519:" + "A" * 43 + "="


@pytest.fixture
def store_url(fleet_store_url: str) -> str:
    return fleet_store_url


@pytest.fixture
def store(store_url: str) -> Iterator[FleetStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def window(seq: int = 1, *, device: str = "pump-7", database: str = "db-1", model: str = "a" * 64,
           closed_at: float = 1000.0, received_at: float = 1010.0, **changes: object) -> StoredWindow:
    made = StoredWindow(
        device_id=device, database_id=database, model_sha256=model, seq_first=seq, model_name="churn",
        model_version="2.1", seq_last=seq, opened_at=closed_at - 60, closed_at=closed_at,
        corrected_closed_at=closed_at, received_at=received_at, rows=100, rejected=2, partial=False,
        quality={"missing": {"age": 3}, "nan": math.nan}, latency={"p99_ms": 1.5}, budget=None,
        verdicts=[{"name": "age", "status": "drift", "value": 0.31, "details": None}],
        profile=b"\x00profile\xff" * 10, losses={"merged": 1}, outbox_depth=4, boot_id="boot-1", drift_count=1)
    return replace(made, **changes)  # type: ignore[arg-type]


def same(a: StoredWindow, b: StoredWindow) -> bool:
    """Equal, NaN included (NaN != NaN would make equal windows differ)."""
    return repr(a) == repr(b)


# ------------------------------------------------------------------ opening
def test_open_store_refuses_an_unknown_scheme() -> None:
    with pytest.raises(ConfigError, match="unknown scheme 'mysql'"):
        open_store("mysql://fleet")


def test_the_store_satisfies_the_protocol(store: FleetStore) -> None:
    assert isinstance(store, FleetStore)


def test_reopening_keeps_what_was_stored(store_url: str) -> None:
    first = open_store(store_url)
    first.insert_window(window())
    first.close()
    again = open_store(store_url)
    assert again.window_count() == 1
    again.close()


# ------------------------------------------------------------------ devices
def test_devices_are_added_removed_and_readded(store: FleetStore) -> None:
    added = store.add_device("pump-7", KEY, now=5.0)
    assert (added.device_id, added.public_key, added.added_at, added.last_seen, added.removed) == (
        "pump-7", KEY, 5.0, None, False)
    store.remove_device("pump-7")
    assert store.device("pump-7").removed  # type: ignore[union-attr]
    again = store.add_device("pump-7", KEY.replace("A", "B"), now=9.0)
    assert (again.removed, again.public_key, again.added_at) == (False, KEY.replace("A", "B"), 5.0)
    assert store.device("nobody") is None
    with pytest.raises(UnknownDeviceError, match="device 'nobody' is not registered"):
        store.remove_device("nobody")
    store.add_device("alpha", KEY, now=1.0)
    assert [d.device_id for d in store.devices()] == ["alpha", "pump-7"]


def test_last_seen_only_moves_forward(store: FleetStore) -> None:
    store.add_device("pump-7", KEY, now=0.0)
    store.touch_device("pump-7", 50.0)
    store.touch_device("pump-7", 20.0)
    assert store.device("pump-7").last_seen == 50.0  # type: ignore[union-attr]


# ------------------------------------------------------------------ models
def test_models_round_trip_and_replace(store: FleetStore) -> None:
    model = ModelRecord(sha256="b" * 64, name="churn", version="2.1", reference_profile=b"\x01\x02",
                        manifest={"schema": {"features": [{"name": "age"}]}, "drift": {"psi": 0.2}}, added_at=3.0)
    store.add_model(model)
    assert store.model("b" * 64) == model
    assert store.model("c" * 64) is None
    newer = replace(model, reference_profile=b"\x03", added_at=4.0)
    store.add_model(newer)
    store.add_model(replace(model, sha256="0" * 64, name="alpha"))
    assert [m.sha256 for m in store.models()] == ["0" * 64, "b" * 64]
    assert store.model("b" * 64) == newer


# ------------------------------------------------------------------ windows
def test_a_window_reads_back_equal(store: FleetStore) -> None:
    written = window()
    assert store.insert_window(written)
    (read,) = store.windows()
    assert same(read, written)
    assert read.key == WindowKey("pump-7", "db-1", "a" * 64, 1)
    assert store.has_window(read.key)


def test_a_window_is_stored_once_whatever_else_differs(store: FleetStore) -> None:
    assert store.insert_window(window(received_at=1.0))
    assert not store.insert_window(window(received_at=2.0, rows=7))
    (kept,) = store.windows()
    assert (kept.received_at, kept.rows) == (1.0, 100)
    # Each part of the key counts: another database id, model or device is another window.
    assert store.insert_window(window(database="db-2"))
    assert store.insert_window(window(model="f" * 64))
    assert store.insert_window(window(device="pump-8"))
    assert store.window_count() == 4
    assert store.window_count("pump-7") == 3


def test_concurrent_inserts_of_one_window_store_it_once(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    results: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def insert(s: FleetStore) -> None:
        barrier.wait()
        results.append(s.insert_window(window()))

    threads = [threading.Thread(target=insert, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert stores[0].window_count() == 1
    for s in stores:
        s.close()


def test_windows_filter_by_model_device_and_corrected_time(store: FleetStore) -> None:
    for seq, closed in enumerate([100.0, 300.0, 200.0], start=1):
        store.insert_window(window(seq, closed_at=closed))
    store.insert_window(window(9, model="f" * 64, closed_at=150.0))
    store.insert_window(window(1, device="pump-8", closed_at=200.0))
    assert [(w.device_id, w.seq_first) for w in store.windows()] == [
        ("pump-7", 1), ("pump-7", 9), ("pump-7", 3), ("pump-8", 1), ("pump-7", 2)]
    assert [w.seq_first for w in store.windows("a" * 64, since=150.0, until=300.0, device_id="pump-7")] == [3]
    assert [w.seq_first for w in store.windows(model_sha256="f" * 64)] == [9]
    assert [w.seq_first for w in store.windows(until=150.0)] == [1]


def test_a_window_without_latency_or_budget_keeps_none(store: FleetStore) -> None:
    store.insert_window(window(latency=None, budget=None, verdicts=[], drift_count=0, partial=True))
    (read,) = store.windows()
    assert (read.latency, read.budget, read.verdicts, read.partial) == (None, None, [], True)


# ------------------------------------------------------------------ parts
def part(number: int, parts: int = 3, document: str = "d" * 64) -> PendingPart:
    return PendingPart(key=WindowKey("pump-7", "db-1", "a" * 64, 1), document_sha256=document, part=number,
                       parts=parts, message=bytes([number]) * 5, received_at=10.0 + number)


def test_parts_gather_once_each_in_order(store: FleetStore) -> None:
    assert [p.part for p in store.add_part(part(2))] == [2]
    assert [p.part for p in store.add_part(part(2))] == [2]
    held = store.add_part(part(0))
    assert [(p.part, p.message) for p in held] == [(0, b"\x00" * 5), (2, b"\x02" * 5)]
    # Another encoding of the same window (a re-send after a restart) is gathered apart.
    assert [p.part for p in store.add_part(part(1, document="e" * 64))] == [1]
    assert [p.part for p in store.add_part(part(1))] == [0, 1, 2]
    # Storing the window drops its parts, of every encoding.
    store.insert_window(window())
    assert [p.part for p in store.add_part(part(1, document="e" * 64))] == [1]


# ------------------------------------------------------------------ clocks
def test_the_boot_offset_is_the_smallest_delay_seen(store: FleetStore) -> None:
    year = 365 * 86400.0
    # Device wall clock a year behind; its monotonic clock started 1000 s before collector time 1e9.
    first = store.observe_clock("pump-7", "boot-1", sent_wall=1e9 - year, sent_mono=0.0, received_at=1e9 + 0.5)
    assert (first.offset, first.samples) == (1e9 + 0.5, 1)
    second = store.observe_clock("pump-7", "boot-1", sent_wall=1e9 - year + 60, sent_mono=60.0,
                                 received_at=1e9 + 60.1)
    assert second.offset == pytest.approx(1e9 + 0.1)
    assert second.skew == pytest.approx(-year - 0.1)
    assert second.samples == 2
    # A slower message does not move the estimate.
    third = store.observe_clock("pump-7", "boot-1", sent_wall=1e9 - year + 120, sent_mono=120.0,
                                received_at=1e9 + 125.0)
    assert third.offset == pytest.approx(1e9 + 0.1)
    assert third.correct(1e9 - year + 100, sent_wall=1e9 - year + 120, sent_mono=120.0) == pytest.approx(
        1e9 + 100.1)
    store.observe_clock("pump-7", "boot-2", sent_wall=5.0, sent_mono=1.0, received_at=1e9 + 200)
    store.observe_clock("pump-8", "boot-9", sent_wall=5.0, sent_mono=1.0, received_at=1e9 + 300)
    assert [(c.device_id, c.boot_id) for c in store.clock_offsets("pump-7")] == [
        ("pump-7", "boot-1"), ("pump-7", "boot-2")]
    assert len(store.clock_offsets()) == 3


# ------------------------------------------------------------------ rejections
def test_rejections_are_counted_by_reason(store: FleetStore) -> None:
    assert dict(store.rejections()) == {}
    for reason, device in [("bad-signature", "pump-7"), ("bad-signature", "pump-8"), ("bad-signature", "pump-7"),
                           ("malformed", None)]:
        store.count_rejection(reason, device)
    assert dict(store.rejections()) == {"bad-signature": 3, "malformed": 1}


# ------------------------------------------------------------------ retention
def test_retention_by_age_keeps_recent_windows(store: FleetStore) -> None:
    for seq in range(1, 6):
        store.insert_window(window(seq, received_at=100.0 * seq))
    assert store.enforce_retention(FleetRetention(max_age_seconds=250.0), now=500.0) == 2
    assert [w.seq_first for w in store.windows()] == [3, 4, 5]


def test_retention_by_count_keeps_the_latest_received(store: FleetStore) -> None:
    for seq in range(1, 6):
        store.insert_window(window(seq, received_at=100.0 * seq))
    assert store.enforce_retention(FleetRetention(max_windows=2), now=500.0) == 3
    assert [w.seq_first for w in store.windows()] == [4, 5]
    assert store.enforce_retention(FleetRetention(max_windows=2), now=500.0) == 0


def test_retention_drops_stale_parts(store: FleetStore) -> None:
    store.add_part(part(0))
    store.enforce_retention(FleetRetention(pending_max_age_seconds=100.0), now=1000.0)
    assert [p.part for p in store.add_part(part(1))] == [1]


def test_retention_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="'max_windows' parameter of FleetRetention must be an int >= 1"):
        FleetRetention(max_windows=0)


# ------------------------------------------------------------------ PostgreSQL partitioning (docs/fleet.md)
def test_the_documented_time_partitioning_keeps_the_store_working(postgres_server: object) -> None:
    """docs/fleet.md's SQL turns windows into monthly partitions; the store then works unchanged."""
    import re
    from pathlib import Path

    import psycopg

    doc = (Path(__file__).parent.parent / "docs" / "fleet.md").read_text()
    sql = re.search(r"<!-- partitioning-sql[^>]*-->\n```sql\n(.*?)```", doc, re.S)
    assert sql is not None
    url = postgres_server.new_database()  # type: ignore[attr-defined]
    store = open_store(url)
    november, december, old = 1793491200.0 + 86400, 1796083200.0 + 86400, 1.0e9
    store.insert_window(window(1, closed_at=november, received_at=1.0))
    store.insert_window(window(2, closed_at=old, received_at=2.0))
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.group(1).encode())
    store = open_store(url)
    assert not store.insert_window(window(1, closed_at=november))  # still a duplicate
    assert store.insert_window(window(3, closed_at=december, received_at=3.0))
    assert store.insert_window(window(4, closed_at=november, received_at=4.0))
    assert [w.seq_first for w in store.windows()] == [2, 1, 4, 3]
    assert store.enforce_retention(FleetRetention(max_windows=3), now=10.0) == 1  # seq 1, received first
    assert [w.seq_first for w in store.windows()] == [2, 4, 3]
    store.close()
    with psycopg.connect(url) as conn:
        counts = dict(conn.execute("SELECT tableoid::regclass::text, count(*) FROM windows GROUP BY 1").fetchall())
    assert counts == {"windows_default": 1, "windows_2026_11": 1, "windows_2026_12": 1}


def test_a_postgresql_store_reconnects_after_losing_its_connection(postgres_server: object) -> None:
    """A dropped connection (server restart, failover) fails one call (HTTP 503: the device
    retries), and the next call connects again."""
    import psycopg

    from collector.errors import FleetStoreError

    url = postgres_server.new_database()  # type: ignore[attr-defined]
    store = open_store(url)
    store.insert_window(window(1))
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(FleetStoreError):
        store.insert_window(window(2))
    assert store.insert_window(window(2))
    assert store.window_count() == 2
    store.close()


def test_a_missing_server_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.servers import missing_server

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is missing, and CI must run every server test"):
        missing_server("PostgreSQL")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        missing_server("PostgreSQL")


def test_windows_are_read_page_by_page_in_one_total_order(store: FleetStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.stores import postgres_store, sqlite_store

    for module in (sqlite_store, postgres_store):
        monkeypatch.setattr(module, "_PAGE", 2)
    written = [window(seq, device=device, database=database, closed_at=float(seq % 3))
               for seq in range(1, 8) for device in ("b", "a") for database in ("db-2", "db-1")]
    for w in written:
        store.insert_window(w)
    expected = sorted((w.corrected_closed_at, w.device_id, w.database_id, w.model_sha256, w.seq_first) for w in written)
    assert [(w.corrected_closed_at, w.device_id, w.database_id, w.model_sha256, w.seq_first)
            for w in store.windows()] == expected
    assert len(list(store.windows(device_id="a", since=1.0))) == 10


# ------------------------------------------------------------------ base buckets, light reads, group commits
@pytest.fixture(scope="module")
def simulated() -> tuple[ModelRecord, list[StoredWindow]]:
    from collector.simulation import simulate_fleet

    # 4 devices x 6 windows a minute apart: two or three 5-minute base buckets.
    return simulate_fleet(devices=4, windows_per_device=6, features=3, rows=(300, 1200), seed=3, judge=False,
                          window_seconds=60.0, start=1_800_000_000.0)


def _merged(windows: list[StoredWindow]) -> dict[tuple[str, float], int]:
    """The rows of each base bucket, merged from the windows directly."""
    from collector.buckets import BASE_BUCKET_SECONDS, bucket_start, merge_into_bucket
    from edge_runtime.monitoring.data_profile import Profile

    buckets: dict[tuple[str, float], bytes] = {}
    for w in windows:
        key = (w.model_sha256, bucket_start(w.corrected_closed_at, BASE_BUCKET_SECONDS))
        buckets[key] = merge_into_bucket(buckets.get(key), w)
    return {key: Profile.from_bytes(b).rows for key, b in buckets.items()}


def _stored_buckets(store: FleetStore) -> dict[tuple[str, float], int]:
    from edge_runtime.monitoring.data_profile import Profile

    return {key: Profile.from_bytes(b).rows for key, b in store.bucket_profiles().items()}


def test_stored_windows_are_merged_into_base_buckets_once(store: FleetStore,
                                                          simulated: tuple[ModelRecord, list[StoredWindow]]) -> None:
    _, windows = simulated
    for w in windows:
        assert store.insert_window(w)
    for w in windows[:5]:
        assert not store.insert_window(w)  # a duplicate merges nothing
    assert _stored_buckets(store) == _merged(windows)
    sha = windows[0].model_sha256
    later = max(start for _, start in store.bucket_profiles())
    assert list(store.bucket_profiles(sha, since=later)) == [(sha, later)]
    assert store.bucket_profiles("f" * 64) == {}


def test_a_window_whose_profile_is_unreadable_is_stored_in_no_bucket(store: FleetStore) -> None:
    assert store.insert_window(window())  # its profile is b"\x00profile\xff" * 10
    assert store.window_count() == 1 and store.bucket_profiles() == {}


def test_the_light_read_leaves_profile_and_verdicts_out(store: FleetStore) -> None:
    written = [window(seq, closed_at=100.0 * seq) for seq in range(1, 4)]
    for w in written:
        store.insert_window(w)
    light = list(store.windows(since=150.0, with_profile=False))
    assert [same(a, replace(b, profile=b"", verdicts=[])) for a, b in zip(light, written[1:], strict=True)] == [
        True, True]
    assert [w.drift_count for w in light] == [1, 1]
    assert [dict(w.signals) for w in light] == [{"age": (2, 0.0)}] * 2  # the verdicts in brief stay


def test_arrivals_commit_together(store: FleetStore, simulated: tuple[ModelRecord, list[StoredWindow]]) -> None:
    from collector.stores import Arrival

    _, windows = simulated
    store.add_device("dev-000", KEY, now=0.0)
    mine = [w for w in windows if w.device_id == "dev-000"][:3]
    arrivals = [Arrival(device_id="dev-000", boot_id="b", sent_wall=w.closed_at + 5.0, sent_mono=w.closed_at - 1e9,
                        received_at=w.closed_at + 7.0, window=replace(w, corrected_closed_at=math.nan))
                for w in mine]
    arrivals.insert(1, Arrival(device_id="dev-000", boot_id="b", sent_wall=0.0, sent_mono=1.0, received_at=1e9 + 2.0))
    outcomes = store.record_arrivals(arrivals)
    assert [o.stored for o in outcomes] == [True, False, True, True]
    # The boot's offset is the smallest delay seen (1e9 + 1: the window-less message), and each
    # window's close moves by it: device close - sent_wall + sent_mono + offset.
    assert [o.clock.offset for o in outcomes] == [1e9 + 7.0, 1e9 + 1.0, 1e9 + 1.0, 1e9 + 1.0]
    assert outcomes[1].corrected_closed_at is None
    assert [o.corrected_closed_at for o in outcomes[2:]] == pytest.approx([w.closed_at - 5.0 for w in mine[1:]])
    assert [w.corrected_closed_at for w in store.windows()] == pytest.approx(
        [mine[0].closed_at + 2.0, *[w.closed_at - 5.0 for w in mine[1:]]])
    assert store.device("dev-000").last_seen == mine[-1].closed_at + 7.0  # type: ignore[union-attr]
    assert sum(1 for _ in store.bucket_profiles()) >= 1
    # The same windows again: nothing stored, nothing merged twice.
    before = _stored_buckets(store)
    assert [o.stored for o in store.record_arrivals(arrivals)] == [False, False, False, False]
    assert _stored_buckets(store) == before


def _arrive(store: FleetStore, windows: list[StoredWindow]) -> list[int]:
    """Store windows as ingest does (not folded into their buckets); their ids. Clocks that need
    no correction: each window's close on the collector's clock is its own."""
    from collector.stores import Arrival

    for device in sorted({w.device_id for w in windows}):
        store.add_device(device, KEY, now=0.0)
    outcomes = store.record_arrivals([
        Arrival(device_id=w.device_id, boot_id="b", sent_wall=w.received_at, sent_mono=w.received_at,
                received_at=w.received_at, window=w) for w in windows])
    assert [o.corrected_closed_at for o in outcomes] == [w.closed_at for w in windows]
    return [o.window_id for o in outcomes if o.window_id is not None]


def test_windows_folded_later_are_counted_once_before_and_after(
        store: FleetStore, simulated: tuple[ModelRecord, list[StoredWindow]]) -> None:
    from collector.bucket_folding import BucketFolder
    from edge_runtime.monitoring.data_profile import Profile

    _, windows = simulated
    ids = _arrive(store, windows)
    assert len(ids) == len(windows)
    assert _stored_buckets(store) == _merged(windows)  # none folded yet: read from their rows
    folder = BucketFolder(store, max_windows=5, clock=lambda: 0.0)
    for window_id, w in zip(ids, windows, strict=True):
        folder.add(window_id, w.model_sha256, w.closed_at, Profile.from_bytes(w.profile))
        assert _stored_buckets(store) == _merged(windows)  # some folded, some held: each counted once
    assert 0 < folder.pending < 5
    folder.close()
    assert folder.pending == 0 and _stored_buckets(store) == _merged(windows)
    assert store.fold_buckets([], orphans_before=math.inf) == 0  # every window is in its bucket


def test_windows_a_stopped_collector_never_folded_are_folded_once_by_the_next(
        store: FleetStore, simulated: tuple[ModelRecord, list[StoredWindow]]) -> None:
    _, windows = simulated
    _arrive(store, windows)
    first = min(w.received_at for w in windows)
    assert store.fold_buckets([], orphans_before=first) == 0  # none that old
    assert store.fold_buckets([], orphans_before=math.inf) == len(windows)
    assert _stored_buckets(store) == _merged(windows)
    assert store.fold_buckets([], orphans_before=math.inf) == 0


def test_a_fold_whose_windows_were_taken_as_orphans_merges_only_the_rest(
        store: FleetStore, simulated: tuple[ModelRecord, list[StoredWindow]]) -> None:
    from collector.bucket_folding import BucketFolder
    from edge_runtime.monitoring.data_profile import Profile

    _, windows = simulated
    ids = _arrive(store, windows)
    folder = BucketFolder(store, max_windows=10**6, max_seconds=math.inf, clock=lambda: 0.0)
    for window_id, w in zip(ids, windows, strict=True):
        folder.add(window_id, w.model_sha256, w.closed_at, Profile.from_bytes(w.profile))
    # Another collector, long after, takes the older half as orphans; then this one writes.
    middle = sorted(w.received_at for w in windows)[len(windows) // 2]
    taken = store.fold_buckets([], orphans_before=middle)
    assert 0 < taken < len(windows)
    folder.close()
    assert _stored_buckets(store) == _merged(windows)  # nothing merged twice, nothing left out
    assert store.fold_buckets([], orphans_before=math.inf) == 0


def test_the_folder_writes_once_too_many_buckets_are_open(
        store: FleetStore, simulated: tuple[ModelRecord, list[StoredWindow]]) -> None:
    from collector.bucket_folding import BucketFolder
    from collector.buckets import BASE_BUCKET_SECONDS, bucket_start
    from edge_runtime.monitoring.data_profile import Profile

    _, windows = simulated
    ids = _arrive(store, windows)
    folder = BucketFolder(store, max_windows=10**6, max_seconds=math.inf, max_buckets=2, clock=lambda: 0.0)
    opened: set[float] = set()
    added = 0
    for window_id, w in zip(ids, windows, strict=True):
        opened.add(bucket_start(w.closed_at, BASE_BUCKET_SECONDS))
        folder.add(window_id, w.model_sha256, w.closed_at, Profile.from_bytes(w.profile))
        added += 1
        if len(opened) == 2:
            break
    assert folder.pending == 0  # the second bucket opened: both written
    assert store.fold_buckets([], orphans_before=math.inf) == len(windows) - added  # the rest, never added
    assert _stored_buckets(store) == _merged(windows)


def test_a_schema_2_store_opens_with_every_window_in_its_bucket(
        tmp_path: Path, simulated: tuple[ModelRecord, list[StoredWindow]]) -> None:
    import sqlite3

    _, windows = simulated
    path = tmp_path / "old.db"
    store = open_store(f"sqlite:///{path}")
    for w in windows:
        store.insert_window(w)
    store.close()
    with sqlite3.connect(path) as old:  # back to schema 2: no bucketed column
        old.execute("DROP INDEX windows_unbucketed")
        old.execute("ALTER TABLE windows DROP COLUMN bucketed")
        old.execute("PRAGMA user_version=2")
    old.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert _stored_buckets(store) == _merged(windows)
        assert store.fold_buckets([], orphans_before=math.inf) == 0
    finally:
        store.close()


def test_the_document_as_received_stands_for_the_verdicts(store: FleetStore) -> None:
    import json

    from collector.stores import Arrival

    store.add_device("pump-7", KEY, now=0.0)
    written = window()
    document = json.dumps({"device_id": "pump-7", "verdicts": written.verdicts, "quality": {}}).encode()
    store.record_arrivals([Arrival(device_id="pump-7", boot_id="boot-1", sent_wall=0.0, sent_mono=0.0,
                                   received_at=5.0, window=replace(written, verdicts=[]),
                                   row=window_to_row(replace(written, verdicts=[]), document))])
    (read,) = store.windows()
    assert read.verdicts == written.verdicts
    assert dict(read.signals) == dict(written.signals) == {"age": (2, 0.0)}  # the brief, from the document


_SCHEMA_2_WINDOWS = """CREATE TABLE windows (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, database_id TEXT NOT NULL, model_sha256 TEXT NOT NULL,
    seq_first INTEGER NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL, seq_last INTEGER NOT NULL,
    opened_at REAL NOT NULL, closed_at REAL NOT NULL, corrected_closed_at REAL NOT NULL, received_at REAL NOT NULL,
    "rows" INTEGER NOT NULL, rejected INTEGER NOT NULL, partial INTEGER NOT NULL, quality TEXT NOT NULL,
    latency TEXT, budget TEXT, verdicts TEXT NOT NULL, profile BLOB NOT NULL, losses TEXT NOT NULL,
    outbox_depth INTEGER NOT NULL, boot_id TEXT NOT NULL, drift_count INTEGER NOT NULL,
    UNIQUE (device_id, database_id, model_sha256, seq_first))"""
_SCHEMA_2_INDEXES = (
    "CREATE INDEX windows_by_time ON windows (corrected_closed_at, device_id, database_id, model_sha256, seq_first)",
    "CREATE INDEX windows_by_model ON windows (model_sha256, corrected_closed_at, device_id, database_id, seq_first)",
    "CREATE INDEX windows_by_device ON windows (device_id, corrected_closed_at, database_id, model_sha256, seq_first)",
    "CREATE INDEX windows_by_arrival ON windows (received_at)")


def _as_schema_2(url: str) -> None:
    """Turn a store into one written before the windows' signals (schema 2): the SQLite windows
    table as schema 2 made it (the big columns in the middle), PostgreSQL's without the column."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 4
            db.execute("ALTER TABLE windows RENAME TO windows_3")
            for statement in ("DROP INDEX windows_by_time", "DROP INDEX windows_by_model",
                              "DROP INDEX windows_by_device", "DROP INDEX windows_by_arrival", _SCHEMA_2_WINDOWS,
                              *_SCHEMA_2_INDEXES):
                db.execute(statement)
            columns = [row[1] for row in db.execute("PRAGMA table_info(windows)")]
            names = ", ".join(f'"{c}"' for c in columns)
            db.execute(f"INSERT INTO windows ({names}) SELECT {names} FROM windows_3")
            db.execute("DROP TABLE windows_3")
            db.execute("PRAGMA user_version=2")
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT max(version) FROM collector_schema").fetchone()
        assert row is not None and row[0] == 4
        conn.execute("ALTER TABLE windows DROP COLUMN signals")
        conn.execute("UPDATE collector_schema SET version = 2")


def test_a_schema_2_store_is_upgraded_and_its_windows_signals_backfilled(store_url: str) -> None:
    import json

    from collector.stores import Arrival

    verdicts = [{"name": "age", "kind": "numeric", "status": "warn", "value": 0.2, "threshold": 0.1},
                {"name": "income", "kind": "numeric", "status": "ok", "value": 0.05, "threshold": None},
                {"name": "prediction", "kind": "prediction", "status": "drift", "value": 0.3, "threshold": 0.1}]
    written = [window(seq, closed_at=100.0 * seq, verdicts=verdicts[seq - 1:]) for seq in range(1, 4)]
    store = open_store(store_url)
    try:
        for w in written[:2]:
            store.insert_window(w)
        # The third as ingest stores it: its document as received in the verdicts column.
        document = json.dumps({"verdicts": written[2].verdicts}).encode()
        store.add_device("pump-7", KEY, now=0.0)
        store.record_arrivals([Arrival(device_id="pump-7", boot_id="boot-1", sent_wall=300.0, sent_mono=300.0,
                                       received_at=300.0, window=written[2],
                                       row=window_to_row(written[2], document))])
    finally:
        store.close()
    _as_schema_2(store_url)
    store = open_store(store_url)  # upgraded: the column added, and filled from the verdicts
    try:
        light = list(store.windows(with_profile=False))
        assert [dict(w.signals) for w in light] == [
            {"age": (1, 2.0), "income": (0, 0.0), "prediction": (2, 3.0)},
            {"income": (0, 0.0), "prediction": (2, 3.0)},
            {"prediction": (2, 3.0)}]
        assert [same(a, b) for a, b in zip(store.windows(), written[:2])] == [True, True]
        store.insert_window(window(4, closed_at=400.0, verdicts=verdicts))  # and it takes new windows
        assert dict(next(iter(store.windows(since=400.0, with_profile=False))).signals)["age"] == (1, 2.0)
    finally:
        store.close()
    store = open_store(store_url)  # opened again: nothing left to upgrade
    store.close()
    if store_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 4
            columns = [row[1] for row in db.execute("PRAGMA table_info(windows)")]
            assert columns[-3:] == ["signals", "verdicts", "profile"]  # the big ones last
            indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                                    "AND name LIKE 'windows_by_%'")}
            assert indexes == {"windows_by_time", "windows_by_model", "windows_by_device", "windows_by_arrival"}


def _insert_in_a_process(url: str, windows: list[StoredWindow], barrier: Any) -> None:
    store = open_store(url)
    barrier.wait()
    for w in windows:  # one by one: as many bucket merges as possible, racing the other process's
        store.insert_window(w)
    store.close()


@pytest.mark.slow
def test_two_processes_merging_into_the_same_buckets_lose_nothing(
        store_url: str, simulated: tuple[ModelRecord, list[StoredWindow]]) -> None:
    import multiprocessing

    _, windows = simulated
    open_store(store_url).close()  # the tables, before the race
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    # Both processes get every window (half in each order): each is stored, and merged, once.
    halves = [windows, list(reversed(windows))]
    processes = [context.Process(target=_insert_in_a_process, args=(store_url, half, barrier)) for half in halves]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    store = open_store(store_url)
    try:
        assert store.window_count() == len(windows)
        assert _stored_buckets(store) == _merged(windows)
    finally:
        store.close()


def test_an_unreachable_postgresql_store_is_one_line() -> None:
    import socket

    from collector.errors import FleetStoreError

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(FleetStoreError, match="cannot connect to fleet store") as caught:
        open_store(f"postgresql://nobody@127.0.0.1:{port}/fleet")
    assert "\n" not in str(caught.value) and "Connection refused" in str(caught.value)
    for url in (f"postgresql://nobody:topsecret@127.0.0.1:{port}/fleet",
                f"postgresql://nobody@127.0.0.1:{port}/fleet?password=topsecret&connect_timeout=2"):
        with pytest.raises(FleetStoreError) as caught:
            open_store(url)
        assert "topsecret" not in str(caught.value) and "***" in str(caught.value)
