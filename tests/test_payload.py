"""The sync wire format and device keys, on a real closed window's summary."""

from __future__ import annotations

import json
import math
import random
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.errors import ConfigError, PayloadError, SignatureError, SyncError
from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.sync.keys import DeviceKey, parse_public_key, verify_signature
from edge_runtime.sync.payload import (
    DEFAULT_MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    WindowSummary,
    assemble,
    encode_window,
    read_message,
)


@pytest.fixture(scope="module")
def window(monitored_window: dict[str, Any]) -> dict[str, Any]:
    """A real 200-row window of the 30-feature cancer model, with its verdicts (tests/conftest.py)."""
    return monitored_window


def summary_of(window: dict[str, Any], **changes: Any) -> WindowSummary:
    fields: dict[str, Any] = dict(
        device_id="kiosk-1", database_id=window["database_id"], model_name=window["model"],
        model_version=window["version"], model_sha256=window["model_sha256"], seq_first=window["seq"],
        seq_last=window["seq"], opened_at=window["opened_at"], closed_at=window["closed_at"], rows=window["rows"],
        rejected=window["rejected"], partial=bool(window["partial"]), quality=window["quality"],
        latency=window["latency"], budget=window["budget"],
        verdicts=window["verdicts"],
        profile=window["profile"], losses={"outbox_full": 2}, outbox_depth=3, boot_id="b-1", sent_wall=1.5e9,
        sent_mono=12.25)
    fields.update(changes)
    return WindowSummary(**fields)


@pytest.fixture(scope="module")
def key() -> DeviceKey:
    return DeviceKey.generate("kiosk-1")


def test_a_real_window_round_trips_in_one_signed_message(window: dict[str, Any], key: DeviceKey) -> None:
    summary = summary_of(window)
    [message] = encode_window(summary, key)
    assert len(message) < DEFAULT_MAX_MESSAGE_BYTES
    parsed = read_message(message)
    parsed.verify(key.public_text)
    assert parsed.header["part"] == 0 and parsed.header["parts"] == 1
    assert parsed.key == summary.key == ("kiosk-1", window["database_id"], window["model_sha256"], window["seq"])
    back = assemble([parsed])
    assert back == summary
    assert Profile.from_bytes(back.profile).rows == 200
    assert back.verdicts and {"name", "status", "metric"} <= set(back.verdicts[0])


def test_a_window_too_big_for_one_message_is_split_and_joins_in_any_order(window: dict[str, Any],
                                                                          key: DeviceKey) -> None:
    summary = summary_of(window)
    messages = encode_window(summary, key, max_message_bytes=4096)
    assert len(messages) > 3 and all(len(m) <= 4096 for m in messages)
    parsed = [read_message(m, max_bytes=4096) for m in messages]
    for message in parsed:
        message.verify(key.public_text)
    random.Random(0).shuffle(parsed)
    assert assemble(parsed) == summary
    with pytest.raises(PayloadError, match=r"parts \[\d+\] of \d+ are missing") as missing:
        assemble(parsed[1:])
    assert missing.value.reason == "truncated"


def test_every_byte_is_signed(window: dict[str, Any], key: DeviceKey) -> None:
    [message] = encode_window(summary_of(window), key)
    rng = random.Random(1)
    for _ in range(50):
        at = rng.randrange(len(message) - 64)
        altered = bytearray(message)
        altered[at] ^= 0x01
        try:
            parsed = read_message(bytes(altered))
        except PayloadError:
            continue  # the structure broke first: refused all the same
        with pytest.raises(SignatureError):
            parsed.verify(key.public_text)
    other = DeviceKey.generate("kiosk-1")
    with pytest.raises(SignatureError, match="does not match"):
        read_message(message).verify(other.public_text)


@pytest.mark.parametrize(("cut", "reason"), [(3, "truncated"), (40, "truncated"), (-1, "truncated")])
def test_truncated_messages_are_refused_with_a_reason(window: dict[str, Any], key: DeviceKey, cut: int,
                                                      reason: str) -> None:
    [message] = encode_window(summary_of(window), key)
    with pytest.raises(PayloadError, match="truncated") as caught:
        read_message(message[:cut])
    assert caught.value.reason == reason


