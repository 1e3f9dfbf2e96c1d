"""The collector as a real process: HTTP answers, metrics, crashes, TLS, two collectors on one PostgreSQL.

Each test starts ``edge-runtime collector serve`` (through the installed entry point)
on a free 127.0.0.1 port and talks to it over real sockets.
"""

from __future__ import annotations

import datetime
import http.client
import json
import math
import random
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from collector.stores import open_store
from tests.fleet_device import SimulatedDevice
from tests.servers import CollectorProcess, PostgresServer
from tests.sync_helpers import self_signed_certificate

T0 = 1.7e9
MEDIA_TYPE = "application/vnd.edge-runtime.sync"


def post(url: str, body: bytes, *, context: ssl.SSLContext | None = None,
         timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/windows", body=body, headers={"Content-Type": MEDIA_TYPE})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def get(url: str, path: str) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def read_answer(sock: socket.socket) -> str:
    """One whole HTTP response from a raw socket (its body may come in a later segment)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode("latin-1")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode("latin-1")


@pytest.fixture
def device(monitored_window: dict[str, Any]) -> SimulatedDevice:
    return SimulatedDevice(monitored_window)


@pytest.fixture
def sqlite_url(tmp_path: Path, device: SimulatedDevice) -> str:
    url = f"sqlite:///{tmp_path}/fleet.db"
    store = open_store(url)
    store.add_device(device.device_id, device.public_key, now=0.0)
    store.close()
    return url


@pytest.fixture
def collector(sqlite_url: str, tmp_path: Path) -> Iterator[CollectorProcess]:
    process = CollectorProcess(sqlite_url, log=tmp_path / "collector.log").start()
    yield process
    process.stop()


def test_the_http_answers_follow_the_protocol(collector: CollectorProcess, device: SimulatedDevice,
                                              monitored_window: dict[str, Any], sqlite_url: str) -> None:
    now = time.time()
    [message] = device.messages(1, closed_at=now - 5, sent_at=now)
    status, answer = post(collector.url, message)
    assert (status, answer["status"], answer["model_known"]) == (200, "stored", False)
    assert post(collector.url, message)[1]["status"] == "duplicate"
    parts = device.messages(2, closed_at=now - 4, sent_at=now, max_message_bytes=4096)
    assert [post(collector.url, m)[1]["status"] for m in parts] == ["part-stored"] * (len(parts) - 1) + ["stored"]
    stranger = SimulatedDevice(monitored_window, device_id="stranger")
    [unknown] = stranger.messages(1, closed_at=now, sent_at=now)
    version = message[:6] + b"\x00\x09" + message[8:]
    refusals = {
        "bad-signature": (message[:-1] + bytes([message[-1] ^ 1]), 401),
        "unknown-device": (unknown, 401),
        "truncated": (message[:40], 400),
        "malformed": (b"GET / HTTP/1.1 and some garbage", 400),
        "unsupported-version": (version, 422),
        "oversized": (bytes(200_000), 413),
    }
    for reason, (body, code) in refusals.items():
        status, answer = post(collector.url, body)
        assert (status, answer["status"], answer["reason"]) == (code, "rejected", reason), answer
    store = open_store(sqlite_url)
    assert store.window_count() == 2
    store.close()

    status, text = get(collector.url, "/metrics")
    assert status == 200
    assert 'edge_runtime_collector_windows_ingested_total{outcome="stored"} 2.0' in text
    assert 'edge_runtime_collector_windows_ingested_total{outcome="duplicate"} 1.0' in text
    for reason in refusals:
        assert f'edge_runtime_collector_rejections_total{{reason="{reason}"}} 1.0' in text
        assert f'edge_runtime_collector_store_rejections_total{{reason="{reason}"}} 1.0' in text
    assert 'edge_runtime_collector_store_windows 2.0' in text
    (seen,) = [line for line in text.splitlines()
               if line.startswith('edge_runtime_collector_device_seconds_since_last_seen{device="kiosk-1"}')]
    assert 0 <= float(seen.split()[-1]) < 600
    assert get(collector.url, "/healthz") == (200, '{"status":"ok"}')


def test_an_oversized_body_is_refused_before_it_is_read(collector: CollectorProcess) -> None:
    """Content-Length over the limit: 413 comes back while the client has sent only the headers."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/windows HTTP/1.1\r\nHost: x\r\nContent-Type: " + MEDIA_TYPE.encode()
                     + b"\r\nContent-Length: 50000000\r\n\r\n" + bytes(1000))
        answer = read_answer(sock)
    assert answer.startswith("HTTP/1.1 413")
    assert '"reason":"oversized"' in answer


