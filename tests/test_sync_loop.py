"""The sync loop against a stand-in collector on 127.0.0.1: delivery exactly once through an outage,
dead letters, authentication failures, the byte cap, split and merged windows, the lease, a crash."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.config import RetentionPolicy, SyncSettings
from edge_runtime.errors import SyncError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.store import MonitorStore
from edge_runtime.sync.keys import DeviceKey
from edge_runtime.sync.loop import SyncLoop, backoff_delay, load_device_key, sync_once
from edge_runtime.sync.outbox import Outbox
from edge_runtime.sync.transport import Delivery
from edge_runtime.sync.http_transport import HttpTransport
from tests.sync_helpers import CollectorStandIn, self_signed_certificate, window

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def device_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[DeviceKey, Path]:
    key = DeviceKey.generate("dev-1")
    path = tmp_path_factory.mktemp("keys") / "device.key"
    key.save(path)
    return key, path


@pytest.fixture
def collector(device_key: tuple[DeviceKey, Path]) -> Iterator[CollectorStandIn]:
    standin = CollectorStandIn(device_key[0].public_text)
    yield standin
    standin.close()


def settings_for(collector: CollectorStandIn, key_file: Path, **overrides: object) -> SyncSettings:
    values: dict[str, object] = {"url": collector.url, "device_id": "dev-1", "key_file": key_file,
                                 "interval_s": 30.0, "timeout_s": 5.0, "backoff_base_s": 1.0, "backoff_max_s": 60.0}
    values.update(overrides)
    return SyncSettings(**values)  # type: ignore[arg-type]


def close_windows(db: Path, n: int, *, first_seed: int = 0, rows: int = 500, **kwargs: object) -> None:
    store = MonitorStore(db, kwargs.pop("retention", None))  # type: ignore[arg-type]
    for i in range(n):
        store.save_window(window(rows=rows, seed=first_seed + i, closed_at=time.time()), None, [])
        store.enforce_retention()
    store.close()


def test_backoff_is_full_jitter_bounded_by_its_cap() -> None:
    rng = random.Random(3)
    for failures in range(1, 12):
        delays = [backoff_delay(failures, 0.5, 20.0, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= min(20.0, 0.5 * 2 ** failures)
        assert max(delays) > 0.5 * min(20.0, 0.5 * 2 ** failures)  # spread over the whole range


def test_an_outage_then_recovery_delivers_every_window_exactly_once(tmp_path: Path, collector: CollectorStandIn,
                                                                   device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    close_windows(db, 3)
    collector.mode = "500"
    delays: list[float] = []
    loop = SyncLoop(db, settings_for(collector, device_key[1]), rng=random.Random(0),
                    sleep=lambda d: delays.append(d) is not None)
    loop.run(runs=3)
    status = loop.outbox.status()
    assert collector.stored == {} and status.outbox_windows == 3
    assert status.consecutive_failures == 3 and "HTTP 500" in (status.last_error or "")
    assert status.device_id == "dev-1" and status.last_success_at is None and status.next_attempt_at is not None
    assert len(delays) == 2 and all(0 <= d <= min(60.0, 2.0 ** (i + 1)) for i, d in enumerate(delays))
    close_windows(db, 4, first_seed=3)  # the device keeps closing windows meanwhile
    collector.mode = "ok"
    run = loop.run_once()
    assert (run.sent_windows, run.remaining, run.stopped, run.error) == (7, 0, None, None)
    assert collector.seqs() == [(s, s) for s in range(7)]
    assert set(collector.arrivals.values()) == {1}  # each arrived exactly once
    assert loop.next_delay() == 30.0
    status = loop.outbox.status()
    assert status.consecutive_failures == 0 and status.last_success_at is not None and status.windows_sent == 7
    # What arrived is what was stored: the profile bytes, the counters, the database's id.
    stored = loop.store.windows(with_profile=True)
    summary = collector.stored[("dev-1", loop.store.database_id, "ab" * 32, 0)]
    assert summary.profile == stored[0]["profile"] and summary.rows == 500 and summary.losses == {}
    assert summary.outbox_depth == 7  # waiting when it was sent, itself included
    loop.close()


def test_a_permanent_refusal_is_dead_lettered_and_does_not_block_later_windows(
        tmp_path: Path, collector: CollectorStandIn, device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    close_windows(db, 5)
    collector.reject_seqs = {1}
    loop = SyncLoop(db, settings_for(collector, device_key[1]), rng=random.Random(0))
    run = loop.run_once()
    assert (run.sent_windows, run.dead_letters, run.stopped) == (4, 1, None)
    assert collector.seqs() == [(0, 0), (2, 2), (3, 3), (4, 4)]
    status = loop.outbox.status()
    assert status.dead_letters == 1 and status.losses == {"rejected": 1} and status.outbox_windows == 0
    assert status.recent_dead_letters[0].status == 422 and "unknown fields" in status.recent_dead_letters[0].detail
    close_windows(db, 1, first_seed=5)
    loop.run_once()
    last = collector.stored[("dev-1", loop.store.database_id, "ab" * 32, 5)]
    assert last.losses == {"rejected": 1}  # the loss is reported upstream
    loop.close()


@pytest.mark.parametrize("mode", ["404", "405", "200-page"])
def test_a_url_that_reaches_another_server_keeps_every_window(tmp_path: Path, collector: CollectorStandIn,
                                                              device_key: tuple[DeviceKey, Path], mode: str) -> None:
    """Only a collector's own answer marks a window sent or refused: a wrong URL must not empty the outbox."""
    db = tmp_path / "m.db"
    close_windows(db, 3)
    collector.mode = mode
    loop = SyncLoop(db, settings_for(collector, device_key[1]), rng=random.Random(0))
    run = loop.run_once()
    assert (run.sent_windows, run.dead_letters, run.remaining, run.stopped) == (0, 0, 3, "retry")
    assert run.error is not None and "did not answer as an edge-runtime collector (check the URL)" in run.error
    assert loop.outbox.status().dead_letters == 0 and loop.outbox.losses() == {}
    collector.mode = "ok"
    assert loop.run_once().sent_windows == 3 and collector.seqs() == [(0, 0), (1, 1), (2, 2)]
    loop.close()


