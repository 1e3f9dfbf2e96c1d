"""Coarser windows from consecutive closed ones: what the outbox does under pressure.

A window's *document* is what the sync payload carries besides the profile
bytes: model, time span, counters, quality, latency, budget and verdicts. When
the outbox passes its share of the database (see :mod:`edge_runtime.monitoring.store`),
the oldest windows never sent are merged: their profiles merge (sketches of any
thinning strides merge, their errors carried along), counters are summed, and the
result stands for the whole sequence range.

Examples
--------
>>> a = {"model": "m", "version": "1", "model_sha256": "00", "opened_at": 1.0, "closed_at": 2.0, "rows": 3,
...      "rejected": 1, "partial": False, "latency": None, "budget": None, "verdicts": [],
...      "quality": {"features": {"x": {"missing": 1, "out_of_range": 0}}, "rejected": {"nan": 1}, "unlogged": 0}}
>>> b = dict(a, opened_at=2.0, closed_at=3.0, rows=4, rejected=0,
...          quality={"features": {"x": {"missing": 2, "out_of_range": 1}}, "rejected": {}, "unlogged": 0})
>>> merged = merge_documents([a, b])
>>> merged["rows"], merged["rejected"], merged["opened_at"], merged["closed_at"], merged["quality"]["features"]
(7, 1, 1.0, 3.0, {'x': {'missing': 3, 'out_of_range': 1}})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge_runtime.monitoring.data_profile import Profile
from edge_runtime.monitoring.windows import latency_summary

__all__ = ["merge_documents", "merge_profiles"]

_SEVERITY = {"ok": 0, "warn": 1, "drift": 2}


def merge_profiles(profiles: Sequence[bytes]) -> Profile:
    """One profile from several profiles' bytes (of one model).

    Raises
    ------
    ValueError
        Their feature sets differ.
    """
    merged = Profile.from_bytes(profiles[0])
    for data in profiles[1:]:
        merged.merge(Profile.from_bytes(data))
    return merged


def _sum_counters(a: Any, b: Any) -> Any:
    """Numbers add up, dicts merge key by key; anything else keeps the newer value."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = _sum_counters(a[key], value) if key in a else value
        return out
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a + b
    return b


def _worst_verdicts(documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per feature, the verdict of the window where it was worst (the newer one on ties)."""
    chosen: dict[str, dict[str, Any]] = {}
    for document in documents:
        for row in document.get("verdicts") or ():
            held = chosen.get(row["name"])
            if held is None or _SEVERITY.get(row["status"], 0) >= _SEVERITY.get(held["status"], 0):
                chosen[row["name"]] = row
    return list(chosen.values())


def merge_documents(documents: Sequence[dict[str, Any]], profile: Profile | None = None) -> dict[str, Any]:
    """The document of consecutive windows (oldest first) merged into one.

    Rows, rejections and quality counters are summed; the time span covers them
    all; ``partial`` when any was; the budget state is the newest one; each
    feature keeps the verdict of the window where it was worst (the collector
    judges the merged sketches again, against the bundle's reference); the
    latency percentiles are read from the merged ``profile`` when given.
    """
    first, last = documents[0], documents[-1]
    merged = dict(last)
    opened = [d["opened_at"] for d in documents if d.get("opened_at") is not None]
    merged["opened_at"] = min(opened) if opened else None
    merged["closed_at"] = max(d["closed_at"] for d in documents)
    merged["rows"] = sum(int(d["rows"] or 0) for d in documents)
    merged["rejected"] = sum(int(d["rejected"] or 0) for d in documents)
    merged["partial"] = any(bool(d.get("partial")) for d in documents)
    quality: Any = first.get("quality")
    for document in documents[1:]:
        quality = _sum_counters(quality, document.get("quality")) if quality is not None else document.get("quality")
    merged["quality"] = quality
    merged["budget"] = next((d["budget"] for d in reversed(documents) if d.get("budget")), None)
    merged["verdicts"] = _worst_verdicts(documents)
    if profile is not None:
        merged["latency"] = latency_summary(profile)
    return merged
