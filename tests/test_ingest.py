"""Ingest over both stores: what is stored, what is refused (and counted), and nothing twice."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from collector.errors import MessageRejected
from collector.ingest import Ingestor
from collector.registry import register_bundle
from collector.stores import FleetStore, open_store
from edge_runtime.sync.keys import DeviceKey
from tests.fleet_device import YEAR, SimulatedDevice

T0 = 1.7e9  # true time of the first window's close


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(fleet_store_url: str) -> Iterator[FleetStore]:
    opened = open_store(fleet_store_url)
    yield opened
    opened.close()


@pytest.fixture
def device(monitored_window: dict[str, Any]) -> SimulatedDevice:
    return SimulatedDevice(monitored_window)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 1.0)


@pytest.fixture
def ingestor(store: FleetStore, device: SimulatedDevice, clock: FakeClock) -> Ingestor:
    store.add_device(device.device_id, device.public_key, now=0.0)
    return Ingestor(store, clock=clock)


def rejected(ingestor: Ingestor, data: bytes) -> tuple[str, int]:
    with pytest.raises(MessageRejected) as caught:
        ingestor.ingest(data)
    return caught.value.reason, caught.value.http_status


# ------------------------------------------------------------------ accepted
def test_a_window_is_stored_with_its_fields(ingestor: Ingestor, store: FleetStore, device: SimulatedDevice,
                                            monitored_window: dict[str, Any]) -> None:
    [message] = device.messages(5, closed_at=T0, sent_at=T0 + 0.5)
    result = ingestor.ingest(message)
    assert (result.status, result.model_known) == ("stored", False)
    assert "not registered" in result.detail
    (window,) = store.windows()
    assert window.key == result.key
    assert (window.device_id, window.seq_first, window.seq_last, window.rows) == ("kiosk-1", 5, 5,
                                                                                 monitored_window["rows"])
    assert window.profile == monitored_window["profile"]
    assert window.verdicts == monitored_window["verdicts"]
    assert window.drift_count == sum(v["status"] == "drift" for v in monitored_window["verdicts"])
    assert window.received_at == T0 + 1.0
    assert window.corrected_closed_at == pytest.approx(T0 + 0.5, abs=1e-3)  # within the first message's delay
    assert store.device("kiosk-1").last_seen == T0 + 1.0  # type: ignore[union-attr]


def test_a_window_of_a_registered_model_is_reported_known(ingestor: Ingestor, store: FleetStore,
                                                         device: SimulatedDevice, cancer_bundle: Any) -> None:
    register_bundle(store, cancer_bundle, now=0.0)
    [message] = device.messages(1, closed_at=T0, sent_at=T0)
    assert ingestor.ingest(message).model_known


def test_duplicates_and_replays_change_nothing(ingestor: Ingestor, store: FleetStore,
                                              device: SimulatedDevice, clock: FakeClock) -> None:
    [message] = device.messages(1, closed_at=T0, sent_at=T0)
    assert ingestor.ingest(message).status == "stored"
    before = list(store.windows())
    clock.now += 86400.0  # replayed a day later
    assert ingestor.ingest(message).status == "duplicate"
    # Re-encoded (new send time, other document digest): still the same window.
    [again] = device.messages(1, closed_at=T0, sent_at=T0 + 86400.0)
    assert ingestor.ingest(again).status == "duplicate"
    assert [repr(w) for w in store.windows()] == [repr(w) for w in before]
    assert dict(store.rejections()) == {}


def test_split_windows_join_out_of_order_with_duplicate_parts(ingestor: Ingestor, store: FleetStore,
                                                              device: SimulatedDevice) -> None:
    messages = device.messages(3, closed_at=T0, sent_at=T0, max_message_bytes=4096)
    assert len(messages) >= 3
    order = list(range(len(messages)))
    random.Random(7).shuffle(order)
    statuses = []
    for i in order[:-1]:
        statuses.append(ingestor.ingest(messages[i]).status)
        statuses.append(ingestor.ingest(messages[i]).status)  # each part delivered twice
    assert set(statuses) == {"part-stored"}
    assert store.window_count() == 0
    assert ingestor.ingest(messages[order[-1]]).status == "stored"
    assert ingestor.ingest(messages[order[0]]).status == "duplicate"
    (window,) = store.windows()
    assert window.seq_first == 3
    assert window.profile == device.window["profile"]


def test_parts_of_two_encodings_of_one_window_are_not_mixed(ingestor: Ingestor, store: FleetStore,
                                                            device: SimulatedDevice) -> None:
    first = device.messages(3, closed_at=T0, sent_at=T0, max_message_bytes=4096)
    second = device.messages(3, closed_at=T0, sent_at=T0 + 30.0, max_message_bytes=4096)
    for message in first[:-1] + second[1:]:
        assert ingestor.ingest(message).status == "part-stored"
    assert ingestor.ingest(second[0]).status == "stored"
    assert ingestor.ingest(first[-1]).status == "duplicate"
    assert store.window_count() == 1


@pytest.mark.parametrize("skew", [-YEAR, YEAR])
def test_a_device_clock_a_year_off_is_corrected(ingestor: Ingestor, store: FleetStore,
                                                monitored_window: dict[str, Any], clock: FakeClock,
                                                skew: float) -> None:
    device = SimulatedDevice(monitored_window, device_id="drifty", skew=skew)
    store.add_device("drifty", device.public_key, now=0.0)
    delays = [0.8, 0.05, 2.0, 0.3]  # network delays of the sends, the second the shortest
    for seq, delay in enumerate(delays, start=1):
        closed = T0 + 60.0 * seq
        clock.now = closed + 5.0 + delay
        [message] = device.messages(seq, closed_at=closed, sent_at=closed + 5.0)
        ingestor.ingest(message)
    corrected = [w.corrected_closed_at - (T0 + 60.0 * w.seq_first) for w in store.windows(device_id="drifty")]
    # The first is off by its own delay (the only one seen then); later ones by the best delay so far.
    assert corrected == pytest.approx([0.8, 0.05, 0.05, 0.05], abs=1e-3)
    (offset,) = store.clock_offsets("drifty")
    assert offset.skew == pytest.approx(skew - 0.05, abs=1e-3)
    assert offset.samples == 4


def test_each_boot_gets_its_own_offset(ingestor: Ingestor, store: FleetStore, device: SimulatedDevice,
                                       clock: FakeClock) -> None:
    [message] = device.messages(1, closed_at=T0, sent_at=T0)
    ingestor.ingest(message)
    device.boot_id, device.booted_at, device.skew = "boot-2", T0 + 100.0, YEAR  # rebooted with a wrong clock
    clock.now = T0 + 200.5
    [message] = device.messages(2, closed_at=T0 + 199.0, sent_at=T0 + 200.0)
    ingestor.ingest(message)
    assert [w.corrected_closed_at for w in store.windows()] == pytest.approx([T0 + 1.0, T0 + 199.5], abs=1e-3)
    assert [o.boot_id for o in store.clock_offsets("kiosk-1")] == ["boot-1", "boot-2"]


# ------------------------------------------------------------------ refused
def test_refusals_map_to_their_status_and_are_counted(ingestor: Ingestor, store: FleetStore,
                                                      device: SimulatedDevice,
                                                      monitored_window: dict[str, Any]) -> None:
    [good] = device.messages(1, closed_at=T0, sent_at=T0)
    header_end = 12 + struct.unpack_from(">I", good, 8)[0]
    body_flip = bytearray(good)
    body_flip[header_end + 10] ^= 0x01
    magic = b"XXSYNC" + good[6:]
    version = good[:6] + struct.pack(">H", 9) + good[8:]
    stranger = SimulatedDevice(monitored_window, device_id="stranger")
    [unknown] = stranger.messages(1, closed_at=T0, sent_at=T0)
    forger = DeviceKey.generate("kiosk-1")  # another key claiming to be kiosk-1
    signed = good[:-64]
    cases = {
        "corrupted body": (bytes(body_flip), ("bad-signature", 401)),
        "not a sync message": (magic, ("malformed", 400)),
        "truncated": (good[: len(good) // 2], ("truncated", 400)),
        "unsigned": (signed, ("truncated", 400)),
        "wrongly signed": (signed + forger.sign(signed), ("bad-signature", 401)),
        "zeroed signature": (signed + bytes(64), ("bad-signature", 401)),
        "oversized": (good + bytes(ingestor.max_message_bytes), ("oversized", 413)),
        "unsupported version": (version, ("unsupported-version", 422)),
        "unknown device": (unknown, ("unknown-device", 401)),
        "empty": (b"", ("truncated", 400)),
    }
    for name, (data, expected) in cases.items():
        assert rejected(ingestor, data) == expected, name
    assert store.window_count() == 0
    assert dict(store.rejections()) == {"bad-signature": 3, "malformed": 1, "oversized": 1, "truncated": 3,
                                        "unknown-device": 1, "unsupported-version": 1}
    assert ingestor.ingest(good).status == "stored"  # the real one still goes in


def test_a_removed_device_is_refused_until_added_again(ingestor: Ingestor, store: FleetStore,
                                                       device: SimulatedDevice) -> None:
    [message] = device.messages(1, closed_at=T0, sent_at=T0)
    store.remove_device("kiosk-1")
    assert rejected(ingestor, message) == ("removed-device", 401)
    assert store.window_count() == 0
    store.add_device("kiosk-1", device.public_key, now=1.0)
    assert ingestor.ingest(message).status == "stored"


def test_a_key_rotated_away_refuses_the_old_key(ingestor: Ingestor, store: FleetStore,
                                                device: SimulatedDevice) -> None:
    [message] = device.messages(1, closed_at=T0, sent_at=T0)
    store.add_device("kiosk-1", DeviceKey.generate("kiosk-1").public_text, now=1.0)
    assert rejected(ingestor, message) == ("bad-signature", 401)


def test_a_corrupt_document_in_signed_parts_is_refused(ingestor: Ingestor, store: FleetStore,
                                                       device: SimulatedDevice) -> None:
    """A device bug (a profile that does not parse), signed: refused as malformed, nothing stored."""
    [message] = device.messages(1, closed_at=T0, sent_at=T0, profile=b"not a profile")
    assert rejected(ingestor, message) == ("malformed", 400)
    assert store.window_count() == 0


def test_the_kept_version_1_example_is_ingested(store: FleetStore, clock: FakeClock) -> None:
    """Every released protocol version stays readable by the collector (tests/data/sync/)."""
    kept = Path(__file__).parent / "data" / "sync"
    facts = json.loads((kept / "v1.json").read_text())
    store.add_device(facts["device_id"], facts["public_key"], now=0.0)
    ingestor = Ingestor(store, clock=clock)
    statuses = [ingestor.ingest((kept / f"v1-part{i}.bin").read_bytes()).status for i in reversed(range(facts["parts"]))]
    assert statuses == ["part-stored"] * (facts["parts"] - 1) + ["stored"]
    (window,) = store.windows()
    assert (window.device_id, window.database_id, window.seq_first, window.rows, window.model_sha256) == (
        facts["device_id"], facts["database_id"], facts["seq_first"], facts["rows"], facts["model_sha256"])
    assert len(window.verdicts) == facts["verdicts"]


def _forged(device: SimulatedDevice, summary: Any) -> bytes:
    """A version-1 message written by hand, NaN allowed in its JSON (the real encoder refuses it)."""
    import dataclasses
    import hashlib
    import zlib

    fields = {f.name: getattr(summary, f.name) for f in dataclasses.fields(summary) if f.name != "profile"}
    text = json.dumps(fields).encode()
    document = zlib.compress(struct.pack(">I", len(text)) + text + summary.profile)
    header = json.dumps({"device": summary.device_id, "database_id": summary.database_id,
                         "model_sha256": summary.model_sha256, "seq_first": summary.seq_first,
                         "seq_last": summary.seq_last, "part": 0, "parts": 1,
                         "document_sha256": hashlib.sha256(document).hexdigest(), "document_bytes": len(document),
                         "sent_wall": summary.sent_wall, "sent_mono": summary.sent_mono,
                         "boot_id": summary.boot_id}).encode()
    signed = b"ERSYNC" + struct.pack(">HI", 1, len(header)) + header + struct.pack(">I", len(document)) + document
    return signed + device.key.sign(signed)


def test_non_finite_clocks_from_a_signed_device_are_refused(ingestor: Ingestor, store: FleetStore,
                                                            device: SimulatedDevice) -> None:
    """JSON readers take NaN: a buggy device's NaN times are refused (400), never a store error it retries."""
    import dataclasses
    import math

    summary = device.summary(1, closed_at=T0, sent_at=T0)
    assert ingestor.ingest(_forged(device, dataclasses.replace(summary, seq_first=9, seq_last=9))).status == "stored"
    for changes in ({"closed_at": math.nan}, {"sent_mono": math.inf}, {"sent_wall": -math.inf}):
        assert rejected(ingestor, _forged(device, dataclasses.replace(summary, **changes))) == ("malformed", 400)
    assert store.window_count() == 1


