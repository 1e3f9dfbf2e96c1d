"""benchmarks/drift_quality.py --quick runs end to end and reports rates that make sense."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent


def allowed_alarms(windows: int, rate: float = 0.01, tail: float = 0.001) -> int:
    """The most windows with a drift verdict that a true rate of ``rate`` explains (more: P < ``tail``).

    >>> allowed_alarms(40), allowed_alarms(200)
    (3, 8)
    """
    k, below = 0, 0.0
    while True:
        below += math.comb(windows, k) * rate ** k * (1 - rate) ** (windows - k)
        if 1.0 - below < tail:
            return k
        k += 1


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("drift_quality")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "benchmarks/drift_quality.py", "--quick", "--seed", "7",
                    "--json", str(out / "results.json"), "--write", str(out / "drift-quality.md")],
                   cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=600)
    return json.loads((out / "results.json").read_text()), (out / "drift-quality.md").read_text()


@pytest.mark.slow
def test_quick_run_has_every_part_and_rates_in_range(quick: tuple[dict[str, Any], str]) -> None:
    results, page = quick
    assert set(results) == {"meta", "grid", "targets", "realistic", "datasets"}
    assert results["meta"]["quick"] is True and results["meta"]["versions"]["numpy"]
    assert [g["name"] for g in results["grid"]] == ["numeric", "mixed"]
    for grid in results["grid"]:
        assert grid["features"] == 30 and grid["reference_rows"] >= 20_000
        assert {w["rows"] for w in grid["windows"]} >= {5_000, 50_000}
        for window in grid["windows"]:
            for d in window["detection"].values():
                assert 0.0 <= d["rate"] <= 1.0 and d["hits"] <= window["trials"]
                assert d["rate"] == pytest.approx(d["hits"] / window["trials"])
            for key in ("unshifted_false_alarms", "stationary_false_alarms"):
                assert 0.0 <= window[key]["rate"] <= 1.0 and window[key]["windows"] <= window["trials"]
    assert results["targets"] and all(isinstance(t["met"], bool) for t in results["targets"])
    for entry in results["realistic"]:
        assert {e["name"] for e in results["realistic"]} == {"tied", "skewed", "weekly"}
        assert all(0.0 <= w["rate"] <= 1.0 for w in entry["windows"])
    for heading in ("## Trade-off", "## The issue's bars", "## Realistic stationary data", "## Data sets, end to end"):
        assert heading in page
    assert "| 5,000 | 4 |" in page


@pytest.mark.slow
def test_a_big_shift_is_found_in_every_5000_row_window(quick: tuple[dict[str, Any], str]) -> None:
    results, _ = quick
    for grid in results["grid"]:
        at = next(w for w in grid["windows"] if w["rows"] == 5_000)
        big = {f: d for f, d in at["detection"].items() if d["size"] == 0.2}
        assert big, grid["name"]
        for feature, d in big.items():
            assert d["rate"] == 1.0, (grid["name"], feature, d)


@pytest.mark.slow
def test_stationary_5000_row_windows_stay_within_the_allowed_alarms(quick: tuple[dict[str, Any], str]) -> None:
    results, _ = quick
    for grid in results["grid"]:
        at = next(w for w in grid["windows"] if w["rows"] == 5_000)
        alarms = at["stationary_false_alarms"]["windows"]
        assert alarms <= allowed_alarms(at["trials"]), (grid["name"], alarms, at["trials"])


@pytest.mark.slow
def test_data_set_runs_count_every_shifted_cell_once(quick: tuple[dict[str, Any], str]) -> None:
    results, _ = quick
    assert {d["name"] for d in results["datasets"]} == {"breast_cancer", "mixed"}
    for d in results["datasets"]:
        assert d["windows"] == len(d["per_window"]) == 4 and d["reference_rows"] >= 20_000
        shifted_windows = [w for w in d["per_window"] if w["shifted"]]
        assert len(shifted_windows) == d["windows"] - d["change_at"]
        assert d["hits"] + d["misses"] == len(d["shifts"]) * len(shifted_windows)
        for window in d["per_window"]:
            assert window["rows"] == d["window_rows"]
            if not window["shifted"]:
                assert window["hits"] == window["misses"] == []
        # The injection works: the largest numeric shift (KS 0.1) measures well above the
        # no-drift range in shifted windows, and within it before the change point.
        largest = max((s for s in d["shifts"] if s["metric"] == "ks"), key=lambda s: s["size"])["feature"]
        for window in d["per_window"]:
            metric, value, _ = window["measured"][largest]
            assert metric == "ks"
            assert (value >= 0.06) if window["shifted"] else (value <= 0.05), (d["name"], window)
