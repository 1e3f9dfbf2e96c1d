"""The max-QPS search: the highest arrival rate at which server runs keep meeting the latency budget.

On a shared machine one probe's verdict near the answer is a coin toss: other
processes take the CPU for a second here and there, and only ever add latency.
Measured on a 2-core machine at a load average of 4.7, short probes of the same
model met a 10 ms budget in 15 of 15 tries at 16,000 qps, 14 of 15 at 24,000,
8 of 15 at 32,000 and 2 of 15 at 40,000. A bisection trusts every verdict, so
one unlucky probe moves its answer for good: simulated on that curve, five
searches agreed within 20% about one time in five. This search instead walks a
staircase around the answer and averages where it turns, the method
psychophysics uses for thresholds measured through noisy yes/no answers
(Levitt, 1971); simulated the same way, five searches agreed within 20% in
nearly every trial, and on a quiet machine every search gives the same answer.

Method (also in ``docs/benchmarks.md``, "The max-QPS search"):

1. **Probes long enough for a p99.** Each probe is a server run
   (:func:`~edge_runtime.bench.server.run_at`) of at least ``duration_s`` and at
   least max(``min_queries``, 1,000) queries: 1,000 is the fewest a p99 is
   reported from, so a smaller ``min_queries`` is raised, with a note. A probe
   meets the budget or misses it, and says why
   (:func:`~edge_runtime.bench.server.judged`).
2. **A geometric grid.** Every rate tried is ``qps`` times a power of
   2^(1/8) (9% apart), so repeated searches try exactly the same rates.
3. **Bracket.** From ``qps``, double while the rate holds, halve while it
   misses, until a rate holds and twice it misses. A rate holds at its first
   probe that meets the budget; it misses after :data:`BRACKET_TRIES` (3)
   probes missed, or at once when the harness fell behind the arrivals (that
   is capacity, which another try cannot change). Halving stops early when two
   rates a factor 2 apart each missed :data:`STALL_TRIES` (4) probes and the
   lower one's best p99 is not 10% lower: such misses come from stalls or from
   the service time itself, not from load.
4. **Staircase.** From the middle of the bracket, one grid step up after
   :data:`UP_AFTER` (2) probes in a row met the budget, one step down after
   :data:`DOWN_AFTER` (2) in a row missed. This settles where a probe meets
   the budget as often as it misses it: the rate at which the median probe's
   p99 equals the budget; on a quiet machine, between the highest rate that
   always holds and the lowest that always misses. Asking for two in a row
   either way keeps a sporadic miss (another process took the CPU for a
   moment) from moving the walk. Each change of direction is a *reversal*.
   The steps start at :data:`FIRST_STEP` (4) grid rates and halve at each
   reversal down to one; after :data:`SAME_WAY` (3) moves the same way they
   double again, up to a doubling of the rate, so a bracket put off by
   unlucky probes is soon left behind. Only reversals at single steps count.
5. **Answer and confidence.** The most recent :data:`USED_REVERSALS` (8)
   reversals, never the first :data:`DISCARDED_REVERSALS` (the approach), are
   taken in pairs (a low turn and a high one); the answer is the geometric
   mean of the pairs' midpoints, and its 95% interval is Student's t over those
   midpoints (pairs, because successive reversals of a staircase are not
   independent), and never narrower than half a grid step (±4.4%), the
   grid's resolution. The search stops once it has :data:`MIN_REVERSALS` (8)
   reversals and the interval is within :data:`PRECISION` (±5%) of the
   answer, or at :data:`MAX_REVERSALS` (20).
6. **Bounded time.** A probe is stopped once it has run twice its schedule
   plus a second (it fell behind: a miss), and no probe starts that could run
   past ``search_limit`` seconds from the start of the search; the search
   then answers from what it has, and says so.

The result carries the interval, the reversals, how many probes met the
budget at each rate (:meth:`ServerSearch.tally`), the share of the probes'
time the process waited for a CPU, every probe with its reasons, why the
search stopped, and how long it ran.

Examples
--------
A fake probe for a quiet machine that holds a 1 ms budget up to 5,000 qps:

>>> from edge_runtime.bench.max_qps import search_max_qps
>>> from edge_runtime.bench.server import ServerRun, judged
>>> from edge_runtime.bench.timing import Percentiles, ResourceUsage
>>> def probe(rate, attempt, progress):
...     p99 = 500.0 if rate <= 5000 else 5000.0
...     stats = Percentiles(p50_us=100.0, p90_us=200.0, p99_us=p99, p99_9_us=None, max_us=p99, mean_us=120.0)
...     return judged(ServerRun(target_qps=rate, achieved_qps=rate, queries=1000, answered=1000, refused=0,
...                             latency=stats, harness_late_p99_us=10.0, service_p99_us=80.0, seconds=1000 / rate,
...                             usage=ResourceUsage(cpu_share=0.2, peak_rss_mb=80.0, rss_mb=80.0), budget_ms=1.0))
>>> search = search_max_qps(probe, start_qps=1000.0, budget_ms=1.0, planned_s=lambda rate: 0.0, limit_s=60.0)
>>> [round(p.target_qps) for p in search.probes][:12]  # bracket (8,000 missed three times), then the staircase
[1000, 2000, 4000, 8000, 8000, 8000, 5657, 5657, 4000, 4000, 4757, 4757]
>>> round(search.max_qps), [round(q) for q in search.interval_qps]
(4967, [4757, 5187])
>>> [(round(rate), met, probed) for rate, met, probed in search.tally()][3:]
[(4757, 10, 10), (5187, 0, 10), (5657, 0, 4), (8000, 0, 3)]
>>> search.stopped
'precision reached: the 95% interval is within 4.4% of the answer (aim: 5%) after 8 reversals'
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge_runtime.bench.server import ServerRun, planned_queries, run_at
from edge_runtime.bench.settings import BenchSettings
from edge_runtime.bench.timing import P99_QUERIES, Progress, stages, warm_up
from edge_runtime.errors import ConfigError
from edge_runtime.runtime import Runtime

__all__ = ["BRACKET_TRIES", "DISCARDED_REVERSALS", "DOWN_AFTER", "FIRST_STEP", "GRID_STEPS_PER_DOUBLING",
           "MAX_DOUBLINGS", "MAX_HALVINGS", "MAX_REVERSALS", "MIN_REVERSALS", "PRECISION", "SAME_WAY", "STALL_TRIES",
           "UP_AFTER", "USED_REVERSALS", "Probe", "ServerProbe", "ServerSearch", "probe_cutoff_s", "run_max_qps",
           "search_max_qps"]

GRID_STEPS_PER_DOUBLING = 8
"""Rates tried are ``qps`` times 2 to the power k / 8 for an integer k: 9% apart."""

UP_AFTER = 2
"""Probes in a row that must meet the budget before the staircase goes a step up."""

DOWN_AFTER = 2
"""Probes in a row that must miss the budget before the staircase goes a step down."""

BRACKET_TRIES = 3
"""Probes a rate gets in the bracket before it counts as missed (one where the harness fell behind)."""

STALL_TRIES = 4
"""Probes two rates must each have missed before halving stops for a p99 that does not fall."""

FIRST_STEP = 4
"""The staircase's first steps, in grid rates (4: a factor 2^(1/2)); they halve at each reversal."""

