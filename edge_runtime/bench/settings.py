"""What a benchmark runs: the scenario names and the frozen settings of one run.

Examples
--------
>>> from edge_runtime.bench.settings import SCENARIOS, BenchSettings
>>> SCENARIOS
('single-stream', 'server', 'offline', 'cold-start')
>>> BenchSettings(scenario="offline", batch_sizes=(1, 8)).to_dict()["batch_sizes"]
[1, 8]
>>> BenchSettings(duration_s=0.5).search_limit, BenchSettings(duration_s=10).search_limit
(120.0, 600.0)
>>> BenchSettings(scenario="warp")
Traceback (most recent call last):
...
edge_runtime.errors.ConfigError: The 'scenario' parameter must be one of single-stream, ... Got 'warp' instead.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from edge_runtime.errors import ConfigError

__all__ = ["SCENARIOS", "BenchSettings"]

SCENARIOS = ("single-stream", "server", "offline", "cold-start")


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchSettings:
    """What to run.

    Parameters
    ----------
    scenario : str
        One of :data:`SCENARIOS`.
    duration_s : float
        Minimum measured seconds: of the run (single-stream, server), of each
        batch size and each path measured at it (offline: ``Runtime.predict_batch``,
        and raw onnxruntime again as long with ``compare_raw``), of each probe of
        a max-QPS search.
    min_queries : int
        Minimum measured queries (single-stream, server). Each probe of a max-QPS
        search runs at least 1,000, the fewest a p99 is reported from.
    warmup_s : float
        Unmeasured run before measuring.
    qps : float
        Server scenario: mean Poisson arrival rate.
    find_max_qps : bool
        Server scenario: search the highest rate whose p99 holds the latency budget.
    budget_ms : float or None
        Server scenario latency bound (default: the config's latency budget).
    compare_raw : bool
        Also run raw onnxruntime on the same rows, alternating, and the runtime
        without monitoring; report ratios.
    batch_sizes : tuple of int
        Offline scenario sweep.
    seed : int
        Seed of the rows drawn from the profile and of the arrival times.
    search_limit_s : float or None
        Server scenario: a max-QPS search starts no probe that would end later
        than this many seconds after the search began, and reports the bracket
        found so far (default: 60 times ``duration_s``, at least 120 s; see
        :attr:`search_limit`).

    Raises
    ------
    ConfigError
        On an unknown scenario, or a duration, query count, rate or search limit that is not positive.
    """

    scenario: str = "single-stream"
    duration_s: float = 10.0
    min_queries: int = 1024
    warmup_s: float = 1.0
    qps: float = 100.0
    find_max_qps: bool = False
    budget_ms: float | None = None
    compare_raw: bool = False
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128, 512)
    seed: int = 0
    search_limit_s: float | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"The 'scenario' parameter must be one of {', '.join(SCENARIOS)}. "
                              f"Got {self.scenario!r} instead.")
        if not self.duration_s > 0 or self.min_queries < 1 or not self.qps > 0 or self.warmup_s < 0:
            raise ConfigError("duration, queries and qps must be positive")
        if self.search_limit_s is not None and not self.search_limit_s > 0:
            raise ConfigError(f"The 'search_limit_s' parameter of BenchSettings must be a float in (0, inf). "
                              f"Got {self.search_limit_s!r} instead.")

    @property
    def search_limit(self) -> float:
        """Seconds a max-QPS search may run: ``search_limit_s``, or 60 times ``duration_s`` and at least 120."""
        # A search takes about 30 probes on a quiet machine and 60 on a noisy one.
        return self.search_limit_s if self.search_limit_s is not None else max(120.0, 60.0 * self.duration_s)

    @property
    def planned_s(self) -> float:
        """The least time the run takes as planned (warm-up included); a max-QPS search takes longer.

        Examples
        --------
        >>> BenchSettings(scenario="offline", duration_s=2, warmup_s=0, batch_sizes=(1, 8), compare_raw=True).planned_s
        8.0
        """
        if self.scenario == "cold-start":
            return 0.0
        if self.scenario == "offline":
            return float(self.duration_s * len(self.batch_sizes) * (2 if self.compare_raw else 1))
        return self.warmup_s + self.duration_s * (2 if self.compare_raw and self.scenario == "single-stream" else 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, every field under its own name (the ``settings`` of a report)."""
        # Read from fields() so that a new setting is reported without touching this method.
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}
