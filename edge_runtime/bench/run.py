"""Run one scenario on a bundle: open the runtime, draw the rows, dispatch, assemble the report."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bench.cold_start import run_cold_start
from edge_runtime.bench.max_qps import run_max_qps
from edge_runtime.bench.offline import run_offline
from edge_runtime.bench.report import (
    BenchReport,
    Machine,
    ModelIdentity,
    ScenarioResult,
    Versions,
)
from edge_runtime.bench.rows import reference_rows
from edge_runtime.bench.server import run_server
from edge_runtime.bench.settings import BenchSettings
from edge_runtime.bench.single_stream import run_single_stream
from edge_runtime.bench.timing import Progress, ProgressTracker
from edge_runtime.budgets.resources import machine_info
from edge_runtime.config import RuntimeConfig, load_config
from edge_runtime.monitoring.data_profile import load_reference
from edge_runtime.monitoring.interface import NullMonitor
from edge_runtime.runtime import Runtime
from edge_runtime.serving.session import onnxruntime_version
from edge_runtime.version import __version__

__all__ = ["run_benchmark"]

_DRAWN_ROWS = 4096


def run_benchmark(bundle: str | Path, settings: BenchSettings, *, config: RuntimeConfig | str | Path | None = None,
                  rows: list[Any] | None = None, progress: Progress | None = None) -> BenchReport:
    """Run one scenario on a bundle and return its report.

    Parameters
    ----------
    bundle : str or Path
    settings : BenchSettings
    config : RuntimeConfig, str or Path, optional
        The device config (budgets, monitoring), given to the cold-start children
        too. With ``compare_raw`` and no monitoring database configured, the
        monitored layer uses a temporary one.
    rows : list, optional
        Input rows (arrays in schema order or dicts); default: drawn from the reference profile.
    progress : callable, optional
        Called with the fraction of the planned work done (warm-up and every
        probe included) as it grows; 1.0 only once the run has ended.

    Returns
    -------
    BenchReport
        Its ``to_dict()`` is what ``edge-runtime bench --json`` prints.

    Raises
    ------
    ConfigError
        A max-QPS search without a latency budget, or a cold-start child that failed.
    """
    runtime_config = load_config(config) if isinstance(config, (str, Path)) else (config or RuntimeConfig())
    track = ProgressTracker(progress)
    with tempfile.TemporaryDirectory() as tmp:
        if settings.compare_raw and runtime_config.monitoring.db is None:
            runtime_config = dataclasses.replace(runtime_config, monitoring=dataclasses.replace(
                runtime_config.monitoring, db=Path(tmp) / "bench.db"))
        with Runtime(bundle, config=runtime_config) as runtime:
            if rows is None:
                rows = reference_rows(runtime.manifest.input_schema, load_reference(runtime.bundle), _DRAWN_ROWS,
                                      settings.seed)
            # Read before the run: under a budget the fallback model may be answering by its end.
            model = ModelIdentity(name=runtime.info.name, version=runtime.info.version,
                                  sha256=runtime.model_sha256)
            machine = Machine.from_info(machine_info())
            versions = Versions(edge_runtime=__version__, onnxruntime=onnxruntime_version(),
                                numpy=np.__version__)
            # Off means a NullMonitor, not None, since the serving path calls its monitor unconditionally.
            monitoring = not isinstance(runtime.monitor, NullMonitor)
            budget_ms = settings.budget_ms or (runtime_config.budgets.latency_ms or None)
            results: ScenarioResult
            if settings.scenario == "single-stream":
                results = run_single_stream(runtime, bundle, rows, settings, track)
            elif settings.scenario == "server" and settings.find_max_qps:
                results = run_max_qps(runtime, rows, settings, track, budget_ms)
            elif settings.scenario == "server":
                results = run_server(runtime, rows, settings, track, budget_ms)
            elif settings.scenario == "offline":
                raw = runtime.session.raw_run if settings.compare_raw else None
                results = run_offline(runtime, rows, settings, track, raw)
            else:
                # The config as given: the children open their own database, not the temporary one.
                results = run_cold_start(Path(bundle), config, rows[0], progress=track)
            report = BenchReport(settings=settings, model=model, machine=machine, versions=versions,
                                 monitoring=monitoring, rows=len(rows), results=results,
                                 budget=runtime.budget_state)
    track.finish()
    return report
