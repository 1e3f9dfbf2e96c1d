"""What a benchmark runs: the scenario names and the frozen settings of one run.

Examples
--------
>>> from edge_runtime.bench.settings import SCENARIOS, BenchSettings
>>> SCENARIOS
('single-stream', 'server', 'offline', 'cold-start')
>>> BenchSettings(scenario="offline", batch_sizes=(1, 8)).to_dict()["batch_sizes"]
[1, 8]
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
        Minimum measured time (per batch size for offline, per probe for a max-QPS search).
    min_queries : int
        Minimum measured queries (single-stream, server).
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

    Raises
    ------
    ConfigError
        On an unknown scenario, or a duration, query count or rate that is not positive.
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

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"The 'scenario' parameter must be one of {', '.join(SCENARIOS)}. "
                              f"Got {self.scenario!r} instead.")
        if not self.duration_s > 0 or self.min_queries < 1 or not self.qps > 0 or self.warmup_s < 0:
            raise ConfigError("duration, queries and qps must be positive")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, every field under its own name (the ``settings`` of a report)."""
        # Read from fields() so that a new setting is reported without touching this method.
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}