SAME_WAY = 3
"""Moves the same way after which the staircase's steps double again, up to a doubling of the rate."""

MIN_REVERSALS = 8
"""Reversals of the staircase (at single grid steps) before it may stop."""

MAX_REVERSALS = 20
"""Reversals after which it stops whatever the interval."""

DISCARDED_REVERSALS = 2
"""The first reversals, left out of the answer: they belong to the approach."""

USED_REVERSALS = 8
"""The answer rests on the most recent reversals, at most this many (four pairs)."""

PRECISION = 0.05
"""The staircase stops when the 95% interval of the answer is within this share of it."""

MAX_DOUBLINGS = 12
"""The search goes no higher than ``qps`` times 2 to this power."""

MAX_HALVINGS = 10
"""The search goes no lower than ``qps`` divided by 2 to this power."""

_STALL_SHARE = 0.9  # halving the rate must bring the p99 below this share of the one before, or misses are not load
# Two-sided 95% quantiles of Student's t by degrees of freedom (1 to 10): the interval
# rests on a handful of reversal pairs, too few for the normal quantile.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


class Probe(Protocol):
    """One server run at ``rate``, judged: ``attempt`` counts earlier probes at that rate (0 for the first).

    It reports the fraction of itself done through ``progress``, and stops
    itself at :func:`probe_cutoff_s` of its planned length.
    """

    def __call__(self, rate: float, attempt: int, progress: Progress, /) -> ServerRun: ...


