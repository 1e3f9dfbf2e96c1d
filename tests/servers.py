"""Real servers for the tests, each started on a free 127.0.0.1 port in a temporary directory.

Under ``CI=true`` a missing server fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = ["MosquittoServer", "free_port", "missing_server", "mosquitto", "mosquitto_factory"]


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
