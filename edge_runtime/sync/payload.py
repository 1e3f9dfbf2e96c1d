"""The sync wire format: a closed window's summary as signed, versioned, compressed messages.

This is the one module the device and the collector share for what travels
between them; ``docs/sync-protocol.md`` describes the same bytes for other
implementations. A message is::

    0        b"ERSYNC"                      6 bytes
    6        version                        u16 (PROTOCOL_VERSION)
    8        H = header length              u32
    12       header, UTF-8 JSON             H bytes
    12+H     B = body length                u32
    16+H     body                           B bytes: this part's slice of the document
    16+H+B   Ed25519 signature              64 bytes over bytes [0, 16+H+B)

Integers are big-endian. The *document* is zlib-compressed: a u32 JSON length, the
JSON of every :class:`WindowSummary` field but ``profile``, then the profile bytes
(DataSketches' own, in :class:`~edge_runtime.monitoring.data_profile.Profile`'s
container). A document longer than one message allows is cut into ``parts``,
each signed; the collector joins them once all have come.

Examples
--------
>>> import random
>>> from edge_runtime.sync.keys import DeviceKey
>>> key = DeviceKey.generate("kiosk-1")
>>> summary = WindowSummary(device_id="kiosk-1", database_id="db-1", model_name="m", model_version="1",
...     model_sha256="ab" * 32, seq_first=7, seq_last=7, opened_at=0.0, closed_at=60.0, rows=10,
...     rejected=0, partial=False, quality={}, latency=None, budget=None, verdicts=[], profile=random.Random(0).randbytes(5000),
...     losses={}, outbox_depth=0, boot_id="boot", sent_wall=61.0, sent_mono=5.0)
>>> messages = encode_window(summary, key, max_message_bytes=2048)
>>> len(messages) > 1
True
>>> parsed = [read_message(m) for m in messages]
>>> for message in parsed:
...     message.verify(key.public_text)
>>> assemble(parsed, check_profile=False) == summary
True
>>> read_message(messages[0][:100])
Traceback (most recent call last):
...
edge_runtime.errors.PayloadError: the message is truncated: it ends inside its header (100 bytes)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import struct
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import BundleFormatError, ConfigError, PayloadError, SyncError
from edge_runtime.sync.keys import SIGNATURE_BYTES, DeviceKey, check_device_id, verify_signature

_fast_loads: Callable[[bytes], Any] | None
try:  # the collector extra's parser: a window's document in a fifth of the standard library's time
    from orjson import loads as _fast_loads
except ImportError:  # a device never parses a document; the standard library does the same, slower
    _fast_loads = None

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAGIC",
    "PROTOCOL_VERSION",
    "Message",
    "WindowSummary",
    "assemble",
    "assemble_raw",
    "boot_id",
    "encode_window",
    "read_message",
]

MAGIC = b"ERSYNC"
PROTOCOL_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024  # the cap of the big IoT brokers' MQTT messages
MAX_PARTS = 4096
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # decompressed: a zlib bomb stops here
_PREFIX = struct.Struct(">6sHI")
_LENGTH = struct.Struct(">I")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Header keys and the types each must have.
_HEADER_TYPES: dict[str, type | tuple[type, ...]] = {
    "device": str, "database_id": str, "model_sha256": str, "seq_first": int, "seq_last": int,
    "part": int, "parts": int, "document_sha256": str, "document_bytes": int,
    "sent_wall": (int, float), "sent_mono": (int, float), "boot_id": str,
}
_COMPRESSION_LEVEL = 6
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_PROCESS_BOOT = f"process-{uuid.uuid4()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSummary:
    """What a device reports upstream for one closed window (or a merged run of them).

    Attributes
    ----------
    device_id, database_id : str
        The device, and its monitoring database (a replaced database has a new id).
    model_name, model_version, model_sha256 : str
    seq_first, seq_last : int
        The window's sequence number; a merged window covers ``seq_first..seq_last``.
    opened_at, closed_at : float
        The device's wall clock (it may be far off: the collector corrects it).
    rows, rejected : int
    partial : bool
        Closed early (at shutdown).
    quality, latency, budget : dict or None
        Data-quality counters, latency percentiles, budget state, as the device stores them.
    verdicts : list of dict
        The window's drift verdicts (``decode_verdicts`` rows).
    profile : bytes
        The window's sketches (``Profile.to_bytes()``).
    losses : dict of str to int
        Windows lost on this database so far, by reason (cumulative).
    outbox_depth : int
        Windows waiting on the device when this one was encoded.
    boot_id : str
        Which boot of the device sent it (its monotonic clock starts again at each).
    sent_wall, sent_mono : float
        The device's wall clock and monotonic clock when the message was made.
    """

    device_id: str
    database_id: str
    model_name: str
    model_version: str
    model_sha256: str
    seq_first: int
    seq_last: int
    opened_at: float
    closed_at: float
    rows: int
    rejected: int
    partial: bool
    quality: dict[str, Any]
    latency: dict[str, Any] | None
    budget: dict[str, Any] | None
    verdicts: list[dict[str, Any]]
    profile: bytes
    losses: dict[str, int]
    outbox_depth: int
    boot_id: str
    sent_wall: float
    sent_mono: float

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The idempotency key: (device, database id, model sha256, first sequence number)."""
        return (self.device_id, self.database_id, self.model_sha256, self.seq_first)

    def document(self) -> bytes:
        """The uncompressed document: JSON length, JSON of every field but the profile, the profile."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "profile"}
        text = json.dumps(fields, separators=(",", ":"), allow_nan=False).encode("utf-8")
        return _LENGTH.pack(len(text)) + text + self.profile


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed (not yet verified) message.

    Attributes
    ----------
    header : dict
        The header's fields (``device``, ``part``, ``parts``, ...).
    body : bytes
        This part's slice of the compressed document.
    signature : bytes
    signed : bytes
        The bytes the signature covers.
    """

    header: dict[str, Any]
    body: bytes
    signature: bytes
    signed: bytes

    @property
    def device_id(self) -> str:
        return str(self.header["device"])

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The window's idempotency key, as in :attr:`WindowSummary.key`."""
        h = self.header
        return (h["device"], h["database_id"], h["model_sha256"], h["seq_first"])

    def verify(self, public_text: str) -> None:
        """Raise SignatureError unless the device's key signed this message."""
        verify_signature(public_text, self.signature, self.signed)


