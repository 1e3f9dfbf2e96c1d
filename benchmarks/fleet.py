"""The fleet collector's figures (issue 11): ingest rate, bytes on the wire, the fleet drift query.

A simulated fleet (``collector.simulation``: real profiles and verdicts, ``devices x
windows x features``), each window encoded and signed by its device's own key as
``edge-runtime sync`` sends it. Measured:

* **bytes on the wire** per window (the signed messages), and per device per day at
  one window a minute;
* **ingest, in process**: :class:`collector.ingest.Ingestor` over the store, called by
  ``--threads`` threads (what the HTTP server's thread pool does), so its group commit
  gathers the messages that arrive together; signature check, dedup, base-bucket merge
  and a durable commit included; no HTTP;
* **ingest over HTTP**: ``edge-runtime collector serve`` in 1 or 2 child processes on
  127.0.0.1, driven by ``--clients`` client processes of ``--client-threads`` threads each
  (keep-alive connections, each window POSTed once); the clients share the machine's
  cores with the collectors;
* **fleet drift query** over every stored window (:func:`collector.fleet_drift.query_fleet_drift`,
  1-hour buckets: the base buckets merged at ingest, the windows read without profiles), on
  the fleet above (one shifted device, diluted: no bucket flags) and on a second fleet where
  ``--shifted-share`` of the devices shift (its buckets flag: the query ranks their devices
  by their windows' own verdicts and judges the top ones on their windows), ingested in
  process once per store.

Stores: SQLite (a file in a temporary directory) and PostgreSQL (``--postgres URL``, or a
throwaway cluster started here from Debian's ``postgresql`` when it is installed, with
fsync on; ``--no-postgres`` skips it). Medians of ``--repeats`` runs.

Run: ``python benchmarks/fleet.py [--devices 1000] [--windows 10] [--features 30] [--shifted-share 0.2]
[--json] [--write docs/fleet-benchmarks.md]``; :func:`measure` is what the test calls on a small fleet.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import multiprocessing
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from collector.fleet_drift import JUDGED_DEVICES, query_fleet_drift
from collector.ingest import Ingestor
from collector.simulation import Shift, simulate_fleet
from collector.stores import ModelRecord, StoredWindow, open_store
from edge_runtime.sync.keys import DeviceKey
from edge_runtime.sync.payload import WindowSummary, encode_window

__all__ = ["encode_fleet", "measure"]

ROOT = Path(__file__).resolve().parent.parent
MEDIA_TYPE = "application/vnd.edge-runtime.sync"


# ------------------------------------------------------------------ the fleet
def encode_fleet(windows: Sequence[StoredWindow]) -> tuple[dict[str, DeviceKey], list[list[bytes]]]:
    """Each device's key, and each window's signed messages as its device sends them."""
    keys: dict[str, DeviceKey] = {}
    messages = []
    for w in windows:
        key = keys.get(w.device_id) or keys.setdefault(w.device_id, DeviceKey.generate(w.device_id))
        sent = w.closed_at + 2.0
        summary = WindowSummary(
            device_id=w.device_id, database_id=w.database_id, model_name=w.model_name,
            model_version=w.model_version, model_sha256=w.model_sha256, seq_first=w.seq_first, seq_last=w.seq_last,
            opened_at=w.opened_at, closed_at=w.closed_at, rows=w.rows, rejected=w.rejected, partial=w.partial,
            quality=w.quality, latency=w.latency, budget=w.budget, verdicts=w.verdicts, profile=w.profile,
            losses=w.losses, outbox_depth=w.outbox_depth, boot_id=w.boot_id, sent_wall=sent,
            sent_mono=sent - 1_700_000_000.0)
        messages.append(encode_window(summary, key))
    return keys, messages


def _register(url: str, model: ModelRecord, keys: dict[str, DeviceKey]) -> None:
    store = open_store(url)
    try:
        store.add_model(model)
        for device_id, key in keys.items():
            store.add_device(device_id, key.public_text, now=0.0)
    finally:
        store.close()


def _count(url: str) -> int:
    store = open_store(url)
    try:
        return store.window_count()
    finally:
        store.close()


# ------------------------------------------------------------------ servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (fsync on), as tests/servers.py starts one; its URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian package 'postgresql'); pass --postgres URL")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="fleet-bench-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(root / "data")]
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*ctl, "-l", str(root / "log"), "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root}",
                    "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _fresh_database(server_url: str) -> str:
    import uuid

    import psycopg

    name = "bench_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def _collectors(store_url: str, count: int) -> Iterator[list[int]]:
    """``count`` collector processes on one store; their ports."""
    ports = [_free_port() for _ in range(count)]
    logs = [tempfile.NamedTemporaryFile(prefix="fleet-bench-collector-", suffix=".log", delete=False)
            for _ in ports]
    processes = [subprocess.Popen([sys.executable, "-m", "collector", "serve", "--store", store_url, "--port",
                                   str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
                 for port, log in zip(ports, logs, strict=True)]
    try:
        for port, process, log in zip(ports, processes, logs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"collector on port {port} did not start: {Path(log.name).read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
            os.unlink(log.name)


def _post_all(ports: Sequence[int], messages: Sequence[bytes], threads: int) -> list[int]:
    """POST every message from ``threads`` keep-alive connections, thread ``i`` to ``ports[i % len(ports)]``
    (so every collector is sent to at once); the answers' statuses.

    A minimal HTTP/1.1 client on a raw socket (the request's bytes made once, the answer
    read by its Content-Length): http.client parses each answer's headers with the email
    package, and its CPU is taken from the collectors on these same cores.
    """
    def send(i: int) -> list[int]:
        statuses = []
        with socket.create_connection(("127.0.0.1", ports[i % len(ports)]), timeout=120) as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for body in messages[i::threads]:
                connection.sendall(b"POST /v1/windows HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                   + MEDIA_TYPE.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                                   + b"\r\n\r\n" + body)
                statuses.append(_read_answer(connection))
        return statuses

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return [s for part in pool.map(send, range(threads)) for s in part]


def _read_answer(connection: socket.socket) -> int:
    """Read one HTTP answer whole (its body by Content-Length); its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the collector closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the collector closed the connection")
        body += chunk
    return int(head.split(b" ", 2)[1])


