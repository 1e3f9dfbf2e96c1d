"""The fleet half of ``edge-runtime demo``: two devices report to a collector on loopback.

It runs the very commands a user types, each as a child process, so what it shows is
what the fleet docs promise: ``device init``, ``collector add-model`` / ``add-device``,
``sync --once`` while the collector is down (the windows wait), ``collector serve``,
``sync --once`` again (every window arrives once), then ``fleet status`` and
``fleet drift``. It needs the ``collector`` extra (which brings the device's ``sync``
extra); the converters never import the collector, they only call its commands.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import EdgeRuntimeError

__all__ = ["FleetDemoReport", "collector_installed", "run_fleet_demo"]

_STARTUP_S = 30.0  # a collector on a loaded 2-core board can take seconds to import


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetDemoReport:
    """What the fleet demo ran and what the fleet views printed."""

    store: str
    devices: dict[str, Path]
    offline_sync: dict[str, str]  # device -> the failed run's line
    synced: dict[str, str]  # device -> the successful run's line
    status: str
    drift: str
    drift_json: dict[str, object]


def collector_installed() -> bool:
    """Whether the collector and its extra (starlette, uvicorn, cryptography) are importable."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("collector", "starlette", "uvicorn", "cryptography"))


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_runtime", *args]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(_command(*args), capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise EdgeRuntimeError(f"edge-runtime {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()}")
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the collector accepts connections (uvicorn listens once the app has started)."""
    deadline = time.monotonic() + _STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EdgeRuntimeError("the demo collector exited before serving")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise EdgeRuntimeError(f"the demo collector did not listen on port {port} within {_STARTUP_S:.0f} s")


def run_fleet_demo(work_dir: str | Path, bundle: Path, databases: dict[str, Path]) -> FleetDemoReport:
    """Enroll one device per monitoring database, sync them to a loopback collector, and read the fleet views.

    Parameters
    ----------
    work_dir : str or Path
        Where the keys and the collector's SQLite store go.
    bundle : Path
        The bundle the devices serve (registered with the collector for its reference).
    databases : dict of str to Path
        Device id to the monitoring database that device wrote.
    """
    work = Path(work_dir)
    store = f"sqlite:///{work / 'fleet.db'}"
    (work / "fleet.db").unlink(missing_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    offline_sync: dict[str, str] = {}
    synced: dict[str, str] = {}
    _run("collector", "add-model", str(bundle), "--store", store)
    keys = {}
    for device in databases:
        keys[device] = work / f"{device}.key"
        keys[device].unlink(missing_ok=True)
        public = _run("device", "init", "--id", device, "--key-file", str(keys[device])).stdout.strip().splitlines()[-1]
        _run("collector", "add-device", device, "--public-key", public, "--store", store)

    def sync(device: str) -> subprocess.CompletedProcess[str]:
        return _run("sync", "--db", str(databases[device]), "--url", url, "--device-id", device,
                    "--key-file", str(keys[device]), "--once", check=False)

    for device in databases:  # the collector is not running yet: the windows wait on the device
        failed = sync(device)
        offline_sync[device] = _last_line(failed.stderr or failed.stdout)
    collector = subprocess.Popen(_command("collector", "serve", "--store", store, "--port", str(port)),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_serving(port, collector)
        for device in databases:
            done = sync(device)
            if done.returncode != 0:
                raise EdgeRuntimeError(f"sync of {device} failed: {_last_line(done.stderr or done.stdout)}")
            synced[device] = _last_line(done.stdout or done.stderr)
    finally:
        collector.terminate()
        collector.wait(timeout=30)
    status = _run("fleet", "status", "--store", store).stdout.rstrip()
    drift = _run("fleet", "drift", "--store", store, "--bucket", "1d").stdout.rstrip()
    drift_json = json.loads(_run("fleet", "drift", "--store", store, "--bucket", "1d", "--json").stdout)
    return FleetDemoReport(store=store, devices=dict(databases), offline_sync=offline_sync, synced=synced,
                           status=status, drift=drift, drift_json=drift_json)


def _last_line(text: str) -> str:
    lines: Sequence[str] = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