def test_a_chunked_body_is_read_only_up_to_the_limit(collector: CollectorProcess) -> None:
    with socket.create_connection(("127.0.0.1", collector.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/windows HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = bytes(65536)
        for _ in range(3):  # 192 KiB, over the 128 KiB default; the stream is never ended
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        answer = read_answer(sock)
    assert answer.startswith("HTTP/1.1 413")


@pytest.mark.slow
def test_a_collector_killed_mid_request_loses_and_duplicates_nothing(sqlite_url: str, device: SimulatedDevice,
                                                                     tmp_path: Path) -> None:
    """SIGKILL with a request half sent, then at a seeded random moment under load; after each restart
    the device re-sends whatever was not answered 200, and every window is held exactly once."""
    log = tmp_path / "collector.log"
    collector = CollectorProcess(sqlite_url, log=log).start()
    now = time.time()
    windows = {seq: device.messages(seq, closed_at=now - 100 + seq, sent_at=now, max_message_bytes=8192)
               for seq in range(1, 31)}
    try:
        # 1. Half a request on the wire when the process dies.
        first = windows[1][0]
        with socket.create_connection(("127.0.0.1", collector.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/windows HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(first)
                         + first[: len(first) // 2])
            time.sleep(0.2)
            collector.kill()
            assert sock.recv(1024) == b""  # the connection died with the process, unanswered
        collector = CollectorProcess(sqlite_url, port=collector.port, log=log).start()

        # 2. A device sending every part of 30 windows, killed at a random moment.
        acknowledged: set[tuple[int, int]] = set()

        def send_all() -> None:
            for seq, parts in windows.items():
                for i, message in enumerate(parts):
                    try:
                        if post(collector.url, message, timeout=10)[0] == 200:
                            acknowledged.add((seq, i))
                    except OSError:
                        return  # the collector is gone: the device keeps the rest for later

        sender = threading.Thread(target=send_all)
        sender.start()
        time.sleep(random.Random(11).uniform(0.3, 1.5))
        collector.kill()
        sender.join(timeout=120)
        collector = CollectorProcess(sqlite_url, port=collector.port, log=log).start()
        for seq, parts in windows.items():  # the device's retry: everything not acknowledged
            for i, message in enumerate(parts):
                if (seq, i) not in acknowledged:
                    status, answer = post(collector.url, message)
                    assert status == 200, answer
        for seq, parts in windows.items():  # and a full replay changes nothing
            assert post(collector.url, parts[-1])[1]["status"] == "duplicate"
    finally:
        collector.stop()
    store = open_store(sqlite_url)
    assert [w.seq_first for w in store.windows()] == list(range(1, 31))
    # Every window in the fleet views once, whether the killed collectors folded it into its
    # base bucket or not; then folded as the next collector folds a killed one's windows.
    rows = sum(w.rows for w in store.windows())
    assert _bucket_rows(store) == rows
    store.fold_buckets([], orphans_before=math.inf)
    assert _bucket_rows(store) == rows and store.fold_buckets([], orphans_before=math.inf) == 0
    store.close()
    with sqlite3.connect(sqlite_url[len("sqlite:///"):]) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _bucket_rows(store: Any) -> int:
    from edge_runtime.monitoring.data_profile import Profile

    return sum(Profile.from_bytes(data).rows for data in store.bucket_profiles().values())


def test_a_stopped_collector_writes_the_base_buckets_it_held(sqlite_url: str, device: SimulatedDevice) -> None:
    collector = CollectorProcess(sqlite_url).start()
    now = time.time()
    try:
        for seq in range(1, 4):
            for message in device.messages(seq, closed_at=now - 100 + seq, sent_at=now):
                assert post(collector.url, message)[0] == 200
    finally:
        collector.stop()  # SIGTERM: the held buckets are written on the way out
    store = open_store(sqlite_url)
    try:
        assert store.fold_buckets([], orphans_before=math.inf) == 0  # nothing was left unfolded
        assert _bucket_rows(store) == sum(w.rows for w in store.windows()) > 0
    finally:
        store.close()


@pytest.mark.slow
def test_two_collectors_on_one_postgresql_store_each_window_once(postgres_server: PostgresServer,
                                                                monitored_window: dict[str, Any],
                                                                tmp_path: Path) -> None:
    url = postgres_server.new_database()
    devices = [SimulatedDevice(monitored_window, device_id=f"kiosk-{i}") for i in range(3)]
    store = open_store(url)
    for d in devices:
        store.add_device(d.device_id, d.public_key, now=0.0)
    store.close()
    collectors = [CollectorProcess(url, log=tmp_path / f"c{i}.log").start() for i in range(2)]
    now = time.time()
    try:
        messages = [m for d in devices for seq in range(1, 6)
                    for m in d.messages(seq, closed_at=now - 60 + seq, sent_at=now, max_message_bytes=8192)]
        statuses: list[str] = []
        lock = threading.Lock()

        def deliver(collector: CollectorProcess, order: list[bytes]) -> None:
            for message in order:
                status, answer = post(collector.url, message)
                assert status == 200, answer
                with lock:
                    statuses.append(answer["status"])

        # Every message reaches both collectors, in two different orders, at the same time.
        orders = [messages, list(reversed(messages))]
        threads = [threading.Thread(target=deliver, args=(c, o)) for c, o in zip(collectors, orders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert statuses.count("stored") == 15
    finally:
        for c in collectors:
            c.stop()
    store = open_store(url)
    held = [(w.device_id, w.seq_first) for w in store.windows()]
    assert sorted(held) == sorted((d.device_id, seq) for d in devices for seq in range(1, 6))
    assert store.window_count() == 15
    store.close()


def test_the_collector_serves_https(sqlite_url: str, device: SimulatedDevice, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    collector = CollectorProcess(sqlite_url, "--tls-cert", str(cert), "--tls-key", str(key),
                                 log=tmp_path / "collector.log").start(ssl_context=context)
    try:
        now = time.time()
        [message] = device.messages(1, closed_at=now, sent_at=now)
        assert post(collector.url, message, context=context)[1]["status"] == "stored"
        with pytest.raises(ssl.SSLError):  # certificate checks are on: an unknown CA is refused
            post(collector.url, message, context=ssl.create_default_context())
    finally:
        collector.stop()


@pytest.mark.slow
def test_the_collector_answers_503_while_its_database_is_down(device: SimulatedDevice, tmp_path: Path) -> None:
    """PostgreSQL stops and comes back: meanwhile the collector answers 503 (the device retries), then
    stores again without a restart of its own."""
    from tests.servers import start_postgres

    server = start_postgres()
    collector = None
    try:
        url = server.new_database()
        store = open_store(url)
        store.add_device(device.device_id, device.public_key, now=0.0)
        store.close()
        collector = CollectorProcess(url, log=tmp_path / "collector.log").start()
        now = time.time()
        first, second = (device.messages(seq, closed_at=now, sent_at=now)[0] for seq in (1, 2))
        assert post(collector.url, first)[1]["status"] == "stored"
        server.halt()
        status, answer = post(collector.url, second)
        assert (status, answer["status"]) == (503, "error")
        assert get(collector.url, "/healthz")[0] == 200
        server.resume()
        assert post(collector.url, second)[1]["status"] == "stored"
        assert post(collector.url, first)[1]["status"] == "duplicate"
    finally:
        if collector is not None:
            collector.stop()
        server.stop()


def test_serve_enforces_retention_at_start(sqlite_url: str, device: SimulatedDevice, tmp_path: Path) -> None:
    collector = CollectorProcess(sqlite_url, log=tmp_path / "collector.log").start()
    try:
        now = time.time()
        for seq in range(1, 6):
            [message] = device.messages(seq, closed_at=now - 10 + seq, sent_at=now)
            assert post(collector.url, message)[1]["status"] == "stored"
    finally:
        collector.stop()
    collector = CollectorProcess(sqlite_url, "--max-windows", "3", log=tmp_path / "collector.log").start()
    try:
        deadline = time.monotonic() + 60
        store = open_store(sqlite_url)
        while store.window_count() > 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [w.seq_first for w in store.windows()] == [3, 4, 5]
        store.close()
    finally:
        collector.stop()