def probe_cutoff_s(planned_s: float) -> float:
    """The longest a probe planned to last ``planned_s`` may run before it is stopped as fallen behind.

    Examples
    --------
    >>> probe_cutoff_s(1.5)
    4.0
    """
    return 2 * planned_s + 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerProbe:
    """One probe of a max-QPS search: the rate tried, its p99 and its verdict with the reasons.

    Parameters
    ----------
    target_qps : float
    p99_us : float or None
        None when too few queries were answered for a p99.
    met_budget : bool or None
        As :attr:`~edge_runtime.bench.server.ServerRun.met_budget`.
    refused : int
        Queries the runtime refused or deferred to keep its budgets.
    achieved_qps : float or None
        Answers per second.
    why : tuple of str
        Why the probe missed; empty when it met the budget.

    Examples
    --------
    >>> ServerProbe(target_qps=2000.0, p99_us=900.0, met_budget=False, refused=0).to_dict()
    {'target_qps': 2000.0, 'p99_us': 900.0, 'met_budget': False, 'refused': 0, 'achieved_qps': None, 'why': []}
    """

    target_qps: float
    p99_us: float | None
    met_budget: bool | None
    refused: int
    achieved_qps: float | None = None
    why: tuple[str, ...] = ()

    @classmethod
    def from_run(cls, run: ServerRun) -> ServerProbe:
        """The probe record of a judged run."""
        return cls(target_qps=run.target_qps, p99_us=run.latency.p99_us, met_budget=run.met_budget,
                   refused=run.refused, achieved_qps=run.achieved_qps, why=run.why)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"target_qps": self.target_qps, "p99_us": self.p99_us, "met_budget": self.met_budget,
                "refused": self.refused, "achieved_qps": self.achieved_qps, "why": list(self.why)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSearch:
    """The highest rate found at which probes keep meeting the latency budget, with the evidence for it.

    Parameters
    ----------
    max_qps : float or None
        The answer: the geometric mean of the staircase's recent reversal rates
        (see the module docstring), so it may lie between two rates of the grid;
        without reversals (a search stopped early, or every rate held), the
        highest rate where most probes met the budget; None when no rate held.
    at_max_qps : ServerRun or None
        The last probe that met the budget at the highest rate tried not above ``max_qps``.
    probes : tuple of ServerProbe
        Every probe, in order.
    budget_ms : float
    interval_qps : tuple of float or None
        The 95% interval of ``max_qps``; None with fewer than two reversals to go by.
    reversals_qps : tuple of float
        The rates where the staircase turned, in order (the answer leaves out the first
        :data:`DISCARDED_REVERSALS`).
    precision : float
        The interval's half-width, relative to the answer, that the search aimed at.
    stopped : str
        Why the search ended.
    seconds : float
        How long it ran, warm-up excluded.
    notes : tuple of str
        Settings the search changed, e.g. a query count raised for a p99.
    cpu_wait_share : float or None
        The share of the probes' time the process waited for a CPU while other
        processes ran: the machine's noise. Near 0 on a quiet device; where it is
        large, the answer moves with the other processes' load.

    Examples
    --------
    >>> search = ServerSearch(max_qps=None, at_max_qps=None, budget_ms=0.5, probes=(
    ...     ServerProbe(target_qps=2000.0, p99_us=900.0, met_budget=False, refused=0),))
    >>> search.to_dict()["probes"][0]["target_qps"], search.tally()
    (2000.0, [(2000.0, 0, 1)])
    """

    max_qps: float | None
    at_max_qps: ServerRun | None
    probes: tuple[ServerProbe, ...]
    budget_ms: float
    interval_qps: tuple[float, float] | None = None
    reversals_qps: tuple[float, ...] = ()
    precision: float = PRECISION
    stopped: str = ""
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    cpu_wait_share: float | None = None

    def tally(self) -> list[tuple[float, int, int]]:
        """For each rate tried, lowest first: the rate, the probes that met the budget there, and all probes there."""
        counts: dict[float, list[int]] = {}
        for probe in self.probes:
            count = counts.setdefault(probe.target_qps, [0, 0])
            count[0] += bool(probe.met_budget)
            count[1] += 1
        return [(rate, met, probed) for rate, (met, probed) in sorted(counts.items())]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"max_qps": self.max_qps, "at_max_qps": self.at_max_qps.to_dict() if self.at_max_qps else None,
                "probes": [probe.to_dict() for probe in self.probes], "budget_ms": self.budget_ms,
                "interval_qps": list(self.interval_qps) if self.interval_qps else None,
                "reversals_qps": list(self.reversals_qps), "precision": self.precision,
                "tally": [{"target_qps": rate, "met": met, "probes": probed} for rate, met, probed in self.tally()],
                "stopped": self.stopped, "seconds": self.seconds, "notes": list(self.notes),
                "cpu_wait_share": self.cpu_wait_share}


