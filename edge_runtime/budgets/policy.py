"""Keeping latency, CPU and memory budgets: an ordered, reversible degradation policy.

The governor sees every served latency (one array store), and every
``check_every`` calls or ``check_interval_ms`` it measures the latency
percentile, the CPU share over a sliding window and the RSS. A budget
exceeded moves service one level down; ``recover_checks`` checks in a row with
every measurement under ``recover_ratio`` times its budget move it one level
back up. After a change, the next one waits ``window_s`` (the time the CPU
average takes to show it). At the last level, the share of requests admitted
is steered continuously towards 90% of the budget. Pure logic: the clock and
the meter are passed in, so tests drive it with fakes.

Examples
--------
>>> from edge_runtime.config import BudgetConfig
>>> from edge_runtime.budgets.policy import BudgetGovernor, ServiceLevel
>>> from edge_runtime.testing import FakeClock, FakeMeter
>>> clock, meter = FakeClock(), FakeMeter()
>>> governor = BudgetGovernor(BudgetConfig(latency_ms=1.0, check_every=4), meter, clock)
>>> for _ in range(4):
...     governor.record(2500.0)  # 2.5 ms each: over the 1 ms budget
>>> governor.level, governor.state().violations
(<ServiceLevel.SHED_OPTIONAL: 1>, {'latency': 1})
"""

from __future__ import annotations

import enum
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.budgets.resources import ResourceMeter
from edge_runtime.config import BudgetConfig

__all__ = ["BudgetGovernor", "BudgetState", "ServiceLevel"]

_MIN_LATENCY_SAMPLES = 128  # smallest ring the percentile is read from


