"""Base time buckets: every window of a model version merged into the bucket of its close, at ingest.

A fleet drift query over 10,000 windows cannot afford to read and merge 10,000
profiles (~50 KB and ~0.8 ms each at 30 features): a store merges each window
into a base bucket of :data:`BASE_BUCKET_SECONDS` as it stores it, and the query
merges a few buckets (:func:`collector.fleet_drift.fleet_drift`, ``bucket_profiles``).

:func:`merge_into_bucket` is the stateless way, bytes in and out, one call per
window (it reads and writes the bucket's ~370 KB each time); ingest holds the open
buckets in memory instead (:class:`collector.bucket_folding.BucketFolder`) and
writes them about once a second. Merging is commutative and associative within the
sketches' stated error, so windows may arrive in any order and from several
collector processes.

A bucket's numeric sketches are at :data:`FLEET_K`: the windows' own KLL errors are
independent, so the bucket's error falls as they add up, and it is carried along
(:meth:`~edge_runtime.monitoring.sketches.NumericSketch.merge`).

Examples
--------
>>> from collector.simulation import simulate_fleet
>>> _, windows = simulate_fleet(devices=2, windows_per_device=1, features=2, rows=400, seed=0, judge=False)
>>> bucket = None
>>> for window in windows:
...     bucket = merge_into_bucket(bucket, window)
>>> Profile.from_bytes(bucket).rows
800
"""

from __future__ import annotations

from collector.stores.base import StoredWindow
from collector.stores.bucketing import BASE_BUCKET_SECONDS, FLEET_K, bucket_start, empty_like
from edge_runtime.monitoring.data_profile import Profile

__all__ = ["BASE_BUCKET_SECONDS", "FLEET_K", "bucket_start", "empty_like", "merge_into_bucket"]


def merge_into_bucket(bucket_profile: bytes | None, window: StoredWindow | bytes) -> bytes:
    """A base bucket's profile bytes with one more window (or a partial bucket's bytes) merged in.

    ``bucket_profile`` is None (or empty) for a bucket's first window.

    Raises
    ------
    BundleFormatError
        The window's profile (or the bucket's) is not readable.
    ValueError
        The window's feature set differs from the bucket's.
    """
    window_profile = Profile.from_bytes(window.profile if isinstance(window, StoredWindow) else window)
    bucket = Profile.from_bytes(bucket_profile) if bucket_profile else empty_like(window_profile)
    return bucket.merge(window_profile).to_bytes()