def run_max_qps(runtime: Runtime, rows: list[Any], settings: BenchSettings, progress: Progress | None,
                budget_ms: float | None) -> ServerSearch:
    """Warm up, then search the highest rate that holds ``budget_ms`` (see the module docstring).

    Parameters
    ----------
    runtime : Runtime
    rows : list
        Varied input rows, used in turn.
    settings : BenchSettings
        ``qps`` starts the search; ``duration_s`` and ``min_queries`` set each
        probe's length; ``search_limit`` bounds the search.
    progress : callable or None
    budget_ms : float or None
        The latency bound on the p99.

    Returns
    -------
    ServerSearch

    Raises
    ------
    ConfigError
        Without a latency budget.
    """
    if budget_ms is None:
        raise ConfigError("--find-max-qps needs a latency budget: --budget-ms or [budgets] latency_ms")
    least = max(settings.min_queries, P99_QUERIES)
    notes: tuple[str, ...] = ()
    if settings.min_queries < P99_QUERIES:
        notes = ((f"each probe runs at least {P99_QUERIES:,} queries, the fewest a p99 is reported from "
                 f"(--min-queries {settings.min_queries:,} raised)"),)

    def planned_s(rate: float) -> float:
        return planned_queries(rate, settings.duration_s, least) / rate

    def probe(rate: float, attempt: int, probe_progress: Progress) -> ServerRun:
        count = planned_queries(rate, settings.duration_s, least)
        # Another seed for each attempt: a probe again at one rate draws other arrival times.
        return run_at(runtime, rows, rate, budget_ms=budget_ms, queries=count, seed=settings.seed + attempt,
                      progress=probe_progress, stop_at=time.perf_counter() + probe_cutoff_s(count / rate))

    # The search's share of the bar is a guess (about 25 probes at the starting rate);
    # within it the search reports its own estimate as it learns.
    warming, searching = stages(progress, [settings.warmup_s, 25 * planned_s(settings.qps)])
    warm_up(runtime.predict, rows, settings.warmup_s, warming)
    return search_max_qps(probe, start_qps=settings.qps, budget_ms=budget_ms, planned_s=planned_s,
                          limit_s=settings.search_limit, progress=searching, notes=notes)