def test_oversized_foreign_and_future_messages_are_refused(window: dict[str, Any], key: DeviceKey) -> None:
    [message] = encode_window(summary_of(window), key)
    with pytest.raises(PayloadError, match=r"over the limit of 1000") as oversized:
        read_message(message, max_bytes=1000)
    assert oversized.value.reason == "oversized"
    with pytest.raises(PayloadError, match="not an edge-runtime sync message") as foreign:
        read_message(b"GET / HTTP/1.1\r\n\r\n")
    assert foreign.value.reason == "malformed"
    future = message[:6] + struct.pack(">H", PROTOCOL_VERSION + 1) + message[8:]
    with pytest.raises(PayloadError, match=f"version {PROTOCOL_VERSION + 1} is not supported") as version:
        read_message(future)
    assert version.value.reason == "version"
    with pytest.raises(PayloadError, match="bytes after its signature"):
        read_message(message + b"\x00")


def _resigned(header: dict[str, Any], body: bytes, key: DeviceKey) -> bytes:
    raw = json.dumps(header).encode()
    signed = b"ERSYNC" + struct.pack(">HI", PROTOCOL_VERSION, len(raw)) + raw + struct.pack(">I", len(body)) + body
    return signed + key.sign(signed)


def test_a_signed_message_with_bad_fields_is_refused(window: dict[str, Any], key: DeviceKey) -> None:
    """A device with a valid key can still send nonsense: the structure is checked after the signature."""
    [message] = encode_window(summary_of(window), key)
    good = read_message(message)
    bad_header = dict(good.header, parts=0)
    with pytest.raises(PayloadError, match="part 0 of 0 is impossible"):
        read_message(_resigned(bad_header, good.body, key))
    with pytest.raises(PayloadError, match=r"fields version 1 does not define: \['extra'\]") as unknown:
        read_message(_resigned(dict(good.header, extra=1), good.body, key))
    assert unknown.value.reason == "version"
    with pytest.raises(PayloadError, match=r"'seq_first' is '7', not an integer"):
        read_message(_resigned(dict(good.header, seq_first="7"), good.body, key))
    # A document that is not zlib, with a digest that matches it.
    import hashlib

    junk = b"not zlib at all"
    header = dict(good.header, document_sha256=hashlib.sha256(junk).hexdigest(), document_bytes=len(junk))
    with pytest.raises(PayloadError, match="does not decompress"):
        assemble([read_message(_resigned(header, junk, key))])
    # A zlib bomb: a small document that inflates past the limit.
    bomb = zlib.compress(b"\x00" * (65 * 1024 * 1024), 9)
    header = dict(good.header, document_sha256=hashlib.sha256(bomb).hexdigest(), document_bytes=len(bomb))
    with pytest.raises(PayloadError, match="decompresses past") as caught:
        assemble([read_message(_resigned(header, bomb, key), max_bytes=1 << 20)])
    assert caught.value.reason == "oversized"


def test_the_document_must_agree_with_its_header(window: dict[str, Any], key: DeviceKey) -> None:
    summary = summary_of(window)
    [message] = encode_window(summary, key)
    good = read_message(message)
    with pytest.raises(PayloadError, match="header's seq_first 99 differs"):
        assemble([read_message(_resigned(dict(good.header, seq_first=99, seq_last=99), good.body, key))])
    bad = summary_of(window, rows=-1)
    with pytest.raises(PayloadError, match="counts are negative"):
        assemble([read_message(encode_window(bad, key)[0])])
    garbled = summary_of(window, profile=b"ERPF garbage")
    with pytest.raises(PayloadError, match="profile bytes are unreadable"):
        assemble([read_message(encode_window(garbled, key)[0])])


def test_a_key_signs_only_its_own_device(window: dict[str, Any]) -> None:
    with pytest.raises(SyncError, match="the key file is device 'other', the window is device 'kiosk-1'"):
        encode_window(summary_of(window), DeviceKey.generate("other"))
    with pytest.raises(SyncError, match="leaves no room"):
        encode_window(summary_of(window), DeviceKey.generate("kiosk-1"), max_message_bytes=300)


