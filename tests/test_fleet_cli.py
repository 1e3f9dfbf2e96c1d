"""``fleet status`` and ``fleet drift`` through click, on a real SQLite fleet store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.fleet_cli import fleet_command, parse_duration, parse_since
from collector.simulation import Shift, simulate_fleet
from collector.stores import open_store

HOUR = 1_800_000_000.0


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('fleet') / 'fleet.db'}"
    model, windows = simulate_fleet(devices=3, windows_per_device=12, features=10, rows=5000, seed=0,
                                    shifts=(Shift(device=1, feature=2, delta=0.25, from_window=6),),
                                    start=HOUR - 600.0)
    _, strangers = simulate_fleet(devices=1, windows_per_device=2, features=3, rows=500, seed=1, name="other")
    store = open_store(url)
    try:
        store.add_model(model)
        for d in range(3):
            store.add_device(f"dev-{d:03d}", "ed25519:" + "A" * 43 + "=", now=HOUR)
        for window in windows + strangers:
            assert store.insert_window(window)
    finally:
        store.close()
    return url


def test_fleet_drift_names_the_shift_and_its_device(store_url: str) -> None:
    result = CliRunner().invoke(fleet_command, ["drift", "--store", store_url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("sim 1 (") and "18 windows from 3 devices, 90,000 rows; drifted locally: 0 of 3" in lines[0]
    second = next(i for i, line in enumerate(lines) if "drifted locally: 1 of 3 devices (dev-001)" in line)
    assert lines[second + 1].startswith("  drift: f02 (ks 0.0") or lines[second + 2].startswith("  warn:  f02 (ks 0.0")
    assert any(line.startswith("  f02 driven by dev-001: ks 0.1") and "6 of 6 windows flagged locally" in line
               for line in lines[second:])
    assert lines[-1].startswith("other 1 (") and lines[-1].endswith(
        "not assessed: unknown model (2 windows from 1 device)")


def test_fleet_drift_text_says_how_many_drivers_were_judged() -> None:
    from collector.fleet_cli import format_fleet_drift
    from collector.fleet_drift import fleet_drift

    model, windows = simulate_fleet(devices=8, windows_per_device=6, features=6, rows=2000, seed=3,
                                    shifts=(Shift(device=3, feature=2, delta=0.6), Shift(device=5, feature=2, delta=0.3)),
                                    start=HOUR - 300.0)
    lines = format_fleet_drift(fleet_drift(windows, {model.sha256: model}, judged_devices=1)).splitlines()
    (line,) = [line for line in lines if line.startswith("  f02 driven by ")]
    assert line.startswith("  f02 driven by dev-003: ks ") and line.endswith(
        "; dev-005: 6 of 6 windows flagged locally (1 of 2 judged on their merged windows)")


def test_fleet_drift_json_selects_model_since_and_bucket(store_url: str) -> None:
    args = ["drift", "--store", store_url, "--json", "--model", "sim", "--bucket", "2h",
            "--since", "2027-01-15T08:00:00Z"]
    report = json.loads(CliRunner().invoke(fleet_command, args).output)
    assert report["bucket_seconds"] == 7200.0 and report["unassessed"] == []
    (bucket,) = report["buckets"]
    assert bucket["windows"] == 36
    # Over two hours the shift is a sixth of the rows (KS ~0.017): below the effect floors, yet the largest.
    values = {name: verdict["value"] for name, verdict in bucket["features"].items()}
    assert max(values, key=values.__getitem__) == "f02" and bucket["features"]["f02"]["status"] == "ok"
    late = json.loads(CliRunner().invoke(fleet_command, ["drift", "--store", store_url, "--json",
                                                         "--since", str(HOUR + 3600)]).output)
    assert [b["start"] for b in late["buckets"]] == [HOUR + 3600]


def test_fleet_drift_refuses_a_bad_bucket(store_url: str) -> None:
    result = CliRunner().invoke(fleet_command, ["drift", "--store", store_url, "--bucket", "soon"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "Error: 'soon' is not a duration of up to 100 years; use e.g. 15m, 1h, 2d or a number of seconds"
    result = CliRunner().invoke(fleet_command, ["drift", "--store", store_url, "--since", "yesterday"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == ("Error: 'yesterday' is not a time; use ISO 8601 (2026-11-30T10:00Z), "
                                              "epoch seconds, or a duration back from now (2h)")


def test_fleet_views_refuse_what_names_nothing(store_url: str, tmp_path: Path) -> None:
    """A bucket past the clock's range, a model nobody runs, a store that is not there: one line each."""
    result = CliRunner().invoke(fleet_command, ["drift", "--store", store_url, "--bucket", "99999999999999999999"])
    assert result.exit_code == 1 and result.output.startswith("Error: '99999999999999999999' is not a duration")
    result = CliRunner().invoke(fleet_command, ["drift", "--store", store_url, "--model", "nosuch"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: --model 'nosuch' matches no model in the store (registered: ")
    missing = tmp_path / "nowhere.db"
    for view in (["status"], ["drift"]):
        result = CliRunner().invoke(fleet_command, [*view, "--store", f"sqlite:///{missing}"])
        assert result.exit_code == 1 and result.output.startswith(f"Error: no fleet store at '{missing}'")
    assert not missing.exists()


def test_fleet_status_lists_every_device(store_url: str) -> None:
    result = CliRunner().invoke(fleet_command, ["status", "--store", store_url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["device", "last", "seen"]
    assert [line.split()[0] for line in lines[1:]] == ["dev-000", "dev-001", "dev-002"]
    report = json.loads(CliRunner().invoke(fleet_command, ["status", "--store", store_url, "--json"]).output)
    by_id = {d["device_id"]: d for d in report["devices"]}
    assert sorted(by_id) == ["dev-000", "dev-001", "dev-002"]
    assert by_id["dev-001"]["windows"] == 12 and by_id["dev-001"]["drift_windows"] >= 6
    assert by_id["dev-000"]["registered"] is True and by_id["dev-000"]["windows"] == 14  # 2 of model "other"


def test_fleet_status_on_a_missing_store_file_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(fleet_command, ["status", "--store", "mysql://x"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: store URL 'mysql://x' has an unknown scheme 'mysql'")


def test_durations_and_times() -> None:
    assert parse_duration("1d") == 86400.0
    assert parse_since("2026-11-30T10:00:00+01:00", 0.0) == parse_since("2026-11-30T09:00:00Z", 0.0)