def _client(args: tuple[list[int], list[bytes], int]) -> list[int]:
    ports, messages, threads = args
    return _post_all(ports, messages, max(threads, len(ports)))


# ------------------------------------------------------------------ measurements
def _ingest_in_process(url: str, model: ModelRecord, keys: dict[str, DeviceKey], messages: list[bytes],
                       threads: int) -> float:
    _register(url, model, keys)
    store = open_store(url)
    try:
        ingestor = Ingestor(store)

        def run(chunk: Sequence[bytes]) -> None:
            for message in chunk:
                ingestor.ingest(message)

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, [messages[i::threads] for i in range(threads)]))
        ingestor.close()  # timed: every base bucket written
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    return elapsed


def _ingest_over_http(url: str, model: ModelRecord, keys: dict[str, DeviceKey], messages: list[bytes], *,
                      collectors: int, clients: int, client_threads: int) -> float:
    _register(url, model, keys)
    with _collectors(url, collectors) as ports:
        context = multiprocessing.get_context("spawn")
        with context.Pool(clients) as pool:
            pool.map(_client, [(ports, messages[:1], 1)])  # warm up: the first request imports the stack
            started = time.perf_counter()
            statuses = [s for part in pool.map(_client, [(ports, messages[i::clients], client_threads)
                                                         for i in range(clients)]) for s in part]
            elapsed = time.perf_counter() - started
    if any(status != 200 for status in statuses):
        raise RuntimeError(f"some windows were refused: {sorted(set(statuses))}")
    return elapsed


def _query(url: str, repeats: int) -> tuple[list[float], Any]:
    store = open_store(url)
    try:
        times, report = [], None
        for _ in range(repeats):
            started = time.perf_counter()
            report = query_fleet_drift(store)
            times.append(time.perf_counter() - started)
        return times, report
    finally:
        store.close()


def shifted_devices(devices: int, share: float) -> list[int]:
    """The devices of the flagged fleet that shift: every ``1 / share``-th, from the first."""
    if share <= 0:
        return []
    return list(range(0, devices, max(1, round(1 / share))))


