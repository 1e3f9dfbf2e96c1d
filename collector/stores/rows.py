"""The column layout both SQL stores share, and the conversion of a window to and from a row.

JSON documents are stored as text written by :func:`json.dumps` (NaN survives, key
order is kept), so a window reads back equal to the one written, on either database.
The ``verdicts`` column holds either the verdicts' JSON list or, for a window ingested
from the wire, the window's whole JSON document as the device signed it (an object,
whose ``"verdicts"`` they are): ~20 KB that ingest stores without encoding them again.
The ``signals`` column holds the verdicts in brief (:func:`~collector.stores.base.local_signals`,
``{"f00": [0, 0.41], ...}``, ~500 bytes at 30 features), part of the light read; a light
read parses it only when a view asks for it (most buckets never do).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from collector.stores.base import (
    ClockOffset,
    DeviceRecord,
    ModelRecord,
    PendingPart,
    StoredWindow,
    WindowKey,
    local_signals,
)

__all__ = ["CLOCK_COLUMNS", "DEVICE_COLUMNS", "LIGHT_WINDOW_COLUMNS", "MODEL_COLUMNS", "PART_COLUMNS",
           "WINDOW_COLUMNS", "clock_from_row", "device_from_row", "light_window_from_row", "model_from_row", "model_to_row", "part_from_row", "part_to_row", "signals_text",
           "window_from_row", "window_to_row", "with_corrected_close"]

WINDOW_COLUMNS = (
    "device_id", "database_id", "model_sha256", "seq_first", "model_name", "model_version", "seq_last",
    "opened_at", "closed_at", "corrected_closed_at", "received_at", "rows", "rejected", "partial",
    "quality", "latency", "budget", "verdicts", "profile", "losses", "outbox_depth", "boot_id", "drift_count",
    "signals",
)
_CORRECTED = WINDOW_COLUMNS.index("corrected_closed_at")
_JSON = {"quality", "latency", "budget", "verdicts", "losses"}
# The views' light read: every column but the two big ones (~50 KB of profile, ~20 KB of verdicts).
LIGHT_WINDOW_COLUMNS = tuple(c for c in WINDOW_COLUMNS if c not in ("profile", "verdicts"))
DEVICE_COLUMNS = ("device_id", "public_key", "added_at", "last_seen", "removed")
MODEL_COLUMNS = ("sha256", "name", "version", "reference_profile", "manifest", "added_at")
PART_COLUMNS = ("device_id", "database_id", "model_sha256", "seq_first", "document_sha256", "part", "parts",
                "message", "received_at")
CLOCK_COLUMNS = ("device_id", "boot_id", "clock_offset", "skew", "samples", "updated_at")


_fast_dumps: Callable[[Any], bytes] | None
try:  # the collector extra's encoder: a received window's columns in a tenth of the standard library's time
    from orjson import dumps as _fast_dumps
except ImportError:  # pragma: no cover - the collector extra installs it
    _fast_dumps = None


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _dump_parsed(value: Any) -> str | None:
    """:func:`_dump` of a value parsed from strict JSON (no NaN or infinity, string keys), by
    orjson when installed: it writes such values as the standard library does, but would
    write a NaN as null."""
    if value is None or _fast_dumps is None:
        return _dump(value)
    return str(_fast_dumps(value), "utf-8")


_SIGNAL_KEYS: dict[str, str] = {}  # a signal's name as a key of the signals' JSON text, by name


class _SignalsText(Mapping[str, tuple[int, float]]):
    """The ``signals`` column's text, parsed on first use: a light read of 10,000 windows
    would otherwise spend ~0.2 s parsing what only a flagged bucket's windows need."""

    __slots__ = ("_parsed", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._parsed: dict[str, tuple[int, float]] | None = None

    def _signals(self) -> dict[str, tuple[int, float]]:
        if self._parsed is None:
            self._parsed = {name: (int(rank), float(severity))
                            for name, (rank, severity) in json.loads(self._text).items()}
        return self._parsed

    def __getitem__(self, name: str) -> tuple[int, float]:
        return self._signals()[name]

    def get(self, name: str, default: Any = None) -> Any:
        """One signal, found in the text unparsed (a flagged bucket asks each of its windows for one
        or two): the text is ``_dump``'s, a key is ``json.dumps(name)`` right after ``{`` or ``,``
        (a quote inside a name is escaped, so never follows either), its value ``[rank,severity]``."""
        if self._parsed is not None:
            return self._parsed.get(name, default)
        key = _SIGNAL_KEYS.get(name)
        if key is None:
            if len(_SIGNAL_KEYS) > 4096:
                _SIGNAL_KEYS.clear()
            key = _SIGNAL_KEYS[name] = json.dumps(name) + ":["
        at = self._text.find(key)
        while at > 0 and self._text[at - 1] not in "{,":
            at = self._text.find(key, at + 1)
        if at <= 0:
            return default
        start = at + len(key)
        rank, severity = self._text[start:self._text.index("]", start)].split(",")
        return (int(rank), float(severity))

    def __iter__(self) -> Iterator[str]:
        return iter(self._signals())

    def __len__(self) -> int:
        return len(self._signals())

    def __repr__(self) -> str:
        return repr(self._signals())


def signals_text(verdicts_text: str | bytes) -> str:
    """The ``signals`` column of a window from its ``verdicts`` column (a store's upgrade backfills it so)."""
    verdicts = json.loads(verdicts_text)
    if isinstance(verdicts, dict):  # the document as received
        verdicts = verdicts.get("verdicts") or []
    return _dump(local_signals(verdicts)) or "{}"


def window_to_row(window: StoredWindow, document_json: bytes | None = None) -> tuple[Any, ...]:
    """The row of ``window``; with ``document_json`` (its document as received), that text
    in the ``verdicts`` column instead of the verdicts encoded again."""
    # A window received whole (with its document) holds only what strict JSON parsed, and the
    # signals derived from it, whose severities are finite.
    dump = _dump if document_json is None else _dump_parsed
    values = []
    for name in WINDOW_COLUMNS:
        value = getattr(window, name)
        if name == "verdicts" and document_json is not None:
            value = document_json.decode("utf-8")
        elif name in _JSON:
            value = dump(value)
        elif name == "partial":
            value = bool(value)
        elif name == "profile":
            value = bytes(value)
        elif name == "signals":
            # A window handed over with its document but no verdicts decoded: the brief comes from the document.
            value = dump(dict(value)) if value or document_json is None else signals_text(document_json)
        values.append(value)
    return tuple(values)


def with_corrected_close(row: tuple[Any, ...], corrected_closed_at: float) -> tuple[Any, ...]:
    """``row`` (from :func:`window_to_row`) with its ``corrected_closed_at`` set."""
    return (*row[:_CORRECTED], corrected_closed_at, *row[_CORRECTED + 1:])


def window_from_row(row: Sequence[Any]) -> StoredWindow:
    fields: dict[str, Any] = {}
    for name, value in zip(WINDOW_COLUMNS, row):
        if name in _JSON:
            value = None if value is None else json.loads(value)
            if name == "verdicts" and isinstance(value, dict):  # the document as received
                value = value["verdicts"]
        elif name == "partial":
            value = bool(value)
        elif name == "profile":
            value = bytes(value)
        elif name == "signals":
            value = _SignalsText(value)
        fields[name] = value
    return StoredWindow(**fields)


def light_window_from_row(row: Sequence[Any]) -> StoredWindow:
    """A window read without its profile and verdicts (``LIGHT_WINDOW_COLUMNS``): both empty."""
    fields: dict[str, Any] = {"profile": b"", "verdicts": []}
    for name, value in zip(LIGHT_WINDOW_COLUMNS, row):
        if name in _JSON:
            value = None if value is None else json.loads(value)
        elif name == "partial":
            value = bool(value)
        elif name == "signals":
            value = _SignalsText(value)
        fields[name] = value
    return StoredWindow(**fields)


def device_from_row(row: Sequence[Any]) -> DeviceRecord:
    device_id, public_key, added_at, last_seen, removed = row
    return DeviceRecord(device_id=device_id, public_key=public_key, added_at=added_at, last_seen=last_seen,
                        removed=bool(removed))


def model_to_row(model: ModelRecord) -> tuple[Any, ...]:
    return (model.sha256, model.name, model.version, bytes(model.reference_profile), _dump(model.manifest),
            model.added_at)


def model_from_row(row: Sequence[Any]) -> ModelRecord:
    sha256, name, version, profile, manifest, added_at = row
    return ModelRecord(sha256=sha256, name=name, version=version, reference_profile=bytes(profile),
                       manifest=json.loads(manifest), added_at=added_at)


def part_to_row(part: PendingPart) -> tuple[Any, ...]:
    key = part.key
    return (key.device_id, key.database_id, key.model_sha256, key.seq_first, part.document_sha256, part.part,
            part.parts, bytes(part.message), part.received_at)


def part_from_row(row: Sequence[Any]) -> PendingPart:
    device_id, database_id, model_sha256, seq_first, document_sha256, number, parts, message, received_at = row
    return PendingPart(key=WindowKey(device_id, database_id, model_sha256, seq_first), document_sha256=document_sha256,
                       part=number, parts=parts, message=bytes(message), received_at=received_at)


def clock_from_row(row: Sequence[Any]) -> ClockOffset:
    device_id, boot_id, offset, skew, samples, updated_at = row
    return ClockOffset(device_id=device_id, boot_id=boot_id, offset=offset, skew=skew, samples=samples,
                       updated_at=updated_at)