class ServiceLevel(enum.IntEnum):
    """How much of its work the runtime does; each level keeps what the one above sheds."""

    NORMAL = 0  # everything: full decision log and monitoring
    SHED_OPTIONAL = 1  # the decision log sampled down to shed_log_rate
    FALLBACK = 2  # the lighter fallback model answers (skipped when none is configured)
    SHED_LOAD = 3  # a share of requests refused (or deferred) to stay inside the budget


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetState:
    """The budget picture at the last check."""

    level: ServiceLevel
    latency_ms: float | None
    cpu_share: float | None
    rss_mb: float | None
    admit_ratio: float
    violations: dict[str, int] = field(default_factory=dict)
    checked_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored per window and shown by ``edge-runtime status``."""
        return {"level": self.level.name.lower(), "latency_ms": self.latency_ms, "cpu_share": self.cpu_share,
                "rss_mb": self.rss_mb, "admit_ratio": self.admit_ratio, "violations": dict(self.violations),
                "checked_at": self.checked_at}


class BudgetGovernor:
    """Measures budgets and decides the service level.

    Parameters
    ----------
    config : BudgetConfig
    meter : ResourceMeter
        CPU seconds and RSS of the process.
    clock : callable
        Wall-clock seconds (monotonic is fine).
    has_fallback : bool
        Whether the FALLBACK level exists; without it, SHED_OPTIONAL steps to SHED_LOAD.
    on_change : callable, optional
        Called as ``on_change(old_level, new_level, cause)`` on every level change.
    """

    def __init__(self, config: BudgetConfig, meter: ResourceMeter, clock: Callable[[], float], *,
                 has_fallback: bool = False,
                 on_change: Callable[[ServiceLevel, ServiceLevel, str], None] | None = None) -> None:
        self.config = config
        self._meter = meter
        self._clock = clock
        self._has_fallback = has_fallback
        self._on_change = on_change
        self.level = ServiceLevel.NORMAL
        # The percentile is read from the latest check_every latencies (at least
        # 128): after a level change, old slow answers leave the ring quickly.
        self._ring = max(config.check_every, _MIN_LATENCY_SAMPLES)
        self._latencies = np.zeros(self._ring, dtype=np.float64)
        self._filled = 0
        self._next = 0
        self._calls = 0
        self._interval = config.check_interval_ms / 1000.0
        self._next_check = clock() + self._interval
        self._cpu_samples: deque[tuple[float, float]] = deque([(clock(), meter.cpu_seconds())])
        self._calm_checks = 0
        self._last_change = -float("inf")
        self._admit_ratio = 1.0
        self._admit_credit = 0.0
        self._checking = threading.Lock()  # several serving threads: one check at a time
        self.violations: Counter[str] = Counter()
        self._state = BudgetState(level=self.level, latency_ms=None, cpu_share=None, rss_mb=None, admit_ratio=1.0)

    # ------------------------------------------------------------- hot path
    def record(self, latency_us: float) -> None:
        """Note one served latency; run a check when one is due."""
        i = self._next
        self._latencies[i] = latency_us
        self._next = (i + 1) % self._ring
        if self._filled < self._ring:
            self._filled += 1
        self._calls += 1
        if self._calls >= self.config.check_every or self._clock() >= self._next_check:
            self._check_once()

    def _check_once(self) -> None:
        """Check, unless another thread is checking now (a check is due once, not per thread)."""
        if self._checking.acquire(blocking=False):
            try:
                self.check()
            finally:
                self._checking.release()

    def admit(self) -> bool:
        """At SHED_LOAD, whether this request may be served (deterministic thinning)."""
        self._calls += 1  # refused calls count towards the next check too
        if self._calls >= self.config.check_every or self._clock() >= self._next_check:
            self._check_once()
        if self.level is not ServiceLevel.SHED_LOAD:
            return True
        self._admit_credit += self._admit_ratio
        if self._admit_credit >= 1.0:
            self._admit_credit -= 1.0
            return True
        return False

    # ---------------------------------------------------------------- checks
    def check(self) -> BudgetState:
        """Measure every budget now and move the service level if needed."""
        config = self.config
        now = self._clock()
        self._calls = 0
        self._next_check = now + self._interval
        ratios: dict[str, float] = {}
        latency_ms = cpu_share = rss_mb = None
        if config.latency_ms and self._filled:
            latency_ms = float(np.percentile(self._latencies[: self._filled], config.latency_percentile)) / 1000.0
            ratios["latency"] = latency_ms / config.latency_ms
        if config.cpu_share:
            cpu_share = self._cpu_share(now)
            if cpu_share is not None:
                ratios["cpu"] = cpu_share / config.cpu_share
        if config.rss_mb:
            rss_mb = self._meter.rss_bytes() / 1e6
            ratios["memory"] = rss_mb / config.rss_mb
        over = {name: r for name, r in ratios.items() if r > 1.0}
        for name in over:
            self.violations[name] += 1
        # A change takes a measurement window to show (the CPU share is an
        # average over window_s): wait that long before judging its effect.
        settled = now - self._last_change >= config.window_s
        if self.level is ServiceLevel.SHED_LOAD and ratios and settled:
            self._steer_admission(max(ratios.values()), now)
        if over:
            self._calm_checks = 0
            if settled and self.level is not ServiceLevel.SHED_LOAD:
                self._escalate(self._describe(over, latency_ms, cpu_share, rss_mb), max(ratios.values()), now)
        elif ratios and all(r <= config.recover_ratio for r in ratios.values()) and self._admit_ratio >= 1.0:
            self._calm_checks += 1
            if settled and self._calm_checks >= config.recover_checks:
                self._calm_checks = 0
                self._recover(ratios, now)
        else:
            self._calm_checks = 0
        self._state = BudgetState(level=self.level, latency_ms=latency_ms, cpu_share=cpu_share, rss_mb=rss_mb,
                                  admit_ratio=self._admit_ratio, violations=dict(self.violations), checked_at=now)
        return self._state

    def state(self) -> BudgetState:
        """The state at the last check."""
        return self._state

    def _cpu_share(self, now: float) -> float | None:
        samples = self._cpu_samples
        samples.append((now, self._meter.cpu_seconds()))
        while len(samples) > 2 and now - samples[1][0] >= self.config.window_s:
            samples.popleft()
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None

    def _describe(self, over: dict[str, float], latency_ms: float | None, cpu_share: float | None,
                  rss_mb: float | None) -> str:
        parts = []
        if "latency" in over:
            parts.append(f"latency p{self.config.latency_percentile:g} {latency_ms:.3f} ms > {self.config.latency_ms} ms")
        if "cpu" in over:
            parts.append(f"cpu share {cpu_share:.2f} > {self.config.cpu_share}")
        if "memory" in over:
            parts.append(f"rss {rss_mb:.1f} MB > {self.config.rss_mb} MB")
        return "; ".join(parts)

    def _steer_admission(self, worst: float, now: float) -> None:
        """While shedding load, admit the share of requests that brings the worst ratio to 90% of budget.

        Once per measurement window: the CPU share is a sliding average, and
        correcting again before it shows the last correction overshoots.
        """
        self._admit_ratio = min(1.0, max(0.01, self._admit_ratio * 0.9 / max(worst, 1e-9)))
        self._last_change = now

    def _escalate(self, cause: str, worst: float, now: float) -> None:
        new = ServiceLevel(self.level + 1)
        if new is ServiceLevel.FALLBACK and not self._has_fallback:
            new = ServiceLevel.SHED_LOAD
        if new is ServiceLevel.SHED_LOAD:
            self._admit_ratio = min(1.0, max(0.01, 0.9 / worst))
            self._admit_credit = 0.0
        self._change(new, cause, now)

    def _recover(self, ratios: dict[str, float], now: float) -> None:
        if self.level is ServiceLevel.NORMAL:
            return
        new = ServiceLevel(self.level - 1)
        if new is ServiceLevel.FALLBACK and not self._has_fallback:
            new = ServiceLevel.SHED_OPTIONAL
        worst = ", ".join(f"{k} at {v:.0%} of budget" for k, v in sorted(ratios.items()))
        self._change(new, f"recovered: {worst}", now)

    def _change(self, new: ServiceLevel, cause: str, now: float) -> None:
        old, self.level = self.level, new
        self._last_change = now
        if self._on_change is not None:
            self._on_change(old, new, cause)