def _flagged_figures(report: Any) -> dict[str, Any]:
    """What the flagged fleet's query found: buckets flagged, drivers named, devices judged."""
    flagged = [b for b in report.buckets if b.flagged]
    return {"buckets": len(report.buckets), "flagged_buckets": len(flagged),
            "signals": sorted({s for b in flagged for s in b.flagged}),
            "drivers": max((len(d) for b in flagged for d in b.drivers.values()), default=0),
            "judged": max((len(b.judged_devices) for b in flagged), default=0),
            "top_drivers": sorted({d[0].device_id for b in flagged for d in b.drivers.values() if d})}


def measure(*, devices: int = 1000, windows: int = 10, features: int = 30, rows: int = 5000, seed: int = 0,
            repeats: int = 3, threads: int = 16, clients: int = 2, client_threads: int = 8, http: bool = True,
            postgres: str | None = None, shifted_share: float = 0.2,
            progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Simulate the fleet, ingest it every way, query it; a dict of the figures (seconds, bytes).

    ``postgres`` is a server URL (a fresh database is made on it per run), or None to skip
    PostgreSQL. Every run starts on an empty store. With ``shifted_share`` > 0, a second
    fleet, that share of its devices shifted in two features, is ingested in process once
    per store and queried (``query_flagged_s``).
    """
    progress(f"simulating {devices} devices x {windows} windows x {features} features")
    # One window a minute per device. One device's shifted feature is diluted by the 999 others
    # at this fleet size: no bucket flags, so the query never reads a bucket's windows whole.
    model, fleet = simulate_fleet(devices=devices, windows_per_device=windows, features=features, rows=rows,
                                  seed=seed, window_seconds=60.0, start=1_800_000_000.0,
                                  shifts=(Shift(device=1, feature=2, delta=0.5),))
    keys, encoded = encode_fleet(fleet)
    messages = [m for parts in encoded for m in parts]
    flagged_fleet: tuple[ModelRecord, dict[str, DeviceKey], list[bytes]] | None = None
    moved = shifted_devices(devices, shifted_share)
    if moved:
        progress(f"simulating the flagged fleet: {len(moved)} of {devices} devices shifted")
        # Two features (the second half as much) of every shifted device, from its first window.
        shifts = tuple(Shift(device=d, feature=f, delta=delta) for d in moved
                       for f, delta in ((2 % features, 0.5), (features - 1, 0.25)))
        flagged_model, flagged_windows = simulate_fleet(
            devices=devices, windows_per_device=windows, features=features, rows=rows, seed=seed + 1,
            window_seconds=60.0, start=1_800_000_000.0, shifts=shifts, name="sim-shifted")
        flagged_keys, flagged_encoded = encode_fleet(flagged_windows)
        flagged_fleet = (flagged_model, flagged_keys, [m for parts in flagged_encoded for m in parts])
    window_bytes = [sum(len(m) for m in parts) for parts in encoded]
    per_window = statistics.median(window_bytes)
    result: dict[str, Any] = {
        "devices": devices, "windows": len(fleet), "features": features, "rows_per_window": rows,
        "messages": len(messages),
        "wire_bytes_per_window": {"median": per_window, "max": max(window_bytes)},
        "wire_bytes_per_device_day_at_1_per_minute": per_window * 1440,
        "ingest": {}, "query_s": {}, "query_windows": {}, "flagged": {},
        "shifted_devices": len(moved), "query_flagged_s": {}, "query_flagged_windows": {}, "query_flagged": {},
    }
    stores: list[tuple[str, Callable[[], str]]] = []
    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    counter = iter(range(10**6))
    stores.append(("sqlite", lambda: f"sqlite:///{tmp}/fleet-{next(counter)}.db"))
    if postgres is not None:
        server = postgres
        stores.append(("postgresql", lambda: _fresh_database(server)))
    try:
        for name, fresh in stores:
            runs: dict[str, list[float]] = {}
            last_url = ""
            for _ in range(repeats):
                url = fresh()
                elapsed = _ingest_in_process(url, model, keys, messages, threads)
                assert _count(url) == len(fleet), "in-process ingest lost or doubled windows"
                runs.setdefault(f"{name} in process ({threads} threads)", []).append(len(fleet) / elapsed)
                last_url = url
                progress(f"{name} in process: {len(fleet) / elapsed:.0f} windows/s")
            if http:
                for collectors in (1, 2):
                    for _ in range(repeats):
                        url = fresh()
                        elapsed = _ingest_over_http(url, model, keys, messages, collectors=collectors,
                                                    clients=clients, client_threads=client_threads)
                        assert _count(url) == len(fleet), "HTTP ingest lost or doubled windows"
                        label = f"{name} over HTTP, {collectors} collector process{'es' if collectors > 1 else ''}"
                        runs.setdefault(label, []).append(len(fleet) / elapsed)
                        progress(f"{label}: {len(fleet) / elapsed:.0f} windows/s")
            for label, rates in runs.items():
                result["ingest"][label] = {"median": statistics.median(rates), "runs": rates}
            times, report = _query(last_url, max(repeats, 3))
            result["query_s"][name] = {"median": statistics.median(times), "min": min(times), "max": max(times)}
            result["query_windows"][name] = sum(b.windows for b in report.buckets)
            result["flagged"][name] = [(b.start, b.flagged) for b in report.buckets]
            progress(f"{name} query: {statistics.median(times):.3f} s")
            if flagged_fleet is not None:
                url = fresh()
                flagged_model, flagged_keys, flagged_messages = flagged_fleet
                _ingest_in_process(url, flagged_model, flagged_keys, flagged_messages, threads)
                times, report = _query(url, max(repeats, 3))
                result["query_flagged_s"][name] = {"median": statistics.median(times), "min": min(times),
                                                   "max": max(times)}
                result["query_flagged_windows"][name] = sum(b.windows for b in report.buckets)
                result["query_flagged"][name] = _flagged_figures(report)
                progress(f"{name} query, flagged fleet: {statistics.median(times):.3f} s "
                         f"({result['query_flagged'][name]})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


# ------------------------------------------------------------------ the page
def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for package in ("edge-runtime", "datasketches", "cryptography", "starlette", "uvicorn", "psycopg"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    out["sqlite"] = __import__("sqlite3").sqlite_version
    return out


def page(result: dict[str, Any], command: str, postgres_version: str | None) -> str:
    """docs/fleet-benchmarks.md from a run's figures."""
    versions = _versions()
    if postgres_version:
        versions["postgresql"] = postgres_version
    lines = [
        "# Fleet collector benchmarks",
        "",
        "Written by `benchmarks/fleet.py` (issue 11's Benchmarks section); the figures are a full run's.",
        "",
        f"- Command: `{command}`",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores (shared, noisy), {platform.platform()}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Fleet: {result['devices']:,} devices x {result['windows'] // max(result['devices'], 1)} windows x "
        f"{result['features']} features, {result['rows_per_window']:,} rows a window "
        f"({result['windows']:,} windows, {result['messages']:,} messages); medians of the runs listed.",
        "",
        "## Bytes on the wire",
        "",
        "| what | bytes |",
        "| --- | ---: |",
        f"| a window's signed message(s), median | {result['wire_bytes_per_window']['median']:,.0f} |",
        f"| a window's signed message(s), largest | {result['wire_bytes_per_window']['max']:,.0f} |",
        f"| a device's day at one window a minute | {result['wire_bytes_per_device_day_at_1_per_minute']:,.0f} |",
        "",
        "HTTP adds its headers (about 200 bytes a request); MQTT about 40 bytes a message.",
        "",
        "## Ingest (windows per second)",
        "",
        "Signature check, dedup, merge into the base buckets and a durable commit included. *In process*:",
        "the collector's ingest called by threads, as the HTTP server's thread pool calls it, no HTTP.",
        "*Over HTTP*: `edge-runtime collector serve` processes on 127.0.0.1, driven by client",
        "processes on the same 2 cores (so the clients take CPU from the collectors; they are minimal",
        "HTTP/1.1 clients on raw keep-alive sockets, each thread sending to one collector, so that",
        "with 2 collectors both are sent to at once).",
        "",
        "| setup | median | runs |",
        "| --- | ---: | --- |",
    ]
    for label, figures in result["ingest"].items():
        runs = ", ".join(f"{r:,.0f}" for r in figures["runs"])
        lines.append(f"| {label} | {figures['median']:,.0f} | {runs} |")
    flagged = sum(1 for buckets in result.get("flagged", {}).values() for _, signals in buckets if signals)
    lines += ["", "## Fleet drift query", "",
              "`edge-runtime fleet drift` over every stored window, 1-hour buckets (base buckets merged at",
              "ingest; the windows read without their profiles; in a bucket that flags a signal, its devices",
              "ranked by their windows' own verdicts and the top ones judged on their merged windows).", "",
              "" if flagged else "On the first fleet no bucket flagged (one shifted device among the fleet is "
              "diluted), so no device was judged.",
              "",
              "| fleet | store | windows | median s | min s | max s |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name, figures in result["query_s"].items():
        lines.append(f"| one device shifted | {name} | {result['query_windows'][name]:,} | {figures['median']:.3f} | "
                     f"{figures['min']:.3f} | {figures['max']:.3f} |")
    for name, figures in result.get("query_flagged_s", {}).items():
        lines.append(f"| {result['shifted_devices']:,} devices shifted | {name} | "
                     f"{result['query_flagged_windows'][name]:,} | {figures['median']:.3f} | "
                     f"{figures['min']:.3f} | {figures['max']:.3f} |")
    for name, found in result.get("query_flagged", {}).items():
        lines += ["", f"Flagged fleet, {name}: {found['flagged_buckets']} of {found['buckets']} buckets flagged "
                      f"({', '.join(found['signals'])}); up to {found['drivers']:,} devices named per signal, "
                      f"{found['judged']} judged on their merged windows (the top {JUDGED_DEVICES} of each flagged signal), "
                      "the rest ranked by their windows' own verdicts."]
    sqlite_rates = [f["median"] for label, f in result["ingest"].items() if label.startswith("sqlite")]
    best = max(sqlite_rates) if sqlite_rates else 0.0
    # The slower of the two fleets' queries: the target holds when buckets flag too.
    query = max(figures.get("sqlite", {}).get("median", float("nan"))
                for figures in (result["query_s"], result.get("query_flagged_s") or result["query_s"]))
    wire = result["wire_bytes_per_window"]["max"]
    lines += ["", "## Against the issue's targets", "",
              "| target | measured | met |", "| --- | --- | --- |",
              f"| >= 1,000 windows/s, one collector process, SQLite | {best:,.0f} windows/s (best setup) | "
              f"{'yes' if best >= 1000 else 'no'} |",
              f"| fleet drift query over 10,000 windows < 1 s | {query:.3f} s (SQLite, the slower fleet) | "
              f"{'yes' if query < 1 and result['windows'] >= 10_000 else 'no' if result['windows'] >= 10_000 else 'n/a'} |",
              f"| a {result['features']}-feature window <= 64 KB on the wire | {wire / 1024:,.1f} KiB (largest) | "
              f"{'yes' if wire <= 64 * 1024 else 'no'} |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--shifted-share", type=float, default=0.2,
                        help="Share of the second fleet's devices that shift (0: no second fleet)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--client-threads", type=int, default=8)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--postgres", metavar="URL", help="A PostgreSQL server to use (default: start one)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", type=Path, metavar="PAGE", help="Write the Markdown page here")
    args = parser.parse_args()
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])

    def run(postgres: str | None) -> dict[str, Any]:
        return measure(devices=args.devices, windows=args.windows, features=args.features, rows=args.rows,
                       repeats=args.repeats, threads=args.threads, clients=args.clients,
                       client_threads=args.client_threads, http=not args.no_http, postgres=postgres,
                       shifted_share=args.shifted_share, progress=lambda line: print(line, file=sys.stderr, flush=True))

    pg_version = None
    if args.no_postgres:
        result = run(None)
    elif args.postgres:
        result = run(args.postgres)
    else:
        with _postgres() as url:
            import psycopg

            with psycopg.connect(url) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                pg_version = str(row[0]) if row else None
            result = run(url)
    if args.write:
        args.write.write_text(page(result, command, pg_version))
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
