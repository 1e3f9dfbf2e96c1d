"""whylogs' per-row logging cost on the breast-cancer rows (30 features), for comparison.

whylogs pins its own dependencies, so run it in its own virtual environment:

    python -m venv /tmp/wl && /tmp/wl/bin/pip install whylogs scikit-learn
    /tmp/wl/bin/python benchmarks/whylogs_per_row.py

Prints one JSON object: the median and mean microseconds to track one row.
"""

from __future__ import annotations

import json
import time

import numpy as np
import whylogs
from sklearn.datasets import load_breast_cancer
from whylogs.core import DatasetProfile

data = load_breast_cancer()
rows = [dict(zip(data.feature_names, r.tolist())) for r in data.data]
profile = DatasetProfile()
for row in rows[:100]:  # warm-up
    profile.track(row=row)
timings = []
for i in range(5000):
    row = rows[i % len(rows)]
    t0 = time.perf_counter_ns()
    profile.track(row=row)
    timings.append(time.perf_counter_ns() - t0)
us = np.array(timings) / 1e3
print(json.dumps({"whylogs": whylogs.__version__, "p50_us": float(np.median(us)), "mean_us": float(us.mean())}))