def boot_id() -> str:
    """This boot's id (Linux's ``boot_id``), or one per process where there is none."""
    try:
        return _BOOT_ID.read_text().strip() or _PROCESS_BOOT
    except OSError:
        return _PROCESS_BOOT


def encode_window(summary: WindowSummary, key: DeviceKey, *,
                  max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[bytes]:
    """Compress, cut and sign a summary: one message, or several when it exceeds ``max_message_bytes``.

    Raises
    ------
    SyncError
        The key belongs to another device, or ``max_message_bytes`` leaves no room for a body.
    """
    if key.device_id != summary.device_id:
        raise SyncError(f"the key file is device '{key.device_id}', the window is device '{summary.device_id}'")
    document = zlib.compress(summary.document(), _COMPRESSION_LEVEL)
    base = {
        "device": summary.device_id, "database_id": summary.database_id, "model_sha256": summary.model_sha256,
        "seq_first": summary.seq_first, "seq_last": summary.seq_last,
        "document_sha256": hashlib.sha256(document).hexdigest(), "document_bytes": len(document),
        "sent_wall": summary.sent_wall, "sent_mono": summary.sent_mono, "boot_id": summary.boot_id,
    }
    # The header's size depends on the part numbers: reserve room for the widest.
    widest = len(_header_bytes({**base, "part": MAX_PARTS, "parts": MAX_PARTS}))
    room = max_message_bytes - _PREFIX.size - widest - _LENGTH.size - SIGNATURE_BYTES
    if room < 256:
        raise SyncError(f"max_message_bytes {max_message_bytes} leaves no room for a message body "
                        f"(at least {max_message_bytes - room + 256} needed)")
    parts = max(1, math.ceil(len(document) / room))
    if parts > MAX_PARTS:
        raise SyncError(f"a window of {len(document)} compressed bytes needs {parts} messages of "
                        f"{max_message_bytes} bytes, over the limit of {MAX_PARTS}")
    messages = []
    for part in range(parts):
        header = _header_bytes({**base, "part": part, "parts": parts})
        body = document[part * room:(part + 1) * room]
        signed = b"".join((_PREFIX.pack(MAGIC, PROTOCOL_VERSION, len(header)), header,
                           _LENGTH.pack(len(body)), body))
        messages.append(signed + key.sign(signed))
    return messages


def _header_bytes(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")


def read_message(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Parse a message and check its structure (not its signature: see :meth:`Message.verify`).

    Raises
    ------
    PayloadError
        ``reason`` says why: ``oversized``, ``truncated``, ``version`` or ``malformed``.
    """
    if len(data) > max_bytes:
        raise PayloadError(f"the message is {len(data)} bytes, over the limit of {max_bytes}", reason="oversized")
    if len(data) < _PREFIX.size:
        raise PayloadError(f"the message is truncated: {len(data)} bytes", reason="truncated")
    magic, version, header_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise PayloadError(f"not an edge-runtime sync message (it starts {bytes(data[:6])!r})")
    if version != PROTOCOL_VERSION:
        raise PayloadError(f"sync protocol version {version} is not supported (this side reads "
                           f"{PROTOCOL_VERSION})", reason="version")
    end = _PREFIX.size + header_length
    if end + _LENGTH.size > len(data):
        raise PayloadError(f"the message is truncated: it ends inside its header ({len(data)} bytes)",
                           reason="truncated")
    header = _parse_header(data[_PREFIX.size:end])
    (body_length,) = _LENGTH.unpack_from(data, end)
    body_end = end + _LENGTH.size + body_length
    if body_end + SIGNATURE_BYTES > len(data):
        raise PayloadError(f"the message is truncated: {len(data)} bytes, its lengths say "
                           f"{body_end + SIGNATURE_BYTES}", reason="truncated")
    if body_end + SIGNATURE_BYTES < len(data):
        raise PayloadError(f"the message has {len(data) - body_end - SIGNATURE_BYTES} bytes after its signature")
    data = bytes(data)
    return Message(header, data[end + _LENGTH.size:body_end], data[body_end:], data[:body_end])


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # as orjson: NaN and Infinity are no JSON numbers


def _loads(raw: bytes) -> Any:
    """Strict JSON from UTF-8 bytes, by orjson when installed; ValueError when it is not JSON."""
    if _fast_loads is not None:
        return _fast_loads(raw)  # its JSONDecodeError is a ValueError, invalid UTF-8 included
    return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        header = _loads(raw)
    except ValueError as exc:
        raise PayloadError(f"the message header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise PayloadError("the message header is not a JSON object")
    unknown = sorted(set(header) - set(_HEADER_TYPES))
    if unknown:  # a field this version does not define: a newer writer, or a forgery
        raise PayloadError(f"the message header has fields version {PROTOCOL_VERSION} does not define: "
                           f"{[str(k)[:40] for k in unknown[:5]]}", reason="version")
    for name, kind in _HEADER_TYPES.items():
        value = header.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise PayloadError(f"the message header's '{name}' is {value!r}, not {_type_name(kind)}")
    try:
        check_device_id(header["device"])
    except ConfigError as exc:
        raise PayloadError(f"the message header's 'device' is not a valid id: {header['device'][:64]!r}") from exc
    if not 0 <= header["part"] < header["parts"] <= MAX_PARTS:
        raise PayloadError(f"the message header's part {header['part']} of {header['parts']} is impossible")
    if not 0 <= header["seq_first"] <= header["seq_last"]:
        raise PayloadError(f"the message header's sequence range {header['seq_first']}..{header['seq_last']} "
                           "is impossible")
    if not _SHA256.fullmatch(header["document_sha256"]) or not _SHA256.fullmatch(header["model_sha256"]):
        raise PayloadError("the message header's sha256 fields are not 64 lowercase hex digits")
    return header


def _type_name(kind: type | tuple[type, ...]) -> str:
    return "a number" if isinstance(kind, tuple) else {str: "a string", int: "an integer"}.get(kind, kind.__name__)


def assemble(messages: Sequence[Message], *, check_profile: bool = True) -> WindowSummary:
    """Join all the parts of one window (verified already) into its summary.

    :func:`assemble_raw` also gives the document's JSON as received.

    Parameters
    ----------
    messages : sequence of Message
        Every part of one window, in any order.
    check_profile : bool
        Also parse the profile bytes, so a summary that is stored can be merged later.

    Raises
    ------
    PayloadError
        Parts missing or from different documents, a document that does not match its
        digest or does not decompress, or fields that do not fit.
    """
    return assemble_raw(messages, check_profile=check_profile)[0]


def assemble_raw(messages: Sequence[Message], *, check_profile: bool = True) -> tuple[WindowSummary, bytes]:
    """:func:`assemble`, and the document's JSON (every field but the profile) as the device
    signed it, UTF-8: a collector can keep that text rather than encode the fields again.

    Raises
    ------
    PayloadError
        As :func:`assemble`.
    """
    if not messages:
        raise PayloadError("no message to assemble")
    first = messages[0].header
    by_part = {m.header["part"]: m for m in messages}
    if any(m.header["document_sha256"] != first["document_sha256"] for m in messages):
        raise PayloadError("the parts come from different windows")
    missing = sorted(set(range(first["parts"])) - set(by_part))
    if missing:
        raise PayloadError(f"parts {missing[:5]} of {first['parts']} are missing", reason="truncated")
    document = b"".join(by_part[i].body for i in range(first["parts"]))
    if len(document) != first["document_bytes"] or hashlib.sha256(document).hexdigest() != first["document_sha256"]:
        raise PayloadError("the joined parts do not match the document's digest", reason="truncated")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(document, MAX_DOCUMENT_BYTES)
    except zlib.error as exc:
        raise PayloadError(f"the document does not decompress: {exc}") from exc
    if inflater.unconsumed_tail:
        raise PayloadError(f"the document decompresses past {MAX_DOCUMENT_BYTES} bytes", reason="oversized")
    summary, text = _summary_from_document(raw, first)
    if check_profile:
        from edge_runtime.monitoring.data_profile import Profile  # numpy and datasketches: only when asked

        try:
            Profile.from_bytes(summary.profile)
        except (BundleFormatError, ValueError, RuntimeError) as exc:
            raise PayloadError(f"the window's profile bytes are unreadable: {exc}") from exc
    return summary, text


def _summary_from_document(raw: bytes, header: dict[str, Any]) -> tuple[WindowSummary, bytes]:
    if len(raw) < _LENGTH.size:
        raise PayloadError("the document is empty", reason="truncated")
    (length,) = _LENGTH.unpack_from(raw)
    text = raw[_LENGTH.size:_LENGTH.size + length]
    try:
        fields = _loads(text)
    except ValueError as exc:
        raise PayloadError(f"the document's JSON is corrupt: {exc}") from exc
    if not isinstance(fields, dict):
        raise PayloadError("the document's JSON is not an object")
    names = {f.name for f in dataclasses.fields(WindowSummary)} - {"profile"}
    if set(fields) != names:
        unknown, absent = sorted(set(fields) - names), sorted(names - set(fields))
        raise PayloadError(f"the document's fields do not fit version {PROTOCOL_VERSION} "
                           f"(unknown {unknown[:5]}, missing {absent[:5]})", reason="version")
    try:
        summary = WindowSummary(profile=raw[_LENGTH.size + length:], **fields)
    except TypeError as exc:  # pragma: no cover - the field sets were compared above
        raise PayloadError(f"the document's fields do not fit: {exc}") from exc
    _check_fields(summary)
    for name, field in (("device", "device_id"), ("database_id", "database_id"),
                        ("model_sha256", "model_sha256"), ("seq_first", "seq_first"), ("seq_last", "seq_last")):
        if header[name] != getattr(summary, field):
            raise PayloadError(f"the header's {name} {header[name]!r} differs from the document's "
                               f"{getattr(summary, field)!r}")
    return summary, text


def _check_fields(summary: WindowSummary) -> None:
    """Types a collector relies on; JSON cannot enforce them."""
    checks: list[tuple[str, type | tuple[type, ...]]] = [
        ("model_name", str), ("model_version", str), ("opened_at", (int, float)), ("closed_at", (int, float)),
        ("rows", int), ("rejected", int), ("partial", bool), ("quality", dict), ("latency", (dict, type(None))),
        ("budget", (dict, type(None))), ("verdicts", list), ("losses", dict), ("outbox_depth", int),
    ]
    for name, kind in checks:
        value = getattr(summary, name)
        if not isinstance(value, kind) or (kind in (int, (int, float)) and isinstance(value, bool)):
            raise PayloadError(f"the document's '{name}' is {str(value)[:40]!r}, not of the right type")
    if summary.rows < 0 or summary.rejected < 0 or summary.outbox_depth < 0:
        raise PayloadError("the document's counts are negative")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in summary.losses.values()):
        raise PayloadError("the document's losses are not counts")
    if not all(isinstance(v, dict) for v in summary.verdicts):
        raise PayloadError("the document's verdicts are not objects")