def search_max_qps(probe: Probe, *, start_qps: float, budget_ms: float, planned_s: Callable[[float], float],
                   limit_s: float, clock: Callable[[], float] = time.perf_counter, progress: Progress | None = None,
                   notes: tuple[str, ...] = ()) -> ServerSearch:
    """Bracket, then walk a staircase to the highest rate that keeps holding the budget, on probes ``probe`` runs.

    The decisions only (the module docstring states them); ``probe`` does the
    measuring, so a test can drive the search with made-up runs and clock.

    Parameters
    ----------
    probe : Probe
        Runs and judges one probe.
    start_qps : float
        The first rate tried, and the origin of the grid.
    budget_ms : float
        Reported with the result (``probe`` judges).
    planned_s : callable
        The planned length of a probe at a rate, seconds.
    limit_s : float
        No probe starts that could end (at :func:`probe_cutoff_s` of its plan)
        later than this many seconds after the search began.
    clock : callable
        Seconds, ``time.perf_counter`` unless a test drives the search.
    progress : callable or None
        Called with the estimated fraction of the search done.
    notes : tuple of str
        Passed on to the result.

    Returns
    -------
    ServerSearch
    """
    search = _Search(probe, start_qps, planned_s, limit_s, clock, progress)
    held, reason = search.bracket()
    if reason is None and held is not None:  # a rate held and twice it missed: walk between them
        reason = search.staircase(held + GRID_STEPS_PER_DOUBLING // 2)
    stopped = reason or ""
    max_qps, interval = search.answer(held)
    at_max = None
    if max_qps is not None:
        met = [run for run in search.order if run.met_budget and run.target_qps <= max_qps * (1 + 1e-9)]
        top = max((run.target_qps for run in met), default=None)
        at_max = [run for run in met if run.target_qps == top][-1] if met else None
    waited = [run.cpu_wait_ms for run in search.order]
    probed_s = sum(run.seconds for run in search.order)
    wait_share = (sum(w for w in waited if w is not None) / 1e3 / probed_s
                  if waited and None not in waited and probed_s > 0 else None)
    return ServerSearch(max_qps=max_qps, at_max_qps=at_max, budget_ms=budget_ms,
                        probes=tuple(ServerProbe.from_run(run) for run in search.order), interval_qps=interval,
                        reversals_qps=tuple(search.rate(k) for k in search.reversals), precision=PRECISION,
                        stopped=stopped, seconds=clock() - search.start, notes=notes, cpu_wait_share=wait_share)


class _Search:
    """The probes of one search on the grid ``start_qps * 2 ** (k / 8)``: runs by grid step and in order."""

    def __init__(self, probe: Probe, start_qps: float, planned_s: Callable[[float], float], limit_s: float,
                 clock: Callable[[], float], progress: Progress | None) -> None:
        self.probe, self.start_qps, self.planned_s, self.limit_s = probe, start_qps, planned_s, limit_s
        self.clock, self.progress = clock, progress
        self.start = clock()
        self.runs: dict[int, list[ServerRun]] = {}
        self.order: list[ServerRun] = []
        self.reversals: list[int] = []
        self.expected = 25  # probes the whole search is expected to take; revised as it goes

    def rate(self, k: float) -> float:
        """The rate at grid step ``k`` (0 is the start)."""
        return self.start_qps * 2 ** (k / GRID_STEPS_PER_DOUBLING)

    def run_once(self, k: int) -> ServerRun | None:
        """One probe at grid step ``k``; None when it could run past the time limit."""
        rate = self.rate(k)
        if self.clock() - self.start + probe_cutoff_s(self.planned_s(rate)) > self.limit_s:
            return None
        runs = self.runs.setdefault(k, [])
        run = self.probe(rate, len(runs), lambda fraction: self._report(rate, fraction))
        runs.append(run)
        self.order.append(run)
        self._report(rate, 1.0)
        return run

    def holds(self, k: int, tries: int = BRACKET_TRIES) -> bool | None:
        """The bracket's verdict at ``k``: held at the first met; missed after ``tries`` probes (counting those
        made), or at once where the harness fell behind; None when out of time."""
        while True:
            runs = self.runs.get(k, [])
            if any(run.met_budget for run in runs):
                return True
            if len(runs) >= tries or any(not run.kept_up for run in runs):
                return False
            if self.run_once(k) is None:
                return None

    def bracket(self) -> tuple[int | None, str | None]:
        """Double or halve from the start: the grid step that held below one that missed, or why to stop."""
        held = self.holds(0)
        if held is None:
            return None, self.out_of_time(0)
        k = 0
        step = GRID_STEPS_PER_DOUBLING
        if held:
            while True:
                if k + step > MAX_DOUBLINGS * step:
                    return k, (f"every rate up to {self.rate(k):,.0f} qps held (the search goes no higher "
                               f"than {2**MAX_DOUBLINGS:,}x --qps)")
                above = self.holds(k + step)
                if above is None:
                    return k, self.out_of_time(k + step)
                if not above:
                    return k, None
                k += step
        while True:
            if k - step < -MAX_HALVINGS * step:
                return None, (f"no rate down to {self.rate(k):,.0f} qps held (the search goes no lower than "
                              f"--qps / {2**MAX_HALVINGS:,})")
            below = self.holds(k - step)
            if below is None:
                return None, self.out_of_time(k - step)
            if below:
                return k - step, None
            k -= step
            # Before giving up on lower rates, make sure of both misses: a sporadic miss has no trend.
            for firm in (k + step, k):
                held = self.holds(firm, STALL_TRIES)
                if held is None:
                    return None, self.out_of_time(firm)
                if held:
                    return firm, None
            stall = self.not_load(k, k + step)
            if stall:
                return None, stall

    def staircase(self, k: int) -> str:
        """Walk up after two mets in a row and down after two misses in a row, from grid step ``k``; why it stopped.

        Steps start at :data:`FIRST_STEP` grid rates and halve at each reversal down to one;
        after :data:`SAME_WAY` moves the same way they double again (up to a doubling of the rate),
        so a start far from the answer is soon left behind. Only reversals made at single
        steps count.
        """
        mets, misses, direction, step, same_way = 0, 0, 0, FIRST_STEP, 0
        self.expected = len(self.order) + 3 * MIN_REVERSALS
        while True:
            if k < -MAX_HALVINGS * GRID_STEPS_PER_DOUBLING:
                return f"no rate down to {self.rate(k):,.0f} qps held in the staircase"
            run = self.run_once(k)
            if run is None:
                return self.out_of_time(k)
            if run.met_budget:
                mets, misses = mets + 1, 0
                if mets < UP_AFTER:
                    continue
                way = 1
            else:
                mets, misses = 0, misses + 1
                if misses < DOWN_AFTER:
                    continue
                way = -1
            mets = misses = 0
            if direction == -way:  # a reversal
                if step == 1:
                    self.reversals.append(k)
                step, same_way = max(1, step // 2), 0
            else:
                same_way += 1
                if same_way >= SAME_WAY and step < GRID_STEPS_PER_DOUBLING:
                    step, same_way = step * 2, 0
            direction = way
            k += way * step
            self.expected = len(self.order) + 3 * max(1, MIN_REVERSALS - len(self.reversals))
            if len(self.reversals) >= MIN_REVERSALS:
                half = self.half_width()
                if half is not None and half <= PRECISION:
                    return (f"precision reached: the 95% interval is within {half:.1%} of the answer "
                            f"(aim: {PRECISION:.0%}) after {len(self.reversals)} reversals")
                if len(self.reversals) >= MAX_REVERSALS:
                    return (f"{MAX_REVERSALS} reversals, the most the search makes: the 95% interval is "
                            f"within {half or 0:.1%} of the answer (aim: {PRECISION:.0%}); the rate that holds "
                            f"the budget moved during the search (other work on the machine or its host), so "
                            f"compare a second run before trusting this one")

    def midpoints(self) -> list[float]:
        """Midpoints (in grid steps) of the pairs of reversals the answer rests on, the most recent pairs."""
        used = self.reversals[DISCARDED_REVERSALS:] if len(self.reversals) > DISCARDED_REVERSALS + 1 \
            else self.reversals
        used = used[-USED_REVERSALS:]  # the walk may have climbed a long way before it settled
        used = used[len(used) % 2:]  # an even count: the oldest goes when one is left over
        return [(used[i] + used[i + 1]) / 2 for i in range(0, len(used), 2)]

    def half_width(self) -> float | None:
        """Half the 95% interval of the answer, relative to it; None with fewer than two pairs of reversals."""
        middles = self.midpoints()
        if len(middles) < 2:
            return None
        t = _T95[min(len(middles) - 1, len(_T95)) - 1]
        # Never narrower than half a grid step: between two grid rates the probes cannot tell.
        half_steps = max(0.5, t * statistics.stdev(middles) / math.sqrt(len(middles)))
        return 2 ** (half_steps / GRID_STEPS_PER_DOUBLING) - 1

    def answer(self, held: int | None) -> tuple[float | None, tuple[float, float] | None]:
        """The answer and its 95% interval: from the reversals; without them, the highest rate where most probes
        met the budget (the bracket's held rate at least)."""
        middles = self.midpoints()
        if not middles:
            mostly = [k for k, runs in self.runs.items() if 2 * sum(bool(r.met_budget) for r in runs) > len(runs)]
            best = max(mostly + ([held] if held is not None else []), default=None)
            return (self.rate(best) if best is not None else None), None
        answer = self.rate(statistics.fmean(middles))
        half = self.half_width()
        return answer, ((answer / (1 + half), answer * (1 + half)) if half is not None else None)

    def not_load(self, lower: int, upper: int) -> str | None:
        """Why to stop halving, when halving the rate from step ``upper`` to ``lower`` did not lower the p99."""
        runs = self.runs.get(lower, []) + self.runs.get(upper, [])
        if not runs or not all(run.kept_up for run in runs):
            return None
        best_lower = min((r.latency.p99_us for r in self.runs.get(lower, []) if r.latency.p99_us), default=None)
        best_upper = min((r.latency.p99_us for r in self.runs.get(upper, []) if r.latency.p99_us), default=None)
        if best_lower is None or best_upper is None or best_lower < _STALL_SHARE * best_upper:
            return None
        return (f"halving the rate from {self.rate(upper):,.0f} to {self.rate(lower):,.0f} qps did not lower the "
                f"p99 ({best_upper:,.0f} then {best_lower:,.0f} us, the best of each): the misses come from "
                f"stalls or from the service time itself, not from load, so lower rates were not tried")

    def out_of_time(self, k: int) -> str:
        return (f"time limit: a probe at {self.rate(k):,.0f} qps could run past {self.limit_s:,.0f} s "
                f"(--search-limit); the answer rests on the {len(self.order)} probes made")

    def _report(self, rate: float, fraction: float) -> None:
        """The search's estimated fraction done: time spent over time spent plus the probes still expected."""
        if self.progress is None:
            return
        done = self.clock() - self.start
        ahead = self.planned_s(rate) * max(self.expected - len(self.order) - fraction, 1.0 - fraction)
        self.progress(max(done / (done + ahead) if done + ahead > 0 else 0.0, done / self.limit_s))