def test_key_files(tmp_path: Path) -> None:
    key = DeviceKey.generate("gw-1")
    path = tmp_path / "gw.key"
    key.save(path)
    text = path.read_text()
    assert text.startswith("edge-runtime-device-id: gw-1\n-----BEGIN PRIVATE KEY-----")
    assert path.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in repr(key) and key.public_text in repr(key)
    with pytest.raises(ConfigError, match="exists already"):
        DeviceKey.generate("gw-1").save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mode 0600: no warning
        assert DeviceKey.load(path).public_text == key.public_text
    path.chmod(0o644)
    with pytest.warns(RuntimeWarning, match=r"can be read by other users \(mode 0644\): whoever reads it can "
                                            r"sign as device 'gw-1'; chmod 600 "):
        assert DeviceKey.load(path).public_text == key.public_text  # used all the same
    (tmp_path / "bare.pem").write_text(text.split("\n", 1)[1])
    with pytest.raises(ConfigError, match="has no 'edge-runtime-device-id: ID' first line"):
        DeviceKey.load(tmp_path / "bare.pem")
    (tmp_path / "junk.key").write_text("edge-runtime-device-id: gw-1\nnot pem\n")
    with pytest.raises(ConfigError, match="holds no readable unencrypted PEM private key"):
        DeviceKey.load(tmp_path / "junk.key")
    with pytest.raises(ConfigError, match="cannot read the key file"):
        DeviceKey.load(tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="device id 'a b' is not valid"):
        DeviceKey.generate("a b")


def test_public_key_text(tmp_path: Path) -> None:
    key = DeviceKey.generate("gw-1")
    parse_public_key(key.public_text)
    for bad in ["", "ed25519:", "ed25519:AAAA", "rsa:" + key.public_text[8:], key.public_text + "=="]:
        with pytest.raises(ConfigError, match="is not an Ed25519 key written 'ed25519:<base64 of 32 bytes>'"):
            parse_public_key(bad)
    with pytest.raises(SignatureError):
        verify_signature(key.public_text, b"\x00" * 64, b"data")


KEPT = Path(__file__).parent / "data" / "sync"


@pytest.mark.parametrize("version", range(1, PROTOCOL_VERSION + 1))
def test_a_kept_message_of_every_released_version_still_reads(version: int) -> None:
    """Kept examples (docs/sync-protocol.md) are made once per version and never regenerated."""
    facts = json.loads((KEPT / f"v{version}.json").read_text())
    parts = [read_message((KEPT / f"v{version}-part{i}.bin").read_bytes()) for i in range(facts["parts"])]
    for part in parts:
        part.verify(facts["public_key"])
    summary = assemble(parts[::-1])
    assert summary.key == (facts["device_id"], facts["database_id"], facts["model_sha256"], facts["seq_first"])
    profile = Profile.from_bytes(summary.profile)
    assert summary.rows == profile.rows == facts["rows"] and len(profile.features) == facts["features"]
    assert len(summary.verdicts) == facts["verdicts"]


@pytest.mark.parametrize("parser", ["orjson", "standard library"])
def test_both_json_parsers_read_the_same_and_refuse_the_same(window: dict[str, Any], key: DeviceKey, parser: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector parses with orjson (its extra) or, without it, the standard library: same answers."""
    import hashlib

    from edge_runtime.sync import payload

    if parser == "orjson":
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(payload, "_fast_loads", None)
    summary = summary_of(window)
    [message] = encode_window(summary, key)
    good = read_message(message)
    assert assemble([good]) == summary
    # NaN is no JSON number: a signed document holding one is refused by either parser.
    text = json.dumps({"rows": math.nan}).encode()
    document = zlib.compress(struct.pack(">I", len(text)) + text)
    header = dict(good.header, document_sha256=hashlib.sha256(document).hexdigest(), document_bytes=len(document))
    with pytest.raises(PayloadError, match="the document's JSON is corrupt"):
        assemble([read_message(_resigned(header, document, key))])
    raw = json.dumps(good.header).encode().replace(b'"kiosk-1"', b'"kiosk-\xff"')
    signed = b"ERSYNC" + struct.pack(">HI", PROTOCOL_VERSION, len(raw)) + raw + struct.pack(">I", 0)
    with pytest.raises(PayloadError, match="the message header is not JSON"):
        read_message(signed + key.sign(signed))
