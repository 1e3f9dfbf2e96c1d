"""Fakes for tests: a settable clock and a resource meter.

Examples
--------
>>> from edge_runtime.testing import FakeClock, FakeMeter
>>> clock = FakeClock(100.0)
>>> clock.advance(2.5)
>>> clock()
102.5
>>> meter = FakeMeter(rss_mb=50)
>>> meter.burn(1.0)
>>> meter.cpu_seconds(), meter.rss_bytes()
(1.0, 50000000)
"""

from __future__ import annotations

__all__ = ["FakeClock", "FakeMeter"]


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


class FakeMeter:
    """A resource meter whose CPU time and RSS the test sets."""

    def __init__(self, rss_mb: float = 40.0) -> None:
        self.cpu = 0.0
        self.rss = int(rss_mb * 1e6)

    def burn(self, seconds: float) -> None:
        """Add CPU time, as if the process had worked."""
        self.cpu += seconds

    def cpu_seconds(self) -> float:
        """CPU time so far."""
        return self.cpu

    def rss_bytes(self) -> int:
        """Resident memory."""
        return self.rss
