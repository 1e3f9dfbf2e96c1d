"""Fleet drift: the sketches of every device's windows merged per model version and time bucket,
judged against the bundle's reference with the device's own machinery.

A pure function over stored windows (:class:`~collector.stores.base.StoredWindow`)
and registered models (:class:`~collector.stores.base.ModelRecord`): the view never
knows which store holds them. Per model version (sha256) and bucket of
``corrected_closed_at`` (the collector's clock, so a device whose clock is a year off
lands in the right bucket), it

* merges the profiles of all windows (:meth:`Profile.merge`: any window sizes and
  strides; the buckets' numeric sketches at :data:`collector.buckets.FLEET_K`, so the
  windows' KLL errors average out and are carried along as the merged sketches' ``rank_sd``);
* judges the merged profile as one window with
  :func:`edge_runtime.monitoring.drift.assess_window`: the same metrics, thresholds
  and verdict structure as ``edge-runtime drift --json`` (the multivariate signal
  aside: the collector holds no bundle's PCA model);
* lists the devices that contributed, the share of them that drifted locally
  (a window of theirs in the bucket has a drift verdict of its own), and for each
  flagged (warn or drift) feature the devices that drove it. Each device is ranked by
  its windows' own verdicts of the signal (:attr:`StoredWindow.signals`: how many of its
  windows flagged it on the device, how many drifted, then their mean severity), and the
  top :data:`JUDGED_DEVICES` of each flagged signal are judged the fleet's way: their
  windows of the bucket merged and judged as one (only the flagged features' sketches
  read). The others are listed with their local counts alone.

A model the collector has no reference for (not registered, or registered without
a reference profile) is reported as unassessed, with its windows and devices.

For the query to stay fast over many windows, a store merges each window into a
base time bucket at ingest (:mod:`collector.stores.bucketing`), and the query passes
those to :func:`fleet_drift` as ``bucket_profiles``, with windows read without their
profile and verdicts (``FleetStore.windows(with_profile=False)``, which keeps their
``signals``): the buckets' profiles then come from the base buckets, a bucket that flags a
signal ranks its devices by their windows' signals, and reads whole only the windows of the
devices it judges (``read_device_windows``); a bucket without a base bucket reads its
windows whole (``read_windows``).

Examples
--------
>>> report = fleet_drift([], {})
>>> report.to_dict()
{'bucket_seconds': 3600.0, 'buckets': [], 'unassessed': []}
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.buckets import BASE_BUCKET_SECONDS, bucket_start, empty_like
from collector.stores.base import FleetStore, ModelRecord, StoredWindow, WindowKey
from edge_runtime.config import DriftPolicy
from edge_runtime.errors import BundleFormatError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.drift import DriftStatus, FeatureDrift, WindowDrift, assess_window
from edge_runtime.monitoring.reports import DriftSummary

__all__ = ["JUDGED_DEVICES", "DeviceDrift", "FleetBucket", "FleetDrift", "UnassessedModel", "fleet_drift",
           "matches_model", "query_fleet_drift"]

_RANK = {DriftStatus.OK: 0, DriftStatus.WARN: 1, DriftStatus.DRIFT: 2}
# Per flagged signal of a bucket, how many of the devices that drove it (ranked by their
# windows' own verdicts) are judged on their merged windows. Each costs reading its windows
# of the bucket (~0.1 ms a window for a few features' sketches), so a bucket of 1,000
# devices, many of them shifted, stays well under a second.
JUDGED_DEVICES = 10


# ------------------------------------------------------------------ reports
@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDrift:
    """One device's part in a flagged verdict of a fleet bucket.

    ``verdict`` judges the device's windows of the bucket merged: None when the device
    was not among the :data:`JUDGED_DEVICES` judged for the signal (``judged`` False), or
    its profiles could not be read. ``local_flagged`` counts its windows whose own verdict
    of the signal, on the device, was warn or drift, ``local_drifted`` drift, and
    ``local_severity`` is the mean over its windows of that verdict's value over its
    drift threshold.
    """

    device_id: str
    windows: int
    rows: int
    local_flagged: int
    local_drifted: int
    verdict: FeatureDrift | None
    local_severity: float = 0.0
    judged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "windows": self.windows, "rows": self.rows,
                "local_flagged": self.local_flagged, "local_drifted": self.local_drifted,
                "local_severity": self.local_severity, "judged": self.judged,
                "verdict": self.verdict.to_dict() if self.verdict is not None else None}


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetBucket:
    """One model version in one time bucket: the merged windows' verdicts and who contributed.

    ``features``, ``prediction``, ``multivariate`` and ``summary`` have the shapes of a
    window of ``edge-runtime drift --json``; ``drivers`` names, per flagged signal
    (a feature, or ``prediction``), the devices that drove it, the most drifted first;
    ``judged_devices`` are those of them judged on their merged windows.
    """

    model: str
    version: str
    model_sha256: str
    start: float
    end: float
    windows: int
    rows: int
    devices: tuple[str, ...]
    drifted_devices: tuple[str, ...]  # devices with a drift verdict of their own in the bucket
    summary: DriftSummary
    features: Mapping[str, FeatureDrift]
    prediction: FeatureDrift | None
    multivariate: FeatureDrift | None = None  # never judged here: the collector has no PCA model
    drivers: Mapping[str, tuple[DeviceDrift, ...]] = field(default_factory=dict)
    unreadable: int = 0  # windows read whose profile could not be read or merged (left out)
    judged_devices: tuple[str, ...] = ()

    @property
    def drifted_share(self) -> float:
        """Share of the contributing devices that drifted locally (0 when none contributed)."""
        return len(self.drifted_devices) / len(self.devices) if self.devices else 0.0

    @property
    def flagged(self) -> list[str]:
        """Signals with status warn or drift: features in schema order, then ``prediction``."""
        names = [name for name, verdict in self.features.items() if verdict.status is not DriftStatus.OK]
        if self.prediction is not None and self.prediction.status is not DriftStatus.OK:
            names.append("prediction")
        return names

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "model_sha256": self.model_sha256,
                "start": self.start, "end": self.end, "windows": self.windows, "rows": self.rows,
                "devices": list(self.devices), "drifted_devices": list(self.drifted_devices),
                "drifted_share": self.drifted_share, "unreadable": self.unreadable,
                "summary": self.summary.to_dict(),
                "features": {name: verdict.to_dict() for name, verdict in self.features.items()},
                "prediction": self.prediction.to_dict() if self.prediction is not None else None,
                "multivariate": self.multivariate.to_dict() if self.multivariate is not None else None,
                "drivers": {name: [d.to_dict() for d in devices] for name, devices in self.drivers.items()},
                "judged_devices": list(self.judged_devices)}


@dataclass(frozen=True, slots=True, kw_only=True)
class UnassessedModel:
    """A model whose windows the collector holds but cannot judge: ``reason`` says why."""

    model: str
    version: str
    model_sha256: str
    reason: str  # "unknown model" (never registered), "no reference profile" or "unreadable reference profile"
    windows: int
    devices: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "model_sha256": self.model_sha256,
                "reason": self.reason, "windows": self.windows, "devices": list(self.devices)}


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetDrift:
    """What ``edge-runtime fleet drift`` shows: buckets by model then time, and unassessed models."""

    bucket_seconds: float
    buckets: tuple[FleetBucket, ...]
    unassessed: tuple[UnassessedModel, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"bucket_seconds": self.bucket_seconds, "buckets": [b.to_dict() for b in self.buckets],
                "unassessed": [m.to_dict() for m in self.unassessed]}


# ------------------------------------------------------------------ the view
@dataclass(slots=True)
class _LocalTally:
    """One device's windows' own verdicts of one signal, added up: what ranks it among the drivers."""

    flagged: int = 0
    drifted: int = 0
    severity: float = 0.0  # the sum: over the windows, the mean

    def rank(self, windows: int) -> tuple[int, int, float]:
        return (self.flagged, self.drifted, self.severity / windows if windows else 0.0)


def _tally(windows: Sequence[StoredWindow], signals: Sequence[str]) -> dict[str, _LocalTally]:
    tallies = {signal: _LocalTally() for signal in signals}
    for window in windows:
        own = window.signals
        for signal, tally in tallies.items():
            found = own.get(signal)
            if found is not None:
                rank, severity = found
                tally.flagged += rank > 0
                tally.drifted += rank > 1
                tally.severity += severity
    return tallies


def _drifted_locally(window: StoredWindow) -> bool:
    return window.drift_count > 0 or any(row.get("status") == "drift" for row in window.verdicts)


def _signal(drift: WindowDrift, name: str) -> FeatureDrift | None:
    return drift.prediction if name == "prediction" else drift.features.get(name)


def _severity(verdict: FeatureDrift | None) -> tuple[int, float]:
    if verdict is None:
        return (0, 0.0)
    ratio = verdict.value / verdict.threshold if verdict.threshold and math.isfinite(verdict.threshold) else 0.0
    return (_RANK[verdict.status], ratio)


def matches_model(window: StoredWindow, model: str | None) -> bool:
    """Whether ``window`` is of ``model``: NAME, NAME:VERSION, or a sha256 or its first 8+ hex digits."""
    if model is None:
        return True
    name, _, version = model.partition(":")
    # A sha256 or the first 8+ hex digits of one, as the views print it (12).
    return (window.model_name == name and (not version or window.model_version == version)) \
        or (len(model) >= 8 and window.model_sha256.startswith(model.lower()))


def fleet_drift(windows: Iterable[StoredWindow], references: Mapping[str, ModelRecord],
                policy: DriftPolicy | None = None, *, bucket_seconds: float = 3600.0, model: str | None = None,
                since: float | None = None,
                bucket_profiles: Mapping[tuple[str, float], bytes] | None = None,
                base_seconds: float = BASE_BUCKET_SECONDS,
                read_windows: Callable[[str, float, float], Iterable[StoredWindow]] | None = None,
                read_device_windows: Callable[[str, str, float, float], Iterable[StoredWindow]] | None = None,
                judged_devices: int = JUDGED_DEVICES) -> FleetDrift:
    """Merge every device's windows per model version and time bucket, and judge each bucket.

    Parameters
    ----------
    windows : iterable of StoredWindow
        The fleet's windows (any order). A window whose ``profile`` is empty counts
        for its device and its local verdicts, but its sketches come from
        ``bucket_profiles``.
    references : mapping of str to ModelRecord
        The registered models by sha256; a model's ``reference_profile`` is what its
        buckets are judged against.
    policy : DriftPolicy, optional
        The thresholds (the device's defaults when None).
    bucket_seconds : float
        Width of a bucket of ``corrected_closed_at``, aligned on the epoch.
    model : str, optional
        Only this model: a name, ``name:version``, or a sha256.
    since : float, optional
        Only windows with ``corrected_closed_at >= since``.
    bucket_profiles : mapping of (sha256, start) to bytes, optional
        Base buckets merged at ingest (:func:`collector.buckets.merge_into_bucket`), of width
        ``base_seconds``, which must divide ``bucket_seconds``. Used instead of the
        windows' own profiles for a bucket's verdicts; a base bucket that ``since`` cuts
        is replaced by its windows from ``since`` on, read with ``read_windows``.
    read_windows : callable, optional
        ``read_windows(model_sha256, start, end)``: the whole windows (profile and
        verdicts) of a model closed in ``[start, end)``. Called for a bucket whose
        windows came without their profile (empty) when it needs them: it flags a
        signal and ``read_device_windows`` is not given, or no base bucket covers it.
    read_device_windows : callable, optional
        ``read_device_windows(model_sha256, device_id, start, end)``: the whole windows of
        one device, as ``read_windows``. Called, in a bucket that flags a signal, for each
        device judged on its merged windows.
    judged_devices : int
        Per flagged signal, how many of the devices that drove it, ranked by their windows'
        own verdicts, are judged on their merged windows.

    Returns
    -------
    FleetDrift

    Raises
    ------
    ValueError
        ``bucket_seconds`` is not positive, or not a multiple of ``base_seconds``
        while ``bucket_profiles`` are given.
    """
    if not bucket_seconds > 0:
        raise ValueError(f"The 'bucket_seconds' parameter of fleet_drift must be a number in (0, inf). "
                         f"Got {bucket_seconds!r} instead.")
    if bucket_profiles is not None and not math.isclose(bucket_seconds / base_seconds,
                                                        round(bucket_seconds / base_seconds)):
        raise ValueError(f"The 'bucket_seconds' parameter of fleet_drift must be a multiple of the base "
                         f"buckets' {base_seconds:g} s. Got {bucket_seconds!r} instead.")
    policy = policy if policy is not None else DriftPolicy()
    groups: dict[tuple[str, float], list[StoredWindow]] = {}
    names: dict[str, tuple[str, str]] = {}
    for window in windows:
        if since is not None and window.corrected_closed_at < since:
            continue
        if not matches_model(window, model):
            continue
        names.setdefault(window.model_sha256, (window.model_name, window.model_version))
        groups.setdefault((window.model_sha256, bucket_start(window.corrected_closed_at, bucket_seconds)),
                          []).append(window)
    unassessed: dict[str, tuple[str, list[StoredWindow]]] = {}
    buckets = []
    references_read: dict[str, Profile] = {}
    for (sha, start), members in sorted(groups.items(), key=lambda item: (*names[item[0][0]], item[0][1])):
        record = references.get(sha)
        reason = "unknown model" if record is None else "no reference profile"
        if record is not None and record.reference_profile and sha not in references_read:
            try:
                references_read[sha] = Profile.from_bytes(record.reference_profile)
            except BundleFormatError:
                reason = "unreadable reference profile"
        if sha not in references_read:
            unassessed.setdefault(sha, (reason, []))[1].extend(members)
            continue
        base = None
        if bucket_profiles is not None:
            base = _base_profiles(sha, start, round(bucket_seconds / base_seconds), base_seconds, bucket_profiles,
                                  since, read_windows)
        load = functools.partial(read_windows, sha, start, start + bucket_seconds) if read_windows else None
        load_device = (functools.partial(_device_reader, read_device_windows, sha, start, start + bucket_seconds)
                       if read_device_windows else None)
        buckets.append(_judge_bucket(sha, names[sha], start, start + bucket_seconds, members,
                                     references_read[sha], policy, base, load, load_device, judged_devices))
    return FleetDrift(
        bucket_seconds=float(bucket_seconds), buckets=tuple(buckets),
        unassessed=tuple(UnassessedModel(model=names[sha][0], version=names[sha][1], model_sha256=sha,
                                         reason=reason, windows=len(members),
                                         devices=tuple(sorted({w.device_id for w in members})))
                         for sha, (reason, members) in sorted(unassessed.items(), key=lambda i: names[i[0]])))


def _base_profiles(sha: str, start: float, steps: int, base_seconds: float,
                   bucket_profiles: Mapping[tuple[str, float], bytes], since: float | None,
                   read_windows: Callable[[str, float, float], Iterable[StoredWindow]] | None) -> list[bytes] | None:
    """The profiles a bucket's verdicts merge: its base buckets, but where ``since`` cuts one,
    the own profiles of that base bucket's windows from ``since`` on (a few minutes of them):
    the verdicts count exactly the windows the bucket reports. None: the windows' own profiles
    throughout (a cut bucket and no reader)."""
    profiles = []
    for i in range(steps):
        base_start = start + i * base_seconds
        if since is not None and base_start < since:
            if base_start + base_seconds <= since:
                continue  # wholly before since: none of its windows is reported
            if read_windows is None:
                return None
            profiles += [w.profile for w in read_windows(sha, since, base_start + base_seconds) if w.profile]
        elif (sha, base_start) in bucket_profiles:
            profiles.append(bucket_profiles[(sha, base_start)])
    return profiles


def _device_reader(read: Callable[[str, str, float, float], Iterable[StoredWindow]], sha: str, start: float,
                   end: float, device: str) -> Iterable[StoredWindow]:
    return read(sha, device, start, end)


def _judge_bucket(sha: str, name: tuple[str, str], start: float, end: float, members: Sequence[StoredWindow],
                  reference: Profile, policy: DriftPolicy, base: list[bytes] | None,
                  load: Callable[[], Iterable[StoredWindow]] | None = None,
                  load_device: Callable[[str], Iterable[StoredWindow]] | None = None,
                  judged_devices: int = JUDGED_DEVICES) -> FleetBucket:
    by_device: dict[str, list[StoredWindow]] = {}
    for window in members:
        by_device.setdefault(window.device_id, []).append(window)
    whole: dict[WindowKey, StoredWindow] | None = None

    def windows_whole(device: str, *, alone: bool) -> list[StoredWindow]:
        """The device's members read whole (profile and verdicts), when they came without them:
        ``alone``, by the device's own read (when given), else by one read of the bucket."""
        nonlocal whole
        own = by_device[device]
        if all(w.profile for w in own):
            return own
        if alone and load_device is not None:
            wanted = {w.key for w in own}
            found = {w.key: w for w in load_device(device) if w.key in wanted}
        else:
            if whole is None:
                keys = {w.key for w in members}
                whole = {w.key: w for w in load() if w.key in keys} if load is not None else {}
            found = whole
        return [found.get(w.key, w) for w in own]

    unreadable = 0

    def merged(windows: Iterable[StoredWindow], features: Collection[str] | None = None) -> Profile | None:
        """The windows' profiles merged (only ``features``' sketches read, when given)."""
        nonlocal unreadable
        out: Profile | None = None
        for window in windows:
            if not window.profile:
                continue
            try:
                profile = Profile.from_bytes(window.profile, features=features)
                out = (out if out is not None else empty_like(profile)).merge(profile)
            except (BundleFormatError, ValueError):
                unreadable += 1
        return out

    # Without base buckets, the bucket is its devices' windows merged, each device's first:
    # a flagged signal then judges the devices without reading a profile twice.
    device_profiles: dict[str, Profile | None] = {}
    bucket: Profile | None = None
    if not base:  # none given, or none stored for this range
        for device in by_device:
            device_profiles[device] = profile = merged(windows_whole(device, alone=False))
            if profile is not None:
                bucket = (bucket if bucket is not None else empty_like(profile)).merge(profile)
    else:
        for blob in base:
            part = Profile.from_bytes(blob)
            bucket = (bucket if bucket is not None else empty_like(part)).merge(part)
    if bucket is None:  # nothing readable: judged as an empty window (every verdict ok, no rows)
        bucket = empty_like(reference)
    drift = assess_window(reference, bucket, policy)
    flagged = [n for n, v in drift.features.items() if v.status is not DriftStatus.OK]
    if drift.prediction is not None and drift.prediction.status is not DriftStatus.OK:
        flagged.append("prediction")
    drivers: dict[str, tuple[DeviceDrift, ...]] = {}
    judged: list[str] = []
    if flagged:
        # Every device ranked by its windows' own verdicts of each flagged signal; the top
        # ones of each are judged on their merged windows, reading only the flagged features.
        tallies = {device: _tally(own, flagged) for device, own in by_device.items()}
        for signal in flagged:
            ranked = sorted(by_device, key=lambda d: tallies[d][signal].rank(len(by_device[d])), reverse=True)
            judged += [d for d in ranked[:judged_devices] if d not in judged]
        features = {signal for signal in flagged if signal != "prediction"}
        device_drift: dict[str, WindowDrift] = {}
        for device in judged:
            profile = device_profiles[device] if device in device_profiles else merged(
                windows_whole(device, alone=True), features)
            if profile is not None:
                device_drift[device] = assess_window(reference, profile, policy)
        for signal in flagged:
            rows = []
            for device, own in by_device.items():
                tally = tallies[device][signal]
                verdict = _signal(device_drift[device], signal) if device in device_drift else None
                if tally.flagged or (verdict is not None and verdict.status is not DriftStatus.OK):
                    rows.append(DeviceDrift(device_id=device, windows=len(own), rows=sum(w.rows for w in own),
                                            local_flagged=tally.flagged, local_drifted=tally.drifted,
                                            local_severity=tally.rank(len(own))[2], verdict=verdict,
                                            judged=device in judged))
            rows.sort(key=lambda d: (*_severity(d.verdict), d.local_flagged, d.local_drifted, d.local_severity),
                      reverse=True)
            drivers[signal] = tuple(rows)
    return FleetBucket(model=name[0], version=name[1], model_sha256=sha, start=start, end=end,
                       windows=len(members), rows=sum(w.rows for w in members),
                       devices=tuple(sorted(by_device)),
                       drifted_devices=tuple(sorted(d for d, own in by_device.items()
                                                    if any(_drifted_locally(w) for w in own))),
                       summary=DriftSummary.from_dict(drift.summary()), features=drift.features,
                       prediction=drift.prediction, multivariate=None, drivers=drivers, unreadable=unreadable,
                       judged_devices=tuple(sorted(judged)))


def query_fleet_drift(store: FleetStore, policy: DriftPolicy | None = None, *, bucket_seconds: float = 3600.0,
                      model: str | None = None, since: float | None = None) -> FleetDrift:
    """:func:`fleet_drift` over a store, the fast way: the base buckets merged at ingest, the
    windows read without their profiles, and whole only for the buckets that need them.

    A ``bucket_seconds`` that is not a multiple of the base buckets' width
    (:data:`~collector.stores.bucketing.BASE_BUCKET_SECONDS`) merges the windows' own
    profiles instead (slower, the same verdicts).

    Raises
    ------
    ValueError
        ``bucket_seconds`` is not positive.
    collector.errors.FleetStoreError
        The store failed.
    """
    bounded = since if since is not None and math.isfinite(since) else None
    references = {m.sha256: m for m in store.models()}
    steps = bucket_seconds / BASE_BUCKET_SECONDS
    if bucket_seconds > 0 and math.isclose(steps, round(steps)):
        base_since = bucket_start(bounded, bucket_seconds) if bounded is not None else None
        return fleet_drift(store.windows(since=bounded, with_profile=False), references, policy,
                           bucket_seconds=bucket_seconds, model=model, since=since,
                           bucket_profiles=store.bucket_profiles(since=base_since),
                           read_windows=lambda sha, start, end: store.windows(sha, start, end),
                           read_device_windows=lambda sha, device, start, end: store.windows(
                               sha, start, end, device_id=device))
    return fleet_drift(store.windows(since=bounded), references, policy, bucket_seconds=bucket_seconds,
                       model=model, since=since)