def test_a_collector_taking_smaller_messages_gets_the_windows_in_smaller_parts(
        tmp_path: Path, collector: CollectorStandIn, device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    close_windows(db, 3)
    collector.max_message_bytes = 12_000  # the device sends up to 128 KiB by default
    loop = SyncLoop(db, settings_for(collector, device_key[1]), rng=random.Random(0))
    run = loop.run_once()
    assert (run.sent_windows, run.dead_letters) == (3, 0) and collector.seqs() == [(0, 0), (1, 1), (2, 2)]
    assert all(n == 1 for n in collector.arrivals.values())
    close_windows(db, 1, first_seed=3)
    collector.max_message_bytes = 4_000  # below the smallest part the device cuts: refused for good
    run = loop.run_once()
    assert run.dead_letters == 1 and loop.outbox.status().recent_dead_letters[0].status == 413
    loop.close()


def test_an_unknown_device_or_bad_signature_keeps_every_window(tmp_path: Path, collector: CollectorStandIn,
                                                               device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    close_windows(db, 3)
    collector.public_text = DeviceKey.generate("dev-1").public_text  # the collector knows another key
    loop = SyncLoop(db, settings_for(collector, device_key[1]), rng=random.Random(0))
    run = loop.run_once()
    assert (run.stopped, run.sent_windows, run.remaining) == ("auth", 0, 3) and "HTTP 401" in (run.error or "")
    assert loop.outbox.status().dead_letters == 0 and collector.requests == 1  # stopped at the first
    assert loop.next_delay() <= 2.0  # backoff, not the interval
    collector.public_text = device_key[0].public_text  # registered now
    assert loop.run_once().sent_windows == 3
    loop.close()


def test_the_byte_cap_spreads_the_outbox_over_runs(tmp_path: Path, collector: CollectorStandIn,
                                                   device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    close_windows(db, 6)
    loop = SyncLoop(db, settings_for(collector, device_key[1], max_bytes_per_run=1), rng=random.Random(0))
    runs = [loop.run_once() for _ in range(6)]
    assert [r.sent_windows for r in runs] == [1] * 6  # the first message of a run always goes
    assert [r.stopped for r in runs] == ["budget"] * 5 + [None]
    one_window = runs[0].bytes_sent
    loop.close()
    close_windows(db, 6, first_seed=6)
    loop = SyncLoop(db, settings_for(collector, device_key[1], max_bytes_per_run=int(2.5 * one_window)),
                    rng=random.Random(0))
    assert [loop.run_once().sent_windows for _ in range(3)] == [2, 2, 2]
    assert collector.seqs() == [(s, s) for s in range(12)]
    loop.close()


def test_a_window_bigger_than_a_message_goes_in_parts(tmp_path: Path, collector: CollectorStandIn,
                                                      device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    close_windows(db, 2, rows=5000)
    loop = SyncLoop(db, settings_for(collector, device_key[1], max_message_bytes=4096), rng=random.Random(0))
    run = loop.run_once()
    assert run.sent_windows == 2 and collector.requests > 4
    stored = loop.store.windows(with_profile=True)
    for row in stored:
        summary = collector.stored[("dev-1", loop.store.database_id, "ab" * 32, row["seq"])]
        assert summary.profile == row["profile"]
    loop.close()


def test_merged_windows_arrive_with_their_sequence_range(tmp_path: Path, collector: CollectorStandIn,
                                                         device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    retention = RetentionPolicy(max_bytes=400_000, max_age_days=0)
    store = MonitorStore(db, retention)
    Outbox(store).enroll("dev-1")
    store.close()
    close_windows(db, 40, rows=1500, retention=retention)
    loop = SyncLoop(db, settings_for(collector, device_key[1]), retention=retention, rng=random.Random(0))
    assert loop.run_once().remaining == 0
    ranges = collector.seqs()
    assert any(last > first for first, last in ranges)
    covered = [s for first, last in ranges for s in range(first, last + 1)]
    assert covered == list(range(40))  # every window once, merged or not
    for summary in collector.stored.values():
        assert summary.rows == 1500 * (summary.seq_last - summary.seq_first + 1) == Profile.from_bytes(
            summary.profile).rows
    loop.close()


def test_a_slow_collector_times_out_and_the_window_is_never_merged_after(
        tmp_path: Path, collector: CollectorStandIn, device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    close_windows(db, 2)
    collector.mode = "slow"
    loop = SyncLoop(db, settings_for(collector, device_key[1], timeout_s=0.2), rng=random.Random(0))
    run = loop.run_once()
    assert run.stopped == "retry" and "no answer" in (run.error or "") or "timed out" in (run.error or "")
    assert [e.attempts for e in loop.outbox.pending()] == [1, 0]  # tried: the collector may hold it
    loop.close()


def test_https_checks_the_collector_certificate_against_the_ca_file(tmp_path: Path,
                                                                   device_key: tuple[DeviceKey, Path]) -> None:
    cert, cert_key = self_signed_certificate(tmp_path)
    collector = CollectorStandIn(device_key[0].public_text, tls=(cert, cert_key))
    try:
        db = tmp_path / "m.db"
        close_windows(db, 2)
        unchecked = SyncLoop(db, settings_for(collector, device_key[1]), rng=random.Random(0))
        run = unchecked.run_once()  # the system's CAs do not know this certificate: refused
        assert run.stopped == "auth" and "certificate check failed" in (run.error or "") and collector.stored == {}
        unchecked.close()
        loop = SyncLoop(db, settings_for(collector, device_key[1], ca_file=cert), rng=random.Random(0))
        assert loop.run_once().sent_windows == 2 and collector.seqs() == [(0, 0), (1, 1)]
        loop.close()
    finally:
        collector.close()


def test_http_transport_maps_refused_connections_to_retry() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = HttpTransport(f"http://127.0.0.1:{port}", timeout_s=2.0).send(b"x")
    assert result.outcome is Delivery.RETRY and result.status is None and "cannot reach" in result.detail


def test_a_run_waits_while_another_process_holds_the_lease(tmp_path: Path, collector: CollectorStandIn,
                                                           device_key: tuple[DeviceKey, Path]) -> None:
    db = tmp_path / "m.db"
    close_windows(db, 2)
    other = Outbox(MonitorStore(db))
    assert other.take_lease("another process", 300.0)
    loop = SyncLoop(db, settings_for(collector, device_key[1]), rng=random.Random(0))
    run = loop.run_once()
    assert (run.leased, run.sent_windows, run.remaining) == (False, 0, 2) and collector.requests == 0
    other.release_lease("another process")
    assert loop.run_once().sent_windows == 2
    other.store.close()
    loop.close()


def test_a_key_of_another_device_is_refused(tmp_path: Path, collector: CollectorStandIn,
                                            device_key: tuple[DeviceKey, Path]) -> None:
    with pytest.raises(SyncError, match="device id 'dev-2' differs from the key file's \\('dev-1'"):
        load_device_key(settings_for(collector, device_key[1], device_id="dev-2"))
    store = MonitorStore(tmp_path / "m.db")
    outbox = Outbox(store)
    outbox.enroll("dev-0")
    with pytest.raises(SyncError, match="syncs as device 'dev-0'"):
        sync_once(outbox, HttpTransport(collector.url), device_key[0], settings_for(collector, device_key[1]))
    store.close()


_CRASHING_DEVICE = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from edge_runtime.config import SyncSettings
    from edge_runtime.monitoring.store import MonitorStore
    from edge_runtime.sync.loop import SyncLoop
    from tests.sync_helpers import window
    db, url, key_file = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = SyncSettings(url=url, device_id="dev-1", key_file=Path(key_file), interval_s=0.001, timeout_s=5.0)
    loop = SyncLoop(db, settings)
    loop.start()
    store = MonitorStore(db, lock_timeout=30.0)
    for i in range(100000):
        store.save_window(window(rows=300, seed=i % 50, closed_at=time.time()), None, [])
        store.enforce_retention()
        print(i, flush=True)
""")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_device_killed_mid_sync_loses_and_duplicates_nothing(tmp_path: Path, collector: CollectorStandIn,
                                                               device_key: tuple[DeviceKey, Path], seed: int) -> None:
    db = tmp_path / "m.db"
    MonitorStore(db).close()
    child = subprocess.Popen([sys.executable, "-c", _CRASHING_DEVICE, str(db), collector.url, str(device_key[1]),
                              str(ROOT)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout is not None
    # The seeded moment: after some windows closed, and while the collector has received some.
    closed_before_kill = random.Random(seed).randrange(5, 40)
    for _ in range(closed_before_kill):
        assert child.stdout.readline(), "the device stopped by itself"
    deadline = time.monotonic() + 60
    while collector.requests == 0 and time.monotonic() < deadline:
        child.stdout.readline()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL and collector.requests > 0

    store = MonitorStore(db)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    outbox = Outbox(store)
    windows = {w["seq"] for w in store.windows()}
    waiting = {s for e in outbox.pending(100000) for s in range(e.seq_first, e.seq_last + 1)}
    arrived = {first for first, _ in collector.seqs()}
    assert windows and windows <= waiting | arrived  # each window is in the outbox or at the collector
    # Restarted: the rest goes, and nothing arrives twice but a window whose answer the kill cut off.
    loop = SyncLoop(db, settings_for(collector, device_key[1]), rng=random.Random(seed))
    assert loop.run_once().remaining == 0
    assert {first for first, _ in collector.seqs()} == windows | arrived
    assert sum(n - 1 for n in collector.arrivals.values()) <= 1
    loop.close()
