"""The time of a fleet drift query over a simulated fleet, and what merging at ingest costs.

A fleet of ``devices x windows`` windows of ``features`` numeric features
(``collector.simulation``: real profiles, thinned as a device thins a window of
its size, and local verdicts), all windows in the query's range. Timed:

(a) **merge at ingest**: ``merge_into_bucket`` per window, into 5-minute base
    buckets, bytes in and out; and the open buckets held in memory, each window's
    profile merged in and each bucket written once at the end (what ingest's
    ``BucketFolder`` does);
(b) **query over base buckets**: ``fleet_drift`` with the base buckets and the
    windows without their profiles (what a store's query reads), for 1-hour buckets;
(c) **query from the windows' own profiles**: ``fleet_drift`` merging every
    window's profile (no base buckets), on a sample of the windows, extrapolated
    per window.

Wall and process CPU times both: on a loaded machine the CPU time is the steadier figure.

Run: ``python benchmarks/fleet_query.py [--devices 1000] [--windows 10] [--features 30] [--rows 5000] [--json]``
(``measure`` is what ``benchmarks/fleet.py`` can call).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from typing import Any

from collector.buckets import BASE_BUCKET_SECONDS, bucket_start, empty_like, merge_into_bucket
from collector.fleet_drift import fleet_drift
from collector.simulation import Shift, simulate_fleet
from edge_runtime.monitoring.data_profile import Profile

__all__ = ["measure"]


def measure(*, devices: int = 1000, windows: int = 10, features: int = 30, rows: int = 5000, seed: int = 0,
            repeats: int = 5, direct_sample: int = 500) -> dict[str, Any]:
    """Simulate the fleet and time (a), (b) and (c); seconds unless named otherwise."""
    started = time.perf_counter()
    # One window a minute per device: 10 windows span two 5-minute base buckets and one hour bucket.
    model, fleet = simulate_fleet(devices=devices, windows_per_device=windows, features=features, rows=rows,
                                  seed=seed, window_seconds=60.0, start=1_800_000_000.0,
                                  shifts=(Shift(device=1, feature=2, delta=0.25),))
    simulated = time.perf_counter() - started
    references = {model.sha256: model}

    buckets: dict[tuple[str, float], bytes] = {}
    started, cpu = time.perf_counter(), time.process_time()
    for window in fleet:
        key = (window.model_sha256, bucket_start(window.corrected_closed_at, BASE_BUCKET_SECONDS))
        buckets[key] = merge_into_bucket(buckets.get(key), window)
    ingest, ingest_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    held: dict[tuple[str, float], Profile] = {}
    for window in fleet:
        profile = Profile.from_bytes(window.profile)
        key = (window.model_sha256, bucket_start(window.corrected_closed_at, BASE_BUCKET_SECONDS))
        held.setdefault(key, empty_like(profile)).merge(profile)
    for bucket in held.values():
        bucket.to_bytes()  # what the store writes
    in_memory, in_memory_cpu = time.perf_counter() - started, time.process_time() - cpu

    bare = [dataclasses.replace(w, profile=b"") for w in fleet]
    times, cpus = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        report = fleet_drift(bare, references, bucket_profiles=buckets)
        times.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    flagged = [b.flagged for b in report.buckets]

    sample = fleet[:direct_sample]
    started, cpu = time.perf_counter(), time.process_time()
    fleet_drift(sample, references)
    direct, direct_cpu = (time.perf_counter() - started) / len(sample), (time.process_time() - cpu) / len(sample)
    return {
        "devices": devices, "windows": len(fleet), "features": features, "rows_per_window": rows,
        "window_profile_bytes": statistics.median(len(w.profile) for w in fleet[:100]),
        "base_buckets": len(buckets), "base_bucket_bytes": max(len(b) for b in buckets.values()),
        "simulate_s": simulated,
        "ingest_merge_s_per_window": ingest / len(fleet),
        "ingest_merge_cpu_s_per_window": ingest_cpu / len(fleet),
        "ingest_in_memory_s_per_window": in_memory / len(fleet),
        "ingest_in_memory_cpu_s_per_window": in_memory_cpu / len(fleet),
        "query_over_base_buckets_s": {"median": statistics.median(times), "min": min(times), "max": max(times)},
        "query_over_base_buckets_cpu_s": {"median": statistics.median(cpus), "min": min(cpus)},
        "query_from_profiles_s_per_window": direct,
        "query_from_profiles_cpu_s_per_window": direct_cpu,
        "query_from_profiles_s_extrapolated": direct * len(fleet),
        "flagged": flagged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(devices=args.devices, windows=args.windows, features=args.features, rows=args.rows,
                     repeats=args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
