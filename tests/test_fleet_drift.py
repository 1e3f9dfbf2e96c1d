"""Fleet drift (issue 11): a golden test on a simulated fleet, and the view's contract.

The windows are made with the device's machinery from seeded data
(``collector.simulation``): three devices, twelve 10-minute windows each over two
hours, one device shifted in one feature (KS 0.1) from its seventh window on.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from collector.buckets import BASE_BUCKET_SECONDS, bucket_start, merge_into_bucket
from collector.fleet_drift import FleetDrift, fleet_drift
from collector.simulation import Shift, simulate_fleet
from collector.stores.base import ModelRecord, StoredWindow
from edge_runtime.monitoring.drift import DriftStatus, FeatureDrift
from edge_runtime.monitoring.reports import DriftSummary, WindowReport

HOUR = 1_800_000_000.0  # a bucket boundary: windows j = 0..5 close in the first hour, 6..11 in the second
SHIFT = Shift(device=1, feature=2, delta=0.25, from_window=6)  # KS 0.0995 on dev-001's f02


def fleet(shifts: tuple[Shift, ...] = (SHIFT,), seed: int = 0) -> tuple[ModelRecord, list[StoredWindow]]:
    return simulate_fleet(devices=3, windows_per_device=12, features=10, rows=5000, seed=seed, shifts=shifts,
                          start=HOUR - 600.0)


@pytest.fixture(scope="module")
def shifted() -> tuple[ModelRecord, list[StoredWindow], FleetDrift]:
    model, windows = fleet()
    return model, windows, fleet_drift(windows, {model.sha256: model})


def test_the_shift_is_flagged_in_its_bucket_and_traced_to_its_device(shifted) -> None:
    _, _, report = shifted
    before, after = report.buckets
    assert (before.start, after.start, after.end) == (HOUR, HOUR + 3600, HOUR + 7200)
    assert before.windows == after.windows == 18 and after.rows == 90_000
    assert before.devices == after.devices == ("dev-000", "dev-001", "dev-002")
    assert before.flagged == [] and before.drifted_devices == ()
    assert after.flagged == ["f02"]
    assert after.features["f02"].status is not DriftStatus.OK
    assert 0.025 < after.features["f02"].value < 0.05  # a third of the rows moved by KS 0.1
    assert after.drifted_devices == ("dev-001",) and after.drifted_share == pytest.approx(1 / 3)
    (driver,) = after.drivers["f02"]
    assert (driver.device_id, driver.windows, driver.rows, driver.local_flagged) == ("dev-001", 6, 30_000, 6)
    assert driver.verdict is not None and driver.verdict.drift and 0.08 < driver.verdict.value < 0.12


def test_a_stationary_fleet_flags_nothing() -> None:
    model, windows = fleet(shifts=())
    report = fleet_drift(windows, {model.sha256: model})
    assert len(report.buckets) == 2
    for bucket in report.buckets:
        assert bucket.flagged == [] and bucket.drivers == {}
        assert bucket.summary.drifted == () and bucket.summary.warned == ()


def test_the_verdicts_have_the_shape_of_edge_runtime_drift(shifted) -> None:
    _, _, report = shifted
    bucket = report.to_dict()["buckets"][1]
    json.dumps(report.to_dict())  # plain JSON all the way down
    window_keys = set(WindowReport.__dataclass_fields__) - {"index", "writer", "partial", "opened_at", "closed_at"}
    assert window_keys <= set(bucket)
    verdict = bucket["features"]["f02"]
    one = FeatureDrift(name="x", kind="numeric", status=DriftStatus.OK, metric="ks", value=0.0, threshold=1.0,
                       warn_threshold=1.0, rows=1, reference_rows=1)
    assert set(verdict) == set(one.to_dict()) and set(verdict["metrics"]) == {"ks", "psi"}
    assert set(bucket["summary"]) == set(DriftSummary().to_dict())
    assert bucket["summary"]["drifted"] + bucket["summary"]["warned"] == ["f02"]
    assert bucket["prediction"]["status"] in ("ok", "warn")  # the regressor's output moved by a third of one weight
    assert bucket["drifted_share"] == pytest.approx(1 / 3) and bucket["drivers"]["f02"][0]["device_id"] == "dev-001"


def test_models_without_a_reference_are_reported_unassessed(shifted) -> None:
    model, windows, _ = shifted
    bare = dataclasses.replace(model, reference_profile=b"")
    report = fleet_drift(windows, {model.sha256: bare})
    assert report.buckets == ()
    (unassessed,) = report.unassessed
    assert (unassessed.reason, unassessed.windows, unassessed.model) == ("no reference profile", 36, "sim")
    unknown = fleet_drift(windows, {})
    assert [m.reason for m in unknown.unassessed] == ["unknown model"]
    assert unknown.unassessed[0].devices == ("dev-000", "dev-001", "dev-002")


def test_model_since_and_bucket_width_select(shifted) -> None:
    model, windows, _ = shifted
    references = {model.sha256: model}
    assert fleet_drift(windows, references, model="other").buckets == ()
    assert len(fleet_drift(windows, references, model="sim:1").buckets) == 2
    assert len(fleet_drift(windows, references, model=model.sha256).buckets) == 2
    late = fleet_drift(windows, references, since=HOUR + 3600)
    assert [b.start for b in late.buckets] == [HOUR + 3600]
    whole = fleet_drift(windows, references, bucket_seconds=7200)
    assert [(b.start, b.windows) for b in whole.buckets] == [(HOUR, 36)]
    with pytest.raises(ValueError, match="'bucket_seconds' parameter of fleet_drift"):
        fleet_drift(windows, references, bucket_seconds=0)


def test_base_buckets_merged_at_ingest_give_the_same_verdicts(shifted) -> None:
    model, windows, direct = shifted
    buckets: dict[tuple[str, float], bytes] = {}
    for window in reversed(windows):  # any order
        key = (window.model_sha256, bucket_start(window.corrected_closed_at, BASE_BUCKET_SECONDS))
        buckets[key] = merge_into_bucket(buckets.get(key), window)
    # Windows without their profiles: counted, and their verdicts read, but the sketches come from the buckets.
    bare = [dataclasses.replace(w, profile=b"") for w in windows]
    report = fleet_drift(bare, {model.sha256: model}, bucket_profiles=buckets)
    assert [b.flagged for b in report.buckets] == [b.flagged for b in direct.buckets] == [[], ["f02"]]
    assert [b.features["f02"].rows for b in report.buckets] == [90_000, 90_000]
    after = report.buckets[1]
    assert after.drifted_share == pytest.approx(1 / 3)
    (driver,) = after.drivers["f02"]  # named from its own windows' verdicts; its profiles were not read
    assert (driver.device_id, driver.local_flagged, driver.verdict) == ("dev-001", 6, None)
    with pytest.raises(ValueError, match="multiple of the base"):
        fleet_drift(bare, {model.sha256: model}, bucket_profiles=buckets, bucket_seconds=400)


def test_an_unreadable_profile_is_counted_and_left_out(shifted) -> None:
    model, windows, _ = shifted
    broken = [dataclasses.replace(windows[0], profile=b"ERPF\x01garbage")] + windows[1:]
    report = fleet_drift(broken, {model.sha256: model})
    assert report.buckets[0].unreadable == 1 and report.buckets[0].features["f00"].rows == 85_000


@pytest.mark.parametrize("shifts", [(), (dataclasses.replace(SHIFT, device=2),)], ids=["stationary", "shifted"])
def test_windows_of_different_sizes_and_strides_merge_into_one_verdict(shifts: tuple[Shift, ...]) -> None:
    """Devices closing windows of 1,000, 5,000 and 20,000 rows thin by strides 1, 4 and 8."""
    model, windows = simulate_fleet(devices=3, windows_per_device=12, features=10, rows=(1000, 5000, 20_000),
                                    seed=2, shifts=shifts, start=HOUR - 600.0)
    report = fleet_drift(windows, {model.sha256: model})
    before, after = report.buckets
    assert after.features["f00"].rows == 6 * 26_000
    assert before.flagged == [] and before.drifted_devices == ()
    if not shifts:
        assert after.flagged == [] and after.drifted_devices == ()
        return
    # dev-002's 20,000-row windows are most of the rows: a fleet KS of ~0.08.
    assert after.flagged == ["f02"] and after.features["f02"].drift
    assert after.drifted_devices == ("dev-002",)
    assert [d.device_id for d in after.drivers["f02"]] == ["dev-002"]


def test_an_unreadable_reference_is_reported_and_other_models_still_judged(shifted) -> None:
    model, windows, _ = shifted
    other, strangers = simulate_fleet(devices=1, windows_per_device=2, features=3, rows=500, seed=1, name="other")
    broken = dataclasses.replace(other, reference_profile=b"ERPF\x01garbage")
    report = fleet_drift(windows + strangers, {model.sha256: model, other.sha256: broken})
    assert {b.model for b in report.buckets} == {"sim"}
    assert [(m.model, m.reason) for m in report.unassessed] == [("other", "unreadable reference profile")]


def _spy_whole_reads(store: Any) -> list[tuple[Any, ...]]:
    """Every read of whole windows (with their profiles) the store is asked for from now on:
    its positional arguments, then its ``device_id``."""
    reads: list[tuple[Any, ...]] = []
    reading = store.windows

    def windows_spied(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("with_profile", True):
            reads.append((*args, kwargs.get("device_id")))
        return reading(*args, **kwargs)

    store.windows = windows_spied
    return reads


def test_the_store_query_reads_buckets_and_only_the_flagged_bucket_whole(shifted, fleet_store_url: str) -> None:
    from collector.fleet_drift import query_fleet_drift
    from collector.stores import open_store

    model, windows, direct = shifted
    store = open_store(fleet_store_url)
    try:
        store.add_model(model)
        for window in windows:
            store.insert_window(window)
        reading = store.windows
        whole_reads = _spy_whole_reads(store)
        report = query_fleet_drift(store)
        assert [b.flagged for b in report.buckets] == [b.flagged for b in direct.buckets] == [[], ["f02"]]
        # The flagged bucket only, device by device: all three judged (fewer than JUDGED_DEVICES).
        assert sorted(whole_reads) == [(model.sha256, HOUR + 3600, HOUR + 7200, f"dev-00{d}") for d in range(3)]
        assert report.buckets[1].judged_devices == ("dev-000", "dev-001", "dev-002")
        (driver,) = report.buckets[1].drivers["f02"]  # judged on its own windows, read whole for it
        expected = direct.buckets[1].drivers["f02"][0].verdict
        assert driver.device_id == "dev-001" and driver.verdict is not None and expected is not None
        # The same verdict, within the sketches' error (the windows merge in another order).
        assert driver.verdict.status == expected.status
        assert driver.verdict.value == pytest.approx(expected.value, abs=0.01)
        assert report.buckets[1].windows == direct.buckets[1].windows == 18
        # Since the second hour; and a bucket width that is not a multiple of the base buckets'.
        later = query_fleet_drift(store, since=HOUR + 3600)
        assert [b.flagged for b in later.buckets] == [["f02"]]
        # A since that cuts a base bucket (dev-000's window closes just before it, the others' just
        # after): the verdicts count exactly the windows reported, no row before since.
        cut = query_fleet_drift(store, since=HOUR + 3600 + 0.5)
        kept = [w for w in windows if w.corrected_closed_at >= HOUR + 3600 + 0.5]
        assert len(kept) == 17 and [b.windows for b in cut.buckets] == [17]
        assert {v.rows for v in cut.buckets[0].features.values()} == {cut.buckets[0].rows} == {sum(w.rows for w in kept)}
        odd = query_fleet_drift(store, bucket_seconds=7200 + 60)  # the windows' own profiles: as fleet_drift
        same = fleet_drift(list(reading()), {model.sha256: model}, bucket_seconds=7260)
        assert [(b.start, b.windows, b.rows) for b in odd.buckets] == [(b.start, b.windows, b.rows)
                                                                       for b in same.buckets]
    finally:
        store.close()


# ------------------------------------------------------------------ many devices, some shifted
TWO_SHIFTED = (Shift(device=3, feature=2, delta=0.6), Shift(device=5, feature=2, delta=0.3))


@pytest.fixture(scope="module")
def crowd() -> tuple[ModelRecord, list[StoredWindow]]:
    """Eight devices, six 10-minute windows each in one hour; dev-003 and dev-005 shifted in f02."""
    return simulate_fleet(devices=8, windows_per_device=6, features=6, rows=2000, seed=3, shifts=TWO_SHIFTED,
                          start=HOUR - 300.0)


def test_a_flagged_bucket_judges_its_top_devices_and_lists_the_rest_by_their_own_verdicts(crowd) -> None:
    model, windows = crowd
    (whole,) = fleet_drift(windows, {model.sha256: model}).buckets
    assert "f02" in whole.flagged
    assert [(d.device_id, d.judged, d.verdict.status if d.verdict else None) for d in whole.drivers["f02"]] == [
        ("dev-003", True, DriftStatus.DRIFT), ("dev-005", True, DriftStatus.DRIFT)]
    assert whole.drivers["f02"][0].verdict.value > whole.drivers["f02"][1].verdict.value  # type: ignore[union-attr]
    # One device judged per signal: the most shifted; the other still named, by its windows' own verdicts.
    (top,) = fleet_drift(windows, {model.sha256: model}, judged_devices=1).buckets
    first, second = top.drivers["f02"]
    assert (first.device_id, first.judged, first.verdict) == ("dev-003", True, whole.drivers["f02"][0].verdict)
    assert (second.device_id, second.judged, second.verdict) == ("dev-005", False, None)
    assert (second.local_flagged, second.windows) == (6, 6) and 1.0 < second.local_severity < first.local_severity
    assert top.judged_devices == ("dev-003",) and "dev-003" in top.to_dict()["judged_devices"]
    assert top.to_dict()["drivers"]["f02"][1] == {
        "device_id": "dev-005", "windows": 6, "rows": 12_000, "local_flagged": 6, "local_drifted": 6,
        "local_severity": second.local_severity, "judged": False, "verdict": None}


def test_the_store_query_reads_only_the_judged_devices_windows(crowd, fleet_store_url: str) -> None:
    from collector.fleet_drift import query_fleet_drift
    from collector.stores import open_store

    model, windows = crowd
    (direct,) = fleet_drift(windows, {model.sha256: model}).buckets
    store = open_store(fleet_store_url)
    try:
        store.add_model(model)
        for window in windows:
            store.insert_window(window)
        whole_reads = _spy_whole_reads(store)
        # 2 devices judged per signal (JUDGED_DEVICES is 10): f02's two shifted devices, the only flagged signal.
        (bucket,) = fleet_drift(store.windows(with_profile=False), {model.sha256: model},
                                bucket_profiles=store.bucket_profiles(),
                                read_device_windows=lambda sha, device, start, end: store.windows(
                                    sha, start, end, device_id=device), judged_devices=2).buckets
        assert bucket.flagged == direct.flagged
        devices_read = [read[-1] for read in whole_reads]
        assert sorted(d for d in devices_read if d is not None) == list(bucket.judged_devices)
        assert None not in devices_read  # no read of the whole bucket
        assert bucket.flagged == ["f02"] and bucket.judged_devices == ("dev-003", "dev-005")
        for got, expected in zip(bucket.drivers["f02"], direct.drivers["f02"], strict=True):
            assert got.device_id == expected.device_id and got.verdict is not None and expected.verdict is not None
            # The same verdict from the flagged feature's sketches alone, within the sketches' error.
            assert got.verdict.status == expected.verdict.status
            assert got.verdict.value == pytest.approx(expected.verdict.value, abs=0.01)
            assert got.verdict.threshold == pytest.approx(expected.verdict.threshold)
        whole_reads.clear()
        (queried,) = query_fleet_drift(store).buckets  # the same through the query
        assert [d.device_id for d in queried.drivers["f02"]] == ["dev-003", "dev-005"]
        assert sorted(read[-1] for read in whole_reads if read[-1] is not None) == list(queried.judged_devices)
    finally:
        store.close()
