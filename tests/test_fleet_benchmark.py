"""benchmarks/fleet.py, the generator of docs/fleet-benchmarks.md: a small fleet through every path it
measures, checked for behaviour (every window stored once, the query sees them all), never for speed."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "fleet.py"


@pytest.fixture
def bench() -> Iterator[ModuleType]:
    """benchmarks/fleet.py as the module ``fleet``, its folder on sys.path: its client processes
    (spawned) import it by that name, as when it runs."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("fleet", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fleet"] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPT.parent))
        sys.modules.pop("fleet", None)


def _check(result: dict, windows: int) -> None:
    assert result["windows"] == windows
    assert 0 < result["wire_bytes_per_window"]["median"] <= result["wire_bytes_per_window"]["max"]
    assert result["wire_bytes_per_device_day_at_1_per_minute"] == result["wire_bytes_per_window"]["median"] * 1440
    for store, seen in result["query_windows"].items():
        assert seen == windows, store  # the query over the base buckets counts every stored window
    for label, figures in result["ingest"].items():
        assert figures["median"] > 0 and len(figures["runs"]) == 1, label
    # The second fleet, devices 0 and 5 of 6 shifted: its buckets flag, and the query names them.
    assert result["shifted_devices"] == 2
    for store, found in result["query_flagged"].items():
        assert result["query_flagged_windows"][store] == windows, store
        assert found["flagged_buckets"] >= 1 and "f02" in found["signals"], (store, found)
        assert set(found["top_drivers"]) <= {"dev-000", "dev-005"} and found["judged"] >= 2, (store, found)
        assert result["query_flagged_s"][store]["median"] > 0


def test_the_in_process_subset_stores_every_window_once_and_queries_them_all(bench: ModuleType) -> None:
    result = bench.measure(devices=6, windows=2, features=4, rows=300, repeats=1, threads=4, http=False)
    _check(result, 12)
    assert list(result["ingest"]) == ["sqlite in process (4 threads)"]
    page = bench.page(result, "python benchmarks/fleet.py --devices 6", None)
    assert "| sqlite in process (4 threads) |" in page and "## Fleet drift query" in page
    assert "| 2 devices shifted | sqlite | 12 |" in page


@pytest.mark.slow
def test_the_http_and_postgresql_subset(bench: ModuleType, postgres_server) -> None:  # type: ignore[no-untyped-def]
    result = bench.measure(devices=6, windows=2, features=4, rows=300, repeats=1, threads=4, clients=1,
                           client_threads=2, http=True, postgres=postgres_server.url)
    _check(result, 12)
    assert set(result["query_flagged"]) == {"sqlite", "postgresql"}
    assert set(result["ingest"]) == {
        "sqlite in process (4 threads)", "sqlite over HTTP, 1 collector process",
        "sqlite over HTTP, 2 collector processes", "postgresql in process (4 threads)", "postgresql over HTTP, 1 collector process",
        "postgresql over HTTP, 2 collector processes"}
