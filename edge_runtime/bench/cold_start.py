"""The cold-start scenario: from process launch to the first answer, in fresh interpreters.

The children get the device config: a config file by its path (they parse it,
as a device does at start), a :class:`~edge_runtime.config.RuntimeConfig`
pickled on their standard input (the same interpreter and code unpickle it at
once; nothing is stored).

Examples
--------
>>> from edge_runtime.bench.cold_start import ColdStartResult
>>> ColdStartResult(runs=5, first_answer_ms=300.0, import_ms=250.0, load_and_answer_ms=8.0, rss_mb=70.0,
...                 max_first_answer_ms=320.0).to_dict()["first_answer_ms"]
300.0
"""

from __future__ import annotations

import json
import os
import pickle
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge_runtime.bench.timing import Progress
from edge_runtime.config import RuntimeConfig
from edge_runtime.errors import ConfigError

__all__ = ["ColdStartResult", "run_cold_start"]

# Run with ``python -c`` in a fresh interpreter: nothing is imported before the clock starts.
# The config argument is a file path, "" for none, or "-" for a pickled RuntimeConfig on stdin.
_CHILD = """
import json, sys, time
start = time.perf_counter()
from edge_runtime import Runtime
import_done = time.perf_counter()
if sys.argv[2] == "-":
    import pickle
    config = pickle.loads(sys.stdin.buffer.read())
else:
    config = sys.argv[2] or None
runtime = Runtime(sys.argv[1], config=config)
row = json.loads(sys.argv[3])
runtime.predict(row)
answer = time.perf_counter()
from edge_runtime.budgets.resources import ProcessMeter
print(json.dumps({"import_ms": (import_done - start) * 1e3, "load_and_answer_ms": (answer - import_done) * 1e3,
                  "rss_mb": ProcessMeter().rss_bytes() / 1e6}), flush=True)
"""

_TIMEOUT_S = 120.0  # for one child, launch to exit
_STDERR_SHOWN = 4000  # characters of a failed child's standard error put in the error message


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


def run_cold_start(bundle: Path, config: RuntimeConfig | str | Path | None, row: Any, runs: int = 5,
                   progress: Progress | None = None) -> ColdStartResult:
    """Launch ``runs`` fresh interpreters that each load the bundle and answer ``row``.

    Parameters
    ----------
    bundle : Path
    config : RuntimeConfig, str, Path or None
        The device config for the children: a file, or a config object.
    row : array or dict
        The row answered; it must survive JSON.
    runs : int
    progress : callable or None
        Called with the fraction of the children done.

    Returns
    -------
    ColdStartResult

    Raises
    ------
    ConfigError
        When a child fails or takes more than 120 s, with the end of its standard error.
    """
    payload = json.dumps(row.tolist() if isinstance(row, np.ndarray) else row)
    samples: list[dict[str, float]] = []
    for k in range(runs):
        samples.append(_launch(bundle, config, payload))
        if progress is not None:
            progress((k + 1) / runs)

    def median(key: str) -> float:
        return float(np.median([s[key] for s in samples]))

    return ColdStartResult(runs=runs, first_answer_ms=median("first_answer_ms"), import_ms=median("import_ms"),
                           load_and_answer_ms=median("load_and_answer_ms"), rss_mb=median("rss_mb"),
                           max_first_answer_ms=max(s["first_answer_ms"] for s in samples))


def _launch(bundle: Path, config: RuntimeConfig | str | Path | None, payload: str, *, code: str = _CHILD,
            timeout_s: float = _TIMEOUT_S) -> dict[str, float]:
    """One child running ``code``: launch to first answer seen from here, plus what it measured itself."""
    pickled = isinstance(config, RuntimeConfig)
    config_arg = "-" if pickled else str(config or "")
    # Standard error goes to a file, not a pipe: a child that writes more than a pipe
    # holds (64 KB) before its answer would block on it while this process waits for stdout.
    with tempfile.TemporaryFile() as errors:
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", code, str(bundle), config_arg, payload],
                                 stdin=subprocess.PIPE if pickled else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=errors)
        assert child.stdout is not None
        try:
            if pickled:
                assert child.stdin is not None
                child.stdin.write(pickle.dumps(config))
                child.stdin.close()
            # The first line is the answer: the clock stops there, not at the child's exit.
            line = _first_line(child.stdout, t0 + timeout_s)
            first = (time.perf_counter() - t0) * 1e3
            child.wait(timeout=max(0.0, t0 + timeout_s - time.perf_counter()))
        except (subprocess.TimeoutExpired, TimeoutError) as exc:
            child.kill()
            child.wait()
            raise ConfigError(f"the cold-start child gave no answer within {timeout_s:g} s: "
                              f"{_tail(errors)}") from exc
        finally:
            child.stdout.close()
        if child.returncode != 0 or not line:
            raise ConfigError(f"the cold-start child failed: {_tail(errors)}")
    return {"first_answer_ms": first, **json.loads(line)}


def _first_line(stream: IO[bytes], deadline: float) -> bytes:
    """The first line of a child's output, or what came before its end; TimeoutError at ``deadline``."""
    # Read the file descriptor itself: a buffered reader could hold data that select() does not see.
    fd = stream.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        line = b""
        while b"\n" not in line:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not selector.select(remaining):
                raise TimeoutError
            chunk = os.read(fd, 4096)
            if not chunk:
                return line
            line += chunk
        return line.split(b"\n", 1)[0] + b"\n"


def _tail(errors: IO[bytes]) -> str:
    """The end of a child's standard error, bounded: a child may write megabytes of warnings."""
    errors.seek(0, 2)
    size = errors.tell()
    errors.seek(max(0, size - _STDERR_SHOWN))
    text = errors.read().decode("utf-8", errors="replace")
    return ("..." if size > _STDERR_SHOWN else "") + text
