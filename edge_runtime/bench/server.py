"""The server scenario: Poisson arrivals at a target rate, latency counted from the scheduled arrival.

A run reports the latency at one rate and judges it against the latency
budget. A run *meets* the budget when its p99 holds the budget, no query was
refused and the harness kept up with the arrivals; otherwise :attr:`ServerRun.why`
says what missed, in words: the p99 against the budget, how many answers a
p99 needs, the rate achieved against the rate offered, the refused queries,
and, when the p99 missed, how long the process waited for a CPU while other
processes ran (the machine's noise, not the model's load).

The max-QPS search built on these runs is :mod:`~edge_runtime.bench.max_qps`.

Examples
--------
>>> from edge_runtime.bench.server import ServerRun, judged
>>> from edge_runtime.bench.timing import Percentiles, ResourceUsage
>>> stats = Percentiles(p50_us=300.0, p90_us=900.0, p99_us=3127.5, p99_9_us=None, max_us=4200.0, mean_us=400.0)
>>> run = judged(ServerRun(target_qps=1000.0, offered_qps=1000.0, achieved_qps=990.0, queries=1024,
...                        answered=1024, refused=0, latency=stats, harness_late_p99_us=150.0, service_p99_us=220.0,
...                        usage=ResourceUsage(cpu_share=0.1, peak_rss_mb=80.0, rss_mb=80.0), seconds=1.03,
...                        cpu_wait_ms=41.0, budget_ms=1.0))
>>> run.met_budget, run.why
(False, ('p99 3,128 us over the budget 1,000 us',
         'the process waited 41 ms for a CPU during the 1.0 s run (other processes were running)'))
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.bench.settings import BenchSettings
from edge_runtime.bench.timing import (
    HARNESS_SHARE_LIMIT,
    P99_QUERIES,
    Percentiles,
    Progress,
    ResourceUsage,
    ResourceWatch,
    cpu_wait_s,
    percentiles,
    stages,
    warm_up,
)
from edge_runtime.errors import OverloadError
from edge_runtime.runtime import Runtime

__all__ = ["KEPT_UP_SHARE", "ServerRun", "judged", "planned_queries", "run_at", "run_server"]

KEPT_UP_SHARE = 0.9
"""A run whose queries went out at less than this share of the offered rate fell behind: a miss."""

_PROGRESS_EVERY = 64  # queries between two progress reports


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerRun:
    """What one run at a target rate measured, and its verdict against the latency budget.

    Parameters
    ----------
    target_qps : float
        Mean rate of the Poisson arrivals asked for.
    achieved_qps : float
        Answers per second of the run.
    queries : int
        Queries scheduled.
    answered : int
        Queries answered; the others were refused or deferred, or never issued
        when a search stopped a run that fell behind.
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
        Whether the run met the budget (see the module docstring); None without
        a budget, or when too few queries ran for a p99 and nothing else missed.
    offered_qps : float or None
        The mean rate of the arrival times actually drawn (``target_qps`` up to
        the Poisson draw's randomness); None when unknown.
    seconds : float
        Wall time of the run.
    cpu_wait_ms : float or None
        How long the harness's thread waited for a CPU, runnable, during the
        run: time other processes held the CPUs. None where the kernel does not say.
    why : tuple of str
        Why the run missed the budget or was not judged; empty when it met it.
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
    offered_qps: float | None = None
    seconds: float = 0.0
    cpu_wait_ms: float | None = None
    why: tuple[str, ...] = ()

    @property
    def issued(self) -> int:
        """Queries issued: answered or refused."""
        return self.answered + self.refused

    @property
    def kept_up(self) -> bool:
        """Whether every query was issued, at no less than :data:`KEPT_UP_SHARE` of the offered rate."""
        if self.issued < self.queries:
            return False
        offered = self.offered_qps if self.offered_qps is not None else self.target_qps
        return self.seconds <= 0 or self.issued / self.seconds >= KEPT_UP_SHARE * offered

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, flat as ``edge-runtime bench --json`` prints it."""
        return {"target_qps": self.target_qps, "achieved_qps": self.achieved_qps, "queries": self.queries,
                "answered": self.answered, "refused": self.refused, **self.latency.to_dict(),
                "harness_late_p99_us": self.harness_late_p99_us, "service_p99_us": self.service_p99_us,
                **self.usage.to_dict(), "notes": list(self.notes), "budget_ms": self.budget_ms,
                "met_budget": self.met_budget, "why": list(self.why), "offered_qps": self.offered_qps,
                "seconds": self.seconds, "cpu_wait_ms": self.cpu_wait_ms}


def judged(run: ServerRun) -> ServerRun:
    """The run with its verdict: ``met_budget`` and, unless it met the budget, ``why``.

    A run misses when it fell behind the arrivals, refused a query, or its p99
    exceeds the budget. When the p99 missed while the harness kept up, the
    time the process waited for a CPU and the harness's late wake-ups are
    named too, when either reaches the budget: they say the machine, not the
    load, lost the budget. Too few answers for a p99, and nothing else wrong,
    leaves the run unjudged (None), and ``why`` says how many a p99 needs.

    Parameters
    ----------
    run : ServerRun
        Measured; its ``met_budget`` and ``why`` are ignored.

    Returns
    -------
    ServerRun

    Examples
    --------
    >>> from edge_runtime.bench.timing import Percentiles, ResourceUsage, percentiles
    >>> few, _ = percentiles([100.0] * 500)
    >>> run = ServerRun(target_qps=500.0, achieved_qps=500.0, queries=500, answered=500, refused=0,
    ...                 latency=few, harness_late_p99_us=20.0, service_p99_us=90.0, seconds=1.0, budget_ms=1.0,
    ...                 usage=ResourceUsage(cpu_share=0.1, peak_rss_mb=80.0, rss_mb=80.0))
    >>> judged(run).met_budget, judged(run).why
    (None, ('not judged: a p99 needs at least 1,000 answered queries, 500 were',))
    >>> shed = dataclasses.replace(run, answered=400, refused=100)
    >>> judged(shed).met_budget, judged(shed).why
    (False, ('100 of 500 queries refused (load shedding: the runtime turned them away to keep its budgets)',
             'not judged on latency: a p99 needs at least 1,000 answered queries, 400 were'))
    >>> judged(dataclasses.replace(run, budget_ms=None)).met_budget is None
    True
    """
    if run.budget_ms is None:
        return dataclasses.replace(run, met_budget=None, why=())
    budget_us = run.budget_ms * 1000
    why: list[str] = []
    offered = run.offered_qps if run.offered_qps is not None else run.target_qps
    if run.issued < run.queries:
        why.append(f"fell behind the arrivals and was stopped after {run.seconds:.1f} s: "
                   f"{run.issued:,} of {run.queries:,} queries issued")
    elif not run.kept_up:
        why.append(f"achieved {run.issued / run.seconds:,.0f} qps of the {offered:,.0f} offered: "
                   f"the harness and the runtime could not keep up")
    if run.refused:
        why.append(f"{run.refused:,} of {run.queries:,} queries refused "
                   f"(load shedding: the runtime turned them away to keep its budgets)")
    p99 = run.latency.p99_us
    if p99 is None:
        if not why:
            return dataclasses.replace(run, met_budget=None, why=(
                f"not judged: a p99 needs at least {P99_QUERIES:,} answered queries, {run.answered:,} were",))
        why.append(f"not judged on latency: a p99 needs at least {P99_QUERIES:,} answered queries, "
                   f"{run.answered:,} were")
    elif p99 > budget_us:
        why.append(f"p99 {p99:,.0f} us over the budget {budget_us:,.0f} us")
        if run.kept_up:
            if run.cpu_wait_ms is not None and run.cpu_wait_ms >= run.budget_ms:
                why.append(f"the process waited {run.cpu_wait_ms:,.0f} ms for a CPU during the "
                           f"{run.seconds:.1f} s run (other processes were running)")
            if run.harness_late_p99_us >= budget_us:
                why.append(f"the harness woke up {run.harness_late_p99_us:,.0f} us late (p99) "
                           f"while the runtime was idle")
    return dataclasses.replace(run, met_budget=not why, why=tuple(why))


def run_server(runtime: Runtime, rows: list[Any], settings: BenchSettings, progress: Progress | None,
               budget_ms: float | None) -> ServerRun:
    """Warm up, then one run at ``settings.qps`` judged against ``budget_ms``.

    Parameters
    ----------
    runtime : Runtime
    rows : list
        Varied input rows, used in turn.
    settings : BenchSettings
    progress : callable or None
        Called with the completed fraction of the warm-up and the run.
    budget_ms : float or None
        The latency bound on the p99.

    Returns
    -------
    ServerRun
    """
    count = planned_queries(settings.qps, settings.duration_s, settings.min_queries)
    warming, running = stages(progress, [settings.warmup_s, count / settings.qps])
    warm_up(runtime.predict, rows, settings.warmup_s, warming)
    return run_at(runtime, rows, settings.qps, budget_ms=budget_ms, queries=count, seed=settings.seed,
                  progress=running)


def run_at(runtime: Runtime, rows: list[Any], qps: float, *, budget_ms: float | None, queries: int, seed: int,
           progress: Progress | None = None, stop_at: float | None = None) -> ServerRun:
    """``queries`` Poisson arrivals at ``qps``, one query at a time; latency counts from the scheduled arrival.

    Parameters
    ----------
    runtime : Runtime
    rows : list
        Used in turn.
    qps : float
        Mean arrival rate.
    budget_ms : float or None
        Judged against (see :func:`judged`).
    queries : int
        Arrivals scheduled.
    seed : int
        Seed of the arrival times.
    progress : callable or None
        Called with the fraction of the scheduled queries issued.
    stop_at : float or None
        A ``time.perf_counter()`` value: no query is issued from then on (a
        max-QPS search stops a run that fell far behind, or reached its time limit).

    Returns
    -------
    ServerRun
        Judged.
    """
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / qps, queries))
    latencies: list[float] = []
    service: list[float] = []
    late: list[float] = []
    refused = 0
    watch = ResourceWatch()
    waited = cpu_wait_s()
    start = time.perf_counter()
    idle = True
    for i, due in enumerate(arrivals):
        scheduled = start + due
        if stop_at is not None and max(scheduled, time.perf_counter()) >= stop_at:
            break
        if progress is not None and i % _PROGRESS_EVERY == 0:
            progress(i / queries)
        wait = scheduled - time.perf_counter()
        if wait > 0:
            # Sleep, never spin: a spinning harness would burn the CPU share that
            # the budgets measure. Late wake-ups are reported as harness_late_p99_us.
            time.sleep(wait)
        issued = time.perf_counter()
        if idle:  # the runtime was waiting: any delay now is the harness's
            late.append((issued - scheduled) * 1e6)
        try:
            result = runtime.predict(rows[i % len(rows)])
        except OverloadError:
            refused += 1
            continue
        if getattr(result, "deferred", False):
            refused += 1
            continue
        finished = time.perf_counter()
        latencies.append((finished - scheduled) * 1e6)
        service.append((finished - issued) * 1e6)
        idle = i + 1 >= len(arrivals) or finished <= start + arrivals[i + 1]
    elapsed = time.perf_counter() - start
    waited_after = cpu_wait_s()
    stats, notes = percentiles(latencies)
    harness_late = float(np.percentile(late, 99)) if late else 0.0
    if stats.p99_us and harness_late > HARNESS_SHARE_LIMIT * stats.p99_us:
        notes.append(f"the harness issued queries up to {harness_late:.1f} us late (p99) while the runtime was "
                     f"idle, more than 10% of the measured p99")
    usage = watch.done()
    return judged(ServerRun(
        target_qps=qps, offered_qps=float(queries / arrivals[-1]), achieved_qps=len(latencies) / elapsed,
        queries=int(queries), answered=len(latencies), refused=refused, latency=stats,
        harness_late_p99_us=harness_late, service_p99_us=float(np.percentile(service, 99)) if service else None,
        usage=usage, notes=tuple(notes), budget_ms=budget_ms, seconds=elapsed,
        cpu_wait_ms=(waited_after - waited) * 1e3 if waited is not None and waited_after is not None else None))


def planned_queries(qps: float, duration_s: float, min_queries: int) -> int:
    """Queries that last at least ``duration_s`` at ``qps``, and at least ``min_queries``.

    Examples
    --------
    >>> planned_queries(1000.0, 0.5, 1024), planned_queries(10_000.0, 0.5, 1024)
    (1024, 5000)
    """
    return max(min_queries, math.ceil(qps * duration_s))
