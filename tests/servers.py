"""Real servers for the tests, each started on a free 127.0.0.1 port in a temporary directory.

PostgreSQL (Debian's ``postgresql`` package) refuses to run as root, so as root the
cluster runs as the ``postgres`` user, in a ``mkdtemp`` directory chowned to it
(pytest's ``tmp_path`` sits under a 0700 root directory that user cannot enter).
Under ``CI=true`` a missing server fails the test; elsewhere it skips.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = ["CollectorProcess", "MosquittoServer", "PostgresServer", "fleet_store_url", "free_port", "missing_server", "mosquitto", "mosquitto_factory", "postgres_server", "start_postgres"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_server(what: str) -> None:
    """Fail under CI (a server the suite needs must be there), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing, and CI must run every server test (scripts/test installs it)")
    pytest.skip(f"{what} is missing")


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: [int(x) if x.isdigit() else x for x in Path(p).parts[-3].split(".")])
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


class PostgresServer:
    """A throwaway PostgreSQL cluster (trust authentication: for tests only)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="edge-runtime-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_postgres, *args], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.resume()

    def resume(self) -> None:
        """Start the server on its existing data directory (after :meth:`halt`)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off", "-w", "start")

    def halt(self) -> None:
        """Stop the server and keep its data, as a database outage would."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """A fresh, empty database on this server, and its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        except (subprocess.SubprocessError, OSError):
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():  # pg_ctl failed: stop the postmaster by its own pid
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A new PostgreSQL cluster, started (the caller stops it); fails or skips when PostgreSQL is missing."""
    bindir = _postgres_bin()
    if bindir is None:
        missing_server("PostgreSQL (Debian package 'postgresql')")
    assert bindir is not None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing_server("psycopg (pip install 'edge-runtime[collector]')")
    server = PostgresServer(bindir)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {exc.stderr or exc.stdout}")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; each test asks it for a fresh database."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty fleet store of each kind: a SQLite file, and a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleet.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


def _collector_command() -> list[str]:
    """``edge-runtime collector`` through its entry point when the project is installed (CI's
    ``pip install -e``), else ``python -m collector`` (a checkout run in place)."""
    import sys
    from importlib import metadata

    if any(ep.name == "collector" for ep in metadata.entry_points(group="edge_runtime.commands")):
        return [sys.executable, "-m", "edge_runtime", "collector"]
    return [sys.executable, "-m", "collector"]


class CollectorProcess:
    """``edge-runtime collector serve`` in a child process on a free loopback port."""

    def __init__(self, store_url: str, *extra: str, port: int | None = None, log: Path | None = None) -> None:
        self.store_url = store_url
        self.port = port or free_port()
        self.scheme = "https" if "--tls-cert" in extra else "http"
        self.args = [*_collector_command(), "serve", "--store", store_url, "--port", str(self.port), *extra]
        self.log = log or Path(tempfile.mkstemp(prefix="collector-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, ssl_context: object = None) -> CollectorProcess:
        import time
        import urllib.error
        import urllib.request

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the collector exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2,
                                            context=ssl_context) as answer:  # type: ignore[arg-type]
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the collector did not answer /healthz within {timeout} s: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _mosquitto_bin() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


class MosquittoServer:
    """A mosquitto broker of its own: our config, a free loopback port, stopped by its pid.

    ``allow_anonymous true`` is for tests only (``docs/sync-mqtt.md`` has the real setup).

    Parameters
    ----------
    binary : str
    extra : list of str
        More config lines for the listener (``max_packet_size 2000``, ``password_file ...``).
    """

    def __init__(self, binary: str, extra: list[str] | None = None, *, anonymous: bool = True) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="edge-runtime-mqtt-"))
        self.port = free_port()
        self.config = self.root / "mosquitto.conf"
        self.config.write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            "persistence false",
            # Run as whoever starts it: as root, mosquitto would switch to its own user,
            # who cannot read this root-owned temporary directory.
            *(["user root"] if os.geteuid() == 0 else []),
            *(extra or []),
        ]) + "\n")
        self.log = self.root / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections."""
        with self.log.open("ab") as log:
            self._process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log,
                                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} in 20 s: {self.log.read_text()}")

    def stop(self) -> None:
        """Stop the broker (by its own pid); a later :meth:`start` brings it back on the same port."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def mosquitto_factory() -> Iterator[Callable[..., MosquittoServer]]:
    """Start brokers with config lines of their own; all are stopped at the end of the session."""
    binary = _mosquitto_bin()
    started: list[MosquittoServer] = []

    def start(extra: list[str] | None = None, *, anonymous: bool = True) -> MosquittoServer:
        if binary is None:
            missing_server("mosquitto (Debian package 'mosquitto')")
        assert binary is not None
        try:
            import paho.mqtt  # noqa: F401
        except ImportError:
            missing_server("paho-mqtt (pip install 'edge-runtime[collector]')")
        server = MosquittoServer(binary, extra, anonymous=anonymous)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.cleanup()


@pytest.fixture(scope="session")
def mosquitto(mosquitto_factory: Callable[..., MosquittoServer]) -> MosquittoServer:
    """One plain broker for the session (anonymous, no persistence)."""
    return mosquitto_factory()