# ------------------------------------------------------------------ the group commit
def test_group_commit_gives_each_thread_its_own_result_and_batches_the_waiting() -> None:
    import threading

    from collector.ingest import GroupCommit

    batches: list[list[int]] = []
    first_write = threading.Event()
    release = threading.Event()

    def write(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:  # hold the first write until every other thread waits behind it
            first_write.set()
            release.wait(10)
        return [item * 10 for item in items]

    commit: GroupCommit[int, int] = GroupCommit(write, max_batch=8)
    results: dict[int, int] = {}

    def submit(item: int) -> None:
        results[item] = commit.submit(item)

    lead = threading.Thread(target=submit, args=(0,))
    lead.start()
    assert first_write.wait(10)
    waiting = [threading.Thread(target=submit, args=(i,)) for i in range(1, 21)]
    for thread in waiting:
        thread.start()
    while len(commit._queue) < 20:  # every one queued behind the write under way
        threading.Event().wait(0.001)
    release.set()
    for thread in [lead, *waiting]:
        thread.join(10)
        assert not thread.is_alive()
    assert results == {i: i * 10 for i in range(21)}
    assert batches[0] == [0]
    assert [len(b) for b in batches[1:]] == [8, 8, 4]  # the 20 waiting, in order, max_batch at a time
    assert sorted(i for b in batches for i in b) == list(range(21))


def test_a_failed_group_write_raises_in_every_submitter_of_its_batch_and_the_next_write_goes_on() -> None:
    import threading

    from collector.ingest import GroupCommit

    calls = 0

    def write(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(OSError, match="disk full"):
        commit.submit(1)
    assert commit.submit(2) == 2
    errors: list[BaseException] = []
    threads = [threading.Thread(target=lambda i=i: errors.append(Exception()) if commit.submit(i) != i else None)
               for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert errors == []
