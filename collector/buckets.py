"""Base time buckets: every window of a model version merged into the bucket of its close, at ingest.

A fleet drift query over 10,000 windows cannot afford to read and merge 10,000
profiles (~50 KB and ~0.8 ms each at 30 features): a store merges each window
into a base bucket of :data:`BASE_BUCKET_SECONDS` as it stores it, and the query
merges a few buckets (:func:`collector.fleet_drift.fleet_drift`, ``bucket_profiles``).

Two ways to do it, the same result (merging is commutative and associative within
the sketches' stated error, so windows may arrive in any order and from several
collector processes):

* :func:`merge_into_bucket`: stateless, bytes in and out, one call per window
  (reads and writes the bucket's ~370 KB each time);
* :class:`BucketMerger`: keeps the open buckets' profiles in memory and hands back
  partial buckets on :meth:`BucketMerger.flush`, which the store folds into what it
  holds with :func:`merge_into_bucket` (one read and write per bucket and flush).

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

__all__ = ["BASE_BUCKET_SECONDS", "FLEET_K", "BucketMerger", "bucket_start", "empty_like", "merge_into_bucket"]


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


class BucketMerger:
    """Open base buckets held in memory as profiles, each window merged in as it is stored.

    Parameters
    ----------
    seconds : float
        Width of a base bucket.

    Examples
    --------
    >>> from collector.simulation import simulate_fleet
    >>> _, windows = simulate_fleet(devices=2, windows_per_device=3, features=2, rows=400, seed=0, judge=False,
    ...                             start=0.0, window_seconds=200.0)
    >>> merger = BucketMerger()
    >>> for window in windows:
    ...     _ = merger.add(window)
    >>> sorted((start, Profile.from_bytes(data).rows) for (_, start), data in merger.flush().items())
    [(0.0, 800), (300.0, 800), (600.0, 800)]
    >>> merger.flush()
    {}
    """

    def __init__(self, seconds: float = BASE_BUCKET_SECONDS) -> None:
        self.seconds = seconds
        self._open: dict[tuple[str, float], Profile] = {}

    def add(self, window: StoredWindow) -> tuple[str, float]:
        """Merge a window into its bucket; return the bucket's key ``(model_sha256, start)``.

        Raises
        ------
        BundleFormatError
            The window's profile is not readable.
        ValueError
            The window's feature set differs from its bucket's.
        """
        key = (window.model_sha256, bucket_start(window.corrected_closed_at, self.seconds))
        profile = Profile.from_bytes(window.profile)
        bucket = self._open.get(key)
        if bucket is None:
            bucket = self._open[key] = empty_like(profile)
        bucket.merge(profile)
        return key

    def flush(self) -> dict[tuple[str, float], bytes]:
        """Every bucket merged into since the last flush, as profile bytes, and forget them.

        The store folds each into the bucket it holds (:func:`merge_into_bucket`): a
        partial bucket is never written twice, so no window is counted twice.
        """
        out = {key: profile.to_bytes() for key, profile in self._open.items()}
        self._open.clear()
        return out
