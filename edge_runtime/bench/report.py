"""The typed report of one benchmark run, and the JSON form ``edge-runtime bench --json`` prints.

:meth:`BenchReport.to_dict` is a contract that other tools read: every key,
its nesting and the JSON type of its value stay as they were printed before
the report was typed (``tests/test_bench.py`` pins them).

Examples
--------
>>> from edge_runtime.bench.report import Machine
>>> Machine.from_info({"cpu": "Cortex-A72", "cores": 4, "logical_cores": 4, "arch": "aarch64",
...                    "memory_bytes": 4_000_000_000, "python": "3.11.7"}).to_dict()["arch"]
'aarch64'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from edge_runtime.bench.cold_start import ColdStartResult
from edge_runtime.bench.max_qps import ServerSearch
from edge_runtime.bench.offline import OfflineResult
from edge_runtime.bench.server import ServerRun
from edge_runtime.bench.settings import BenchSettings
from edge_runtime.bench.single_stream import SingleStreamResult
from edge_runtime.budgets.policy import BudgetState

__all__ = ["BenchReport", "Machine", "ModelIdentity", "ScenarioResult", "Versions"]

ScenarioResult = SingleStreamResult | ServerRun | ServerSearch | OfflineResult | ColdStartResult
"""What a scenario measured: the ``results`` of a report."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelIdentity:
    """The model measured.

    Parameters
    ----------
    name, version : str
        As in the bundle's manifest (the fallback's, if it was serving when the report was made).
    sha256 : str
        Of the main bundle's ONNX model.
    """

    name: str
    version: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    """The machine measured on.

    Parameters
    ----------
    cpu : str
        CPU model name.
    cores, logical_cores : int or None
        None where the platform does not tell.
    arch : str
    memory_bytes : int
    python : str
        Python version.
    """

    cpu: str
    cores: int | None
    logical_cores: int | None
    arch: str
    memory_bytes: int
    python: str

    @classmethod
    def from_info(cls, info: Mapping[str, object]) -> Machine:
        """From :func:`edge_runtime.budgets.resources.machine_info`'s dict."""
        cores, logical = info.get("cores"), info.get("logical_cores")
        return cls(cpu=str(info["cpu"]), cores=cores if isinstance(cores, int) else None,
                   logical_cores=logical if isinstance(logical, int) else None, arch=str(info["arch"]),
                   memory_bytes=cast(int, info["memory_bytes"]), python=str(info["python"]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"cpu": self.cpu, "cores": self.cores, "logical_cores": self.logical_cores, "arch": self.arch,
                "memory_bytes": self.memory_bytes, "python": self.python}


@dataclass(frozen=True, slots=True, kw_only=True)
class Versions:
    """Versions of the software measured."""

    edge_runtime: str
    onnxruntime: str
    numpy: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"edge_runtime": self.edge_runtime, "onnxruntime": self.onnxruntime, "numpy": self.numpy}


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchReport:
    """One benchmark run: what ran, where, on what, and what it measured.

    Parameters
    ----------
    settings : BenchSettings
        What was asked; ``settings.scenario`` is the scenario run.
    model : ModelIdentity
    machine : Machine
    versions : Versions
    monitoring : bool
        Whether the measured runtime monitored and logged its decisions.
    rows : int
        Distinct input rows the queries cycled through.
    results : ScenarioResult
        :class:`SingleStreamResult`, :class:`ServerRun` (or :class:`ServerSearch` with
        ``find_max_qps``), :class:`OfflineResult` or :class:`ColdStartResult`.
    budget : BudgetState or None
        The budget picture at the end of the run, when budgets were configured.
    """

    settings: BenchSettings
    model: ModelIdentity
    machine: Machine
    versions: Versions
    monitoring: bool
    rows: int
    results: ScenarioResult
    budget: BudgetState | None = None

    @property
    def scenario(self) -> str:
        """The scenario run."""
        return self.settings.scenario

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: exactly what ``edge-runtime bench --json`` prints."""
        out: dict[str, Any] = {"scenario": self.scenario, "settings": self.settings.to_dict(),
                               "model": self.model.to_dict(), "machine": self.machine.to_dict(),
                               "versions": self.versions.to_dict(), "monitoring": self.monitoring,
                               "rows": self.rows, "results": self.results.to_dict()}
        if self.budget is not None:
            out["budget"] = self.budget.to_dict()
        return out
