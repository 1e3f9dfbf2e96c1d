"""The cold-start scenario: from process launch to the first answer, in fresh interpreters.

Examples
--------
>>> from edge_runtime.bench.cold_start import ColdStartResult
>>> ColdStartResult(runs=5, first_answer_ms=300.0, import_ms=250.0, load_and_answer_ms=8.0, rss_mb=70.0,
...                 max_first_answer_ms=320.0).to_dict()["first_answer_ms"]
300.0
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError

__all__ = ["ColdStartResult", "run_cold_start"]

# Run with ``python -c`` in a fresh interpreter: nothing is imported before the clock starts.
_CHILD = """
import json, sys, time
start = time.perf_counter()
from edge_runtime import Runtime
import_done = time.perf_counter()
runtime = Runtime(sys.argv[1], config=sys.argv[2] or None)
row = json.loads(sys.argv[3])
runtime.predict(row)
answer = time.perf_counter()
from edge_runtime.budgets.resources import ProcessMeter
print(json.dumps({"import_ms": (import_done - start) * 1e3, "load_and_answer_ms": (answer - import_done) * 1e3,
                  "rss_mb": ProcessMeter().rss_bytes() / 1e6}), flush=True)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ColdStartResult:
    """Medians over fresh processes, in milliseconds from launch.

    Parameters
    ----------
    runs : int
        Processes launched.
    first_answer_ms : float
        Median time from launch to the first answer, seen from the parent.
    import_ms : float
        Median time to ``from edge_runtime import Runtime``, inside the child.
    load_and_answer_ms : float
        Median time to open the bundle and answer one row, inside the child.
    rss_mb : float
        Median resident memory of the child after its answer, MB.
    max_first_answer_ms : float
        The slowest launch to first answer.
    """

    runs: int
    first_answer_ms: float
    import_ms: float
    load_and_answer_ms: float
    rss_mb: float
    max_first_answer_ms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"runs": self.runs, "first_answer_ms": self.first_answer_ms, "import_ms": self.import_ms,
                "load_and_answer_ms": self.load_and_answer_ms, "rss_mb": self.rss_mb,
                "max_first_answer_ms": self.max_first_answer_ms}


def run_cold_start(bundle: Path, config: Path | None, row: Any, runs: int = 5) -> ColdStartResult:
    """Launch ``runs`` fresh interpreters that each load the bundle and answer ``row``.

    Parameters
    ----------
    bundle : Path
    config : Path or None
        A device config file for the children.
    row : array or dict
        The row answered; it must survive JSON.
    runs : int

    Returns
    -------
    ColdStartResult

    Raises
    ------
    ConfigError
        When a child fails, with its standard error.
    """
    payload = json.dumps(row.tolist() if isinstance(row, np.ndarray) else row)
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(bundle), str(config or ""), payload],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        # The first line is the answer: the clock stops there, not at the child's exit.
        line = child.stdout.readline()
        first = (time.perf_counter() - t0) * 1e3
        child.wait(timeout=120)
        if child.returncode != 0 or not line:
            raise ConfigError(f"the cold-start child failed: {child.stderr.read() if child.stderr else ''}")
        samples.append({"first_answer_ms": first, **json.loads(line)})

    def median(key: str) -> float:
        return float(np.median([s[key] for s in samples]))

    return ColdStartResult(runs=runs, first_answer_ms=median("first_answer_ms"), import_ms=median("import_ms"),
                           load_and_answer_ms=median("load_and_answer_ms"), rss_mb=median("rss_mb"),
                           max_first_answer_ms=max(s["first_answer_ms"] for s in samples))
