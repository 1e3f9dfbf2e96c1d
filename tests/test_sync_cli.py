"""``edge-runtime device init``, ``sync`` and ``sync status``: happy paths and their exact error lines;
``predict`` streaming with [sync] enabled; ``sync`` stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.monitoring.store import MonitorStore
from edge_runtime.sync.keys import DeviceKey
from tests.sync_helpers import CollectorStandIn, window

ROOT = Path(__file__).parent.parent


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def key_file(tmp_path: Path, runner: CliRunner) -> Path:
    path = tmp_path / "device.key"
    result = runner.invoke(main, ["device", "init", "--id", "dev-1", "--key-file", str(path)])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def collector(key_file: Path) -> Iterator[CollectorStandIn]:
    standin = CollectorStandIn(DeviceKey.load(key_file).public_text)
    yield standin
    standin.close()


def make_db(path: Path, windows: int) -> Path:
    store = MonitorStore(path)
    for i in range(windows):
        store.save_window(window(rows=300, seed=i, closed_at=time.time()), None, [])
    store.close()
    return path


def test_device_init_writes_a_private_key_file_and_prints_only_the_public_key(tmp_path: Path,
                                                                              runner: CliRunner) -> None:
    path = tmp_path / "device.key"
    result = runner.invoke(main, ["device", "init", "--id", "kiosk-7", "--key-file", str(path)])
    assert result.exit_code == 0
    key = DeviceKey.load(path)
    assert result.stdout == key.public_text + "\n" and key.device_id == "kiosk-7"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem_body = path.read_text().split("-----")[2].strip()
    assert pem_body not in result.output  # the private key is never printed
    again = runner.invoke(main, ["device", "init", "--id", "kiosk-7", "--key-file", str(path)])
    assert again.exit_code == 1
    assert again.output == (f"Error: key file {str(path)!r} exists already; remove it first to make a new key\n")
    bad = runner.invoke(main, ["device", "init", "--id", "a/b", "--key-file", str(tmp_path / "other.key")])
    assert bad.exit_code == 1 and bad.output.startswith("Error: device id 'a/b' is not valid")


def test_sync_once_sends_the_outbox_and_status_shows_it(tmp_path: Path, runner: CliRunner, key_file: Path,
                                                        collector: CollectorStandIn) -> None:
    db = make_db(tmp_path / "m.db", 3)
    before = runner.invoke(main, ["sync", "status", "--db", str(db)])
    assert before.exit_code == 0
    assert "device: not enrolled" in before.output and "outbox: 3 windows waiting in 3 entries" in before.output
    # No --device-id: the key file records it.
    result = runner.invoke(main, ["sync", "--db", str(db), "--url", collector.url, "--key-file", str(key_file),
                                  "--once"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sent 3 windows (") and result.output.endswith("), 0 waiting\n")
    assert collector.seqs() == [(0, 0), (1, 1), (2, 2)]
    shown = runner.invoke(main, ["sync", "status", "--db", str(db)])
    lines = shown.output.splitlines()
    assert lines[0].startswith("device: dev-1 (enrolled ")
    assert lines[1] == "outbox: 0 windows waiting in 0 entries (0.0 kB)"
    assert lines[2].startswith("last success: 20") and lines[3] == "last error: none"
    assert lines[5:] == ["lost: none", "dead letters: 0"]
    as_json = json.loads(runner.invoke(main, ["sync", "status", "--db", str(db), "--json"]).output)
    assert (as_json["device_id"], as_json["outbox_windows"], as_json["windows_sent"], as_json["losses"]) == (
        "dev-1", 0, 3, {})


def test_sync_once_against_a_failing_collector_exits_1_and_keeps_the_windows(
        tmp_path: Path, runner: CliRunner, key_file: Path, collector: CollectorStandIn) -> None:
    db = make_db(tmp_path / "m.db", 2)
    collector.mode = "500"
    result = runner.invoke(main, ["sync", "--db", str(db), "--url", collector.url, "--device-id", "dev-1",
                                  "--key-file", str(key_file), "--once"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == ("Error: the collector did not take the windows: HTTP 500 error: "
                                              "collector store unavailable; 2 windows wait in the outbox")
    shown = runner.invoke(main, ["sync", "status", "--db", str(db)]).output
    assert "outbox: 2 windows waiting" in shown
    assert "HTTP 500 error: collector store unavailable (1 failed run in a row, next try 20" in shown
    collector.mode = "ok"
    collector.reject_seqs = {0}
    assert runner.invoke(main, ["sync", "--db", str(db), "--url", collector.url, "--device-id", "dev-1",
                                "--key-file", str(key_file), "--once"]).exit_code == 0
    shown = runner.invoke(main, ["sync", "status", "--db", str(db)]).output
    assert "lost: rejected 1" in shown and "dead letters: 1\n  window 0: HTTP 422 rejected: unknown fields (" in shown
    assert "(recovered since)" in shown


def test_sync_errors_are_one_line(tmp_path: Path, runner: CliRunner, key_file: Path,
                                  collector: CollectorStandIn) -> None:
    db = make_db(tmp_path / "m.db", 1)
    common = ["sync", "--db", str(db), "--url", collector.url, "--key-file", str(key_file), "--once"]
    cases = {
        ("--device-id", "dev-2"): f"Error: device id 'dev-2' differs from the key file's ('dev-1' in '{key_file}')",
    }
    for extra, expected in cases.items():
        result = runner.invoke(main, [*common, *extra])
        assert (result.exit_code, result.output) == (1, expected + "\n")
    no_file = runner.invoke(main, ["sync", "--db", str(db), "--url", collector.url, "--once"])
    assert (no_file.exit_code, no_file.output) == (
        1, "Error: sync needs --device-id, --key-file (or the same keys in the [sync] table of --config)\n")
    missing = runner.invoke(main, ["sync", "--db", str(tmp_path / "none.db"), "--url", collector.url,
                                   "--device-id", "dev-1", "--key-file", str(key_file), "--once"])
    assert missing.output == f"Error: monitoring database '{tmp_path / 'none.db'}' does not exist\n"
    bad_url = runner.invoke(main, ["sync", "--db", str(db), "--url", "ftp://x", "--device-id", "dev-1",
                                   "--key-file", str(key_file), "--once"])
    assert bad_url.exit_code == 1 and bad_url.output.startswith("Error: The 'url' parameter of SyncSettings must be")
    bad_port = runner.invoke(main, ["sync", "--db", str(db), "--url", "http://127.0.0.1:99999", "--device-id",
                                    "dev-1", "--key-file", str(key_file), "--once"])
    assert (bad_port.exit_code, bad_port.output.count("\n")) == (1, 1)
    assert "a port in 1-65535" in bad_port.output and "'http://127.0.0.1:99999'" in bad_port.output
    no_key = runner.invoke(main, ["sync", "--db", str(db), "--url", collector.url, "--device-id", "dev-1",
                                  "--key-file", str(tmp_path / "nokey"), "--once"])
    assert no_key.exit_code == 1 and no_key.output.startswith("Error: cannot read the key file")
    mqtts = runner.invoke(main, ["sync", "--db", str(db), "--url", "mqtt://127.0.0.1:1", "--device-id", "dev-1",
                                 "--key-file", str(key_file), "--ca-file", str(key_file), "--once"])
    assert mqtts.output == ("Error: MQTT URL 'mqtt://127.0.0.1:1' is not TLS: use mqtts:// with a CA or certificate "
                            "file\n")
    status = runner.invoke(main, ["sync", "status", "--db", str(tmp_path / "none.db")])
    assert (status.exit_code, status.output) == (1, f"Error: monitoring database '{tmp_path / 'none.db'}' does not "
                                                    "exist\n")


def test_sync_takes_its_settings_from_the_config(tmp_path: Path, runner: CliRunner, key_file: Path,
                                                 collector: CollectorStandIn) -> None:
    make_db(tmp_path / "m.db", 2)
    config = tmp_path / "device.toml"
    config.write_text(f'[monitoring]\ndb = "m.db"\n\n[sync]\nurl = "{collector.url}"\ndevice_id = "dev-1"\n'
                      f'key_file = "device.key"\nmax_bytes_per_run = 1\n')
    result = runner.invoke(main, ["sync", "--config", str(config), "--once"])
    assert result.exit_code == 0, result.output
    assert "sent 1 window" in result.output and "1 waiting; stopped at --max-bytes-per-run" in result.output
    result = runner.invoke(main, ["sync", "--config", str(config), "--once", "--max-bytes-per-run", "0"])
    assert "sent 1 window" in result.output and result.output.endswith(", 0 waiting\n")
    config.write_text('[sync]\nurl = "http://x"\n')
    result = runner.invoke(main, ["sync", "--config", str(config), "--db", str(tmp_path / "m.db"), "--once"])
    assert result.output == "Error: [sync] lacks 'device_id', 'key_file'; it needs 'url', 'device_id' and 'key_file'\n"


def test_sync_never_takes_serving_down(tmp_path: Path, runner: CliRunner, cancer_bundle: Path,
                                      cancer_data: Any) -> None:
    X, _ = cancer_data
    source = tmp_path / "rows.csv"
    X.head(20).to_csv(source, index=False)
    config = tmp_path / "device.toml"
    config.write_text('[monitoring]\ndb = "m.db"\nwindow_rows = 5\n\n[sync]\nurl = "http://127.0.0.1:9"\n'
                      'device_id = "dev-1"\nkey_file = "missing.key"\n')
    result = runner.invoke(main, ["predict", str(cancer_bundle), "--input", str(source), "--config", str(config)])
    assert result.exit_code == 0
    assert result.stderr == (f"Warning: sync is off for this run: cannot read the key file "
                             f"'{tmp_path / 'missing.key'}': No such file or directory\n")
    assert len(result.stdout.splitlines()) == 21  # every row served


def test_a_missing_sync_extra_is_named(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['cryptography'] = None; from edge_runtime.cli import main; "
            f"main(['device', 'init', '--id', 'd', '--key-file', {str(tmp_path / 'k')!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: 'edge-runtime device init' needs the sync extra, which is not installed (")
    assert result.stderr.endswith(": pip install 'edge-runtime[sync]'\n")


def _wait_for(condition: Any, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_predict_streaming_with_sync_enabled_sends_windows_meanwhile(tmp_path: Path, key_file: Path,
                                                                     collector: CollectorStandIn,
                                                                     cancer_bundle: Path, cancer_data: Any) -> None:
    X, _ = cancer_data
    config = tmp_path / "device.toml"
    config.write_text(f'[monitoring]\ndb = "m.db"\nwindow_rows = 50\n\n[sync]\nurl = "{collector.url}"\n'
                      f'device_id = "dev-1"\nkey_file = "device.key"\ninterval_s = 0.05\n')
    lines = X.to_csv(index=False).splitlines()
    child = subprocess.Popen([sys.executable, "-m", "edge_runtime", "predict", str(cancer_bundle), "--input", "-",
                              "--config", str(config), "--batch-size", "256"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdin is not None
    # One batch of 256 rows (a block of its own: sketched at once, not buffered): five windows close.
    child.stdin.write("\n".join(lines[:257]) + "\n")
    child.stdin.flush()
    _wait_for(lambda: len(collector.stored) >= 2, "two windows at the collector while predict runs")
    child.stdin.write("\n".join(lines[257:]) + "\n")
    child.stdin.close()
    assert child.wait(timeout=120) == 0, child.stderr.read() if child.stderr else ""
    assert [first for first, _ in collector.seqs()][:2] == [0, 1]
    assert all(s.rows == 50 for s in collector.stored.values() if not s.partial)
    store = MonitorStore(tmp_path / "m.db")  # every window is at the collector or waits for the next run
    waiting = {e["seq_first"] for e in store.db.query("SELECT seq_first FROM outbox")}
    assert {w["seq"] for w in store.windows()} == waiting | {first for first, _ in collector.seqs()}
    store.close()


@pytest.mark.slow
def test_sync_runs_until_sigterm(tmp_path: Path, key_file: Path, collector: CollectorStandIn) -> None:
    db = make_db(tmp_path / "m.db", 2)
    child = subprocess.Popen([sys.executable, "-m", "edge_runtime", "sync", "--db", str(db), "--url", collector.url,
                              "--device-id", "dev-1", "--key-file", str(key_file), "--interval", "0.05"],
                             stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ))
    _wait_for(lambda: len(collector.stored) == 2, "the first run")
    store = MonitorStore(db)
    store.save_window(window(rows=300, seed=9, closed_at=time.time()), None, [])
    store.close()
    _wait_for(lambda: len(collector.stored) == 3, "a later run")
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 0
    assert child.stderr is not None
    lines = child.stderr.read().splitlines()  # the runs that sent something; idle runs say nothing
    assert [line.split(" (")[0] for line in lines] == ["sent 2 windows", "sent 1 window"]


@pytest.mark.slow
def test_a_device_syncs_through_the_real_collector_stopped_then_started(tmp_path: Path, runner: CliRunner,
                                                                       key_file: Path) -> None:
    """The real `edge-runtime collector serve` (not the stand-in): down for three windows, then up."""
    from collector.stores import open_store
    from tests.servers import CollectorProcess

    store_url = f"sqlite:///{tmp_path}/fleet.db"
    fleet = open_store(store_url)
    fleet.add_device("dev-1", DeviceKey.load(key_file).public_text, now=time.time())
    fleet.close()
    collector = CollectorProcess(store_url, log=tmp_path / "collector.log")
    db = make_db(tmp_path / "m.db", 3)
    args = ["sync", "--db", str(db), "--url", collector.url, "--device-id", "dev-1", "--key-file", str(key_file),
            "--once"]
    down = runner.invoke(main, args)
    assert down.exit_code == 1 and "cannot reach" in down.output and "3 windows wait in the outbox" in down.output
    store = MonitorStore(db)
    for i in range(3, 5):
        store.save_window(window(rows=300, seed=i, closed_at=time.time()), None, [])
    store.close()
    collector.start()
    try:
        up = runner.invoke(main, [*args[:-1], "--max-bytes-per-run", "1", "--once"])  # one window a run
        assert up.exit_code == 0 and "sent 1 window" in up.output
        assert runner.invoke(main, args).output.startswith("sent 4 windows")
        assert runner.invoke(main, args).output.startswith("sent 0 windows")
    finally:
        collector.stop()
    fleet = open_store(store_url)
    try:
        stored = list(fleet.windows())
        assert sorted((w.seq_first, w.seq_last) for w in stored) == [(s, s) for s in range(5)]
        assert {w.device_id for w in stored} == {"dev-1"} and {w.rows for w in stored} == {300}
        assert fleet.window_count("dev-1") == 5
    finally:
        fleet.close()


@pytest.mark.slow
def test_a_device_syncs_over_mqtt_through_a_real_broker(tmp_path: Path, runner: CliRunner, key_file: Path,
                                                        mosquitto_factory: Any) -> None:
    """`sync --url mqtt://...`: the same outbox through mosquitto to a collector subscribed with --mqtt."""
    from collector.stores import open_store
    from tests.servers import CollectorProcess

    store_url = f"sqlite:///{tmp_path}/fleet.db"
    fleet = open_store(store_url)
    fleet.add_device("dev-1", DeviceKey.load(key_file).public_text, now=time.time())
    fleet.close()
    mosquitto = mosquitto_factory()  # its own broker: the collector's persistent session must not outlive the test
    collector = CollectorProcess(store_url, "--mqtt", mosquitto.url, log=tmp_path / "collector.log").start()
    db = make_db(tmp_path / "m.db", 3)
    args = ["sync", "--db", str(db), "--url", mosquitto.url, "--device-id", "dev-1", "--key-file",
            str(key_file), "--once"]
    try:
        # Until the collector's subscription is in place the broker answers 'no matching subscribers'.
        _wait_for(lambda: runner.invoke(main, args).exit_code == 0, "a run through the broker")

        def stored() -> int:
            store = open_store(store_url)
            try:
                return store.window_count("dev-1")
            finally:
                store.close()

        _wait_for(lambda: stored() == 3, "three windows in the collector's store")
    finally:
        collector.stop()
    status = json.loads(runner.invoke(main, ["sync", "status", "--db", str(db), "--json"]).output)
    assert (status["outbox_windows"], status["windows_sent"], status["dead_letters"]) == (0, 3, 0)
