"""The server scenario: Poisson arrivals at a target rate, latency counted from the scheduled arrival.

A plain run reports the latency at one rate and judges its p99 against the
latency budget; ``find_max_qps`` searches the highest rate whose p99 holds it.

Examples
--------
>>> from edge_runtime.bench.server import ServerProbe, ServerSearch
>>> search = ServerSearch(max_qps=None, at_max_qps=None, budget_ms=0.5, probes=(
...     ServerProbe(target_qps=2000.0, p99_us=900.0, met_budget=False, refused=0),))
>>> search.to_dict()
{'max_qps': None, 'at_max_qps': None,
 'probes': [{'target_qps': 2000.0, 'p99_us': 900.0, 'met_budget': False, 'refused': 0}], 'budget_ms': 0.5}
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.bench.settings import BenchSettings
from edge_runtime.bench.timing import (
    HARNESS_SHARE_LIMIT,
    Percentiles,
    Progress,
    ResourceUsage,
    ResourceWatch,
    percentiles,
    warm_up,
)
from edge_runtime.errors import ConfigError, OverloadError
from edge_runtime.runtime import Runtime

__all__ = ["ServerProbe", "ServerRun", "ServerSearch", "run_server"]

_DOUBLINGS = 12  # bracket: at most 2**11 times the starting rate
_BISECTIONS = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerProbe:
    """One rate tried by a max-QPS search, and whether its p99 held the budget.

    Parameters
    ----------
    target_qps : float
    p99_us : float or None
        None when too few queries ran for a p99 (then the budget is not met).
    met_budget : bool or None
    refused : int
        Queries the runtime refused or deferred to keep its budgets.
    """

    target_qps: float
    p99_us: float | None
    met_budget: bool | None
    refused: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"target_qps": self.target_qps, "p99_us": self.p99_us, "met_budget": self.met_budget,
                "refused": self.refused}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerRun:
    """What one run at a target rate measured.

    Parameters
    ----------
    target_qps : float
        Mean rate of the Poisson arrivals offered.
    achieved_qps : float
        Answers per second of the run.
    queries : int
        Queries offered.
    answered : int
        Queries answered; the others were refused or deferred.
    refused : int
    latency : Percentiles
        From each answered query's scheduled arrival to its answer, so queueing counts.
    harness_late_p99_us : float
        p99 of how late the harness issued a query while the runtime was idle (0.0 when never idle).
    service_p99_us : float or None
        p99 from issue to answer; None when nothing was answered.
    usage : ResourceUsage
    notes : tuple of str
    budget_ms : float or None
        The latency budget judged against.
    met_budget : bool or None
        Whether the p99 held the budget; None without a budget or without a p99.
    """

    target_qps: float
    achieved_qps: float
    queries: int
    answered: int
    refused: int
    latency: Percentiles
    harness_late_p99_us: float
    service_p99_us: float | None
    usage: ResourceUsage
    notes: tuple[str, ...] = ()
    budget_ms: float | None = None
    met_budget: bool | None = None

    def probe(self) -> ServerProbe:
        """This run as one probe of a max-QPS search."""
        return ServerProbe(target_qps=self.target_qps, p99_us=self.latency.p99_us, met_budget=self.met_budget,
                           refused=self.refused)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, flat as ``edge-runtime bench --json`` prints it."""
        return {"target_qps": self.target_qps, "achieved_qps": self.achieved_qps, "queries": self.queries,
                "answered": self.answered, "refused": self.refused, **self.latency.to_dict(),
                "harness_late_p99_us": self.harness_late_p99_us, "service_p99_us": self.service_p99_us,
                **self.usage.to_dict(), "notes": list(self.notes), "budget_ms": self.budget_ms,
                "met_budget": self.met_budget}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSearch:
    """The highest rate found whose p99 holds the latency budget.

    Parameters
    ----------
    max_qps : float or None
        None when even the starting rate missed the budget.
    at_max_qps : ServerRun or None
        The run at ``max_qps``.
    probes : tuple of ServerProbe
        Every rate tried, in order: doubling from ``qps`` until a miss, then bisecting.
    budget_ms : float
    """

    max_qps: float | None
    at_max_qps: ServerRun | None
    probes: tuple[ServerProbe, ...]
    budget_ms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"max_qps": self.max_qps, "at_max_qps": self.at_max_qps.to_dict() if self.at_max_qps else None,
                "probes": [probe.to_dict() for probe in self.probes], "budget_ms": self.budget_ms}


