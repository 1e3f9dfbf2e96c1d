"""The base buckets a store keeps: each window's profile merged, at ingest, into the bucket of its close.

What both SQL stores share to maintain them (the fleet views read them through
``FleetStore.bucket_profiles``); :mod:`collector.buckets` builds on the same pieces.

A window stored by ingest is merged into its bucket in memory first and written with
many others now and then (:class:`BucketFold`, :mod:`collector.bucket_folding`): its
row says whether it is in its stored bucket yet (``bucketed``), so a store's
``bucket_profiles`` adds the ones that are not, and none is lost or counted twice
when a collector stops between the two writes.
A base bucket is keyed by model sha256 and the start of its :data:`BASE_BUCKET_SECONDS`
span of ``corrected_closed_at`` (the collector's clock), and its numeric sketches are
at :data:`FLEET_K`: the windows' own KLL errors are independent, so the bucket's error
falls as they add up, and it is carried along (:meth:`NumericSketch.merge`).

Examples
--------
>>> bucket_start(7300.5, 3600), bucket_start(-1.0, 300)
(7200.0, -300.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.sketches import REFERENCE_K, CategoricalSketch, NumericSketch

__all__ = ["BASE_BUCKET_SECONDS", "FLEET_K", "BucketFold", "add_unfolded", "bucket_start", "empty_like", "fold_into_bucket",
           "group_profiles", "read_profile"]

# The numeric sketches of a bucket: as accurate as the reference's, so that the
# merged windows' own errors (independent, averaging out) decide the thresholds.
FLEET_K = REFERENCE_K
# Width of the buckets a store merges windows into at ingest; a query's bucket is a
# whole number of them.
BASE_BUCKET_SECONDS = 300.0


def bucket_start(t: float, seconds: float) -> float:
    """Start of the bucket of width ``seconds`` (aligned on the epoch) that holds time ``t``."""
    return math.floor(t / seconds) * float(seconds)


def empty_like(profile: Profile, k: int = FLEET_K) -> Profile:
    """An empty profile of the same sections as ``profile``, its numeric sketches at ``k``.

    Merging windows into it keeps their strides (the first one's, then their
    greatest common divisor) and carries their errors along (:meth:`NumericSketch.merge`).
    """
    def numeric() -> NumericSketch:
        return NumericSketch(k)

    features: dict[str, NumericSketch | CategoricalSketch] = {
        name: CategoricalSketch(sketch.max_categories) if isinstance(sketch, CategoricalSketch) else numeric()
        for name, sketch in profile.features.items()}
    predictions = CategoricalSketch(profile.predictions.max_categories) if profile.predictions is not None else None
    return Profile(features, predictions, numeric(), numeric(),
                   class_scores={label: numeric() for label in profile.class_scores},
                   multivariate=numeric() if profile.multivariate is not None else None)


def fold_into_bucket(stored: bytes | None, profiles: Sequence[Profile]) -> tuple[bytes, int]:
    """A stored bucket's bytes (None or empty for a new bucket) with ``profiles`` merged in,
    and how many were: a profile whose feature set differs from the bucket's is left out.

    Raises
    ------
    BundleFormatError
        The stored bucket is not readable.
    """
    bucket = Profile.from_bytes(stored) if stored else empty_like(profiles[0])
    merged = 0
    for profile in profiles:
        if list(profile.features) != list(bucket.features):
            continue
        try:
            bucket.merge(profile)
        except ValueError:  # sections that do not fit (a model's windows always fit: its sha256 names its schema)
            continue
        merged += 1
    return bucket.to_bytes(), merged


def read_profile(data: bytes) -> Profile | None:
    """The profile in ``data``, or None when it cannot be read (such a window joins no bucket)."""
    from edge_runtime.errors import BundleFormatError

    try:
        return Profile.from_bytes(data)
    except (BundleFormatError, ValueError, RuntimeError):
        return None


@dataclass(frozen=True, slots=True)
class BucketFold:
    """Stored windows of one base bucket, their profiles already merged in memory.

    Attributes
    ----------
    model_sha256, start
        The bucket.
    profile
        The windows' profiles merged (numeric sketches at :data:`FLEET_K`); None when
        none of them could be read.
    window_ids
        The store's ids of every window the fold accounts for: merged, or left out
        because its features differ from the bucket's. A store writes the fold only
        if none of them is in its bucket already.
    merged
        How many of them ``profile`` holds.
    """

    model_sha256: str
    start: float
    profile: Profile | None
    window_ids: tuple[int, ...]
    merged: int


def group_profiles(rows: Iterable[tuple[str, float, bytes]]) -> dict[tuple[str, float], list[Profile]]:
    """Stored windows' ``(model_sha256, corrected_closed_at, profile bytes)`` read and grouped by base bucket;
    a profile that cannot be read joins no bucket."""
    groups: dict[tuple[str, float], list[Profile]] = {}
    for sha, closed_at, data in rows:
        profile = read_profile(data)
        if profile is not None:
            groups.setdefault((sha, bucket_start(closed_at, BASE_BUCKET_SECONDS)), []).append(profile)
    return groups


def add_unfolded(stored: dict[tuple[str, float], bytes], unfolded: Iterable[tuple[str, float, bytes]], *,
                 since: float | None = None, until: float | None = None) -> dict[tuple[str, float], bytes]:
    """Stored buckets' bytes with the windows not folded into them yet merged in: what the
    buckets hold once every window is folded. Only buckets whose start is in [since, until)."""
    merged = dict(stored)
    for key, profiles in group_profiles(unfolded).items():
        if (since is None or key[1] >= since) and (until is None or key[1] < until):
            merged[key] = fold_into_bucket(merged.get(key), profiles)[0]
    return dict(sorted(merged.items()))