def run_server(runtime: Runtime, rows: list[Any], settings: BenchSettings, progress: Progress | None,
               budget_ms: float | None) -> ServerRun | ServerSearch:
    """Warm up, then one run at ``settings.qps``, or a max-QPS search when ``settings.find_max_qps``.

    Parameters
    ----------
    runtime : Runtime
    rows : list
        Varied input rows, used in turn.
    settings : BenchSettings
    progress : callable or None
    budget_ms : float or None
        The latency bound on the p99.

    Returns
    -------
    ServerRun or ServerSearch

    Raises
    ------
    ConfigError
        A max-QPS search without a latency budget.
    """
    warm_up(runtime.predict, rows, settings.warmup_s)
    if not settings.find_max_qps:
        return _run_at(runtime, rows, settings.qps, settings, progress, budget_ms)
    if budget_ms is None:
        raise ConfigError("--find-max-qps needs a latency budget: --budget-ms or [budgets] latency_ms")
    # Bracket then bisect on the rate whose p99 still holds the budget.
    low, high = 0.0, settings.qps
    best: ServerRun | None = None
    probes = []
    for _ in range(_DOUBLINGS):
        result = _run_at(runtime, rows, high, settings, None, budget_ms)
        probes.append(result.probe())
        if not result.met_budget:
            break
        low, best, high = high, result, high * 2
    for _ in range(_BISECTIONS):
        if high - low <= max(1.0, 0.05 * high):
            break
        mid = (low + high) / 2
        result = _run_at(runtime, rows, mid, settings, None, budget_ms)
        probes.append(result.probe())
        if result.met_budget:
            low, best = mid, result
        else:
            high = mid
        if progress is not None:
            progress(0.5)
    return ServerSearch(max_qps=low if best is not None else None, at_max_qps=best, probes=tuple(probes),
                        budget_ms=budget_ms)


def _run_at(runtime: Runtime, rows: list[Any], qps: float, settings: BenchSettings, progress: Progress | None,
            budget_ms: float | None) -> ServerRun:
    """Poisson arrivals at ``qps``, one query at a time; latency counts from the scheduled arrival."""
    rng = np.random.default_rng(settings.seed)
    count = max(settings.min_queries, math.ceil(qps * settings.duration_s))
    arrivals = np.cumsum(rng.exponential(1.0 / qps, count))
    latencies: list[float] = []
    service: list[float] = []
    late: list[float] = []
    refused = 0
    watch = ResourceWatch()
    start = time.perf_counter()
    idle = True
    for i, due in enumerate(arrivals):
        wait = start + due - time.perf_counter()
        if wait > 0:
            # Sleep, never spin: a spinning harness would burn the CPU share that
            # the budgets measure. Late wake-ups are reported as harness_late_p99_us.
            time.sleep(wait)
        issued = time.perf_counter()
        if idle:  # the runtime was waiting: any delay now is the harness's
            late.append((issued - (start + due)) * 1e6)
        try:
            result = runtime.predict(rows[i % len(rows)])
        except OverloadError:
            refused += 1
            continue
        if getattr(result, "deferred", False):
            refused += 1
            continue
        finished = time.perf_counter()
        latencies.append((finished - (start + due)) * 1e6)
        service.append((finished - issued) * 1e6)
        idle = i + 1 >= len(arrivals) or finished <= start + arrivals[i + 1]
        if progress is not None and i % 256 == 0:
            progress(i / count)
    elapsed = time.perf_counter() - start
    stats, notes = percentiles(latencies)
    harness_late = float(np.percentile(late, 99)) if late else 0.0
    if stats.p99_us and harness_late > HARNESS_SHARE_LIMIT * stats.p99_us:
        notes.append(f"the harness issued queries up to {harness_late:.1f} us late (p99) while the runtime was "
                     f"idle, more than 10% of the measured p99")
    usage = watch.done()
    met = None if budget_ms is None or stats.p99_us is None else bool(stats.p99_us <= budget_ms * 1000)
    return ServerRun(target_qps=qps, achieved_qps=len(latencies) / elapsed, queries=int(count),
                     answered=len(latencies), refused=refused, latency=stats, harness_late_p99_us=harness_late,
                     service_p99_us=float(np.percentile(service, 99)) if service else None, usage=usage,
                     notes=tuple(notes), budget_ms=budget_ms, met_budget=met)
