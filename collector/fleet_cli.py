"""``edge-runtime fleet status`` and ``fleet drift``: open a fleet store, call the view, format it.

Its ``edge_runtime.commands`` entry point is ``fleet = "collector.fleet_cli:fleet_command"``
(the ``collector`` extra). The views are pure functions
(:mod:`collector.fleet_status`, :mod:`collector.fleet_drift`); this module parses the
options, reads the store and formats the reports (``--json``: their ``to_dict()``).
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click

from collector.fleet_drift import DeviceDrift, FleetBucket, FleetDrift, matches_model, query_fleet_drift
from collector.fleet_status import FleetStatus, fleet_status
from collector.stores import FleetStore, open_store
from edge_runtime.cli.options import json_option, library_errors
from edge_runtime.errors import ConfigError
from edge_runtime.monitoring.drift import FeatureDrift

__all__ = ["fleet_command", "format_fleet_drift", "format_fleet_status", "parse_duration", "parse_since"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_LONGEST = 100 * 365.25 * 86400.0  # past this a time bucket overflows the clock's range
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``30m``, ``1h``, ``2d``, ``1w`` or a plain number of seconds.

    >>> parse_duration("1h"), parse_duration("15m"), parse_duration("90")
    (3600.0, 900.0, 90.0)
    """
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match is not None else 0.0
    if not 0 < seconds <= _LONGEST:
        raise ConfigError(f"'{text}' is not a duration of up to 100 years; use e.g. 15m, 1h, 2d or a number "
                          "of seconds")
    return seconds


def parse_since(text: str, now: float) -> float:
    """Epoch seconds from an ISO 8601 time (UTC unless it says otherwise), epoch seconds, or a
    duration back from ``now`` (``2h``: two hours ago).

    >>> parse_since("2026-11-30T10:00:00Z", 0.0), parse_since("2h", 10_000.0), parse_since("1800000000", 0.0)
    (1796032800.0, 2800.0, 1800000000.0)
    """
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value > 1e6:  # a plain number this large is a time, not a duration in seconds
            return value
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"'{text}' is not a time; use ISO 8601 (2026-11-30T10:00Z), epoch seconds, "
                          f"or a duration back from now (2h)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if abs(value) < 0.05:
        value = 0.0  # no "-0.0s" for a skew of a few milliseconds
    sign = "+" if signed and value >= 0 else ""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(value) >= size:
            return f"{sign}{value / size:.1f}{unit}"
    return f"{sign}{value:.1f}s"


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# ------------------------------------------------------------------ text
def format_fleet_status(report: FleetStatus) -> str:
    """The status table: one line per device."""
    if not report.devices:
        return "no device registered and no window stored"
    header = (f"{'device':<20} {'last seen (UTC)':<20} {'windows':>7} {'sync lag':>8} {'outbox':>6} "
              f"{'lost':>5} {'skew':>8} {'budget':>6} {'drift':>5}")
    lines = [header]
    for d in report.devices:
        name = d.device_id + (" (removed)" if d.removed else "" if d.registered else " (unregistered)")
        lines.append(f"{name:<20} {_when(d.last_seen):<20} {d.windows:>7} {_seconds(d.sync_lag):>8} "
                     f"{'-' if d.outbox_depth is None else d.outbox_depth:>6} {d.loss_count:>5} "
                     f"{_seconds(d.clock_skew, signed=True):>8} {sum(d.budget_violations.values()):>6} "
                     f"{d.drift_windows:>5}")
    return "\n".join(lines)


def _verdict(verdict: FeatureDrift) -> str:
    return f"{verdict.metric} {verdict.value:.3f}"


def _driver(d: DeviceDrift) -> str:
    own = f"{_verdict(d.verdict)} {d.verdict.status.value}, " if d.verdict is not None else ""
    return f"{d.device_id}: {own}{d.local_flagged} of {d.windows} windows flagged locally"


def _bucket_lines(bucket: FleetBucket) -> list[str]:
    drifted = (f"{len(bucket.drifted_devices)} of {_count(len(bucket.devices), 'device')}"
               + (f" ({', '.join(bucket.drifted_devices[:5])}{', ...' if len(bucket.drifted_devices) > 5 else ''})"
                  if bucket.drifted_devices else ""))
    prediction = bucket.prediction.status.value if bucket.prediction else "-"
    if bucket.prediction and bucket.prediction.status.value != "ok":
        prediction += f" ({_verdict(bucket.prediction)})"
    span = f"{_when(bucket.start)} .. {_when(bucket.end)}"
    lines = [f"{bucket.model} {bucket.version} ({bucket.model_sha256[:12]}) {span}: {bucket.windows} windows from "
             f"{_count(len(bucket.devices), 'device')}, {bucket.rows:,} rows; drifted locally: {drifted}; "
             f"prediction {prediction}"]
    if bucket.unreadable:
        lines.append(f"  ({bucket.unreadable} windows with an unreadable profile left out)")
    by_status: dict[str, list[str]] = {"drift": [], "warn": [], "ok": []}
    for name, verdict in bucket.features.items():
        by_status[verdict.status.value].append(name)
    for status in ("drift", "warn"):
        if not by_status[status]:
            lines.append(f"  {status + ':':<6} none")
            continue
        lines.append(f"  {status + ':':<6} " + ", ".join(f"{n} ({_verdict(bucket.features[n])})"
                                                         for n in by_status[status]))
    lines.append(f"  {'ok:':<6} {len(by_status['ok'])} features")
    for signal, drivers in bucket.drivers.items():
        named = "; ".join(_driver(d) for d in drivers[:5]) or "no single device"
        more = f"; and {len(drivers) - 5} more" if len(drivers) > 5 else ""
        judged = sum(d.judged for d in drivers)
        # Said only when some were not: the rest are ranked by their windows' own verdicts.
        note = f" ({judged} of {len(drivers)} judged on their merged windows)" if judged < len(drivers) else ""
        lines.append(f"  {signal} driven by {named}{more}{note}")
    return lines


def format_fleet_drift(report: FleetDrift) -> str:
    """Per model version and bucket: the verdicts, who contributed, who drove what; then unassessed models."""
    lines: list[str] = []
    for bucket in report.buckets:
        lines += _bucket_lines(bucket)
    for model in report.unassessed:
        lines.append(f"{model.model} {model.version} ({model.model_sha256[:12]}): not assessed: {model.reason} "
                     f"({_count(model.windows, 'window')} from {_count(len(model.devices), 'device')})")
    return "\n".join(lines) if lines else "no window in range"


# ------------------------------------------------------------------ commands
def _check_model(store: FleetStore, model: str) -> None:
    """A --model that names no model the store knows is an error, not an empty report."""
    name, _, version = model.partition(":")
    known = store.models()
    if any((m.name == name and (not version or m.version == version))
           or (len(model) >= 8 and m.sha256.startswith(model.lower())) for m in known):
        return
    if any(matches_model(w, model) for w in store.windows(with_profile=False)):
        return  # windows of a model never registered (add-model) still count
    names = sorted({f"{m.name}:{m.version}" for m in known})
    raise ConfigError(f"--model '{model}' matches no model in the store (registered: "
                      f"{', '.join(names[:10]) or 'none'}); give NAME, NAME:VERSION or a sha256 (8+ digits)")


@contextmanager
def _store(url: str) -> Iterator[FleetStore]:
    store = open_store(url, create=False)
    try:
        yield store
    finally:
        store.close()


_store_option = click.option("--store", "store_url", required=True, metavar="URL",
                             help="Fleet store: sqlite:///fleet.db or postgresql://USER@HOST:PORT/DB.")


@click.group("fleet")
def fleet_command() -> None:
    """Fleet views over a collector's store: device status and fleet-wide drift."""


@fleet_command.command("status")
@_store_option
@json_option()
@library_errors
def status_command(store_url: str, as_json: bool) -> None:
    """Per device: last seen, windows, sync lag, outbox depth, losses, clock skew, budget, drift."""
    with _store(store_url) as store:
        report = fleet_status(store.devices(), store.windows(with_profile=False), time.time(),
                              clock_offsets=store.clock_offsets())
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_fleet_status(report))


@fleet_command.command("drift")
@_store_option
@click.option("--model", metavar="NAME", help="Only this model: NAME, NAME:VERSION or its sha256.")
@click.option("--since", metavar="T", help="Only windows closed since T: ISO 8601, epoch seconds, or 2h (ago).")
@click.option("--bucket", default="1h", show_default=True, metavar="DURATION",
              help="Time bucket of the merge: 15m, 1h, 1d, ...")
@json_option()
@library_errors
def drift_command(store_url: str, model: str | None, since: str | None, bucket: str, as_json: bool) -> None:
    """Merge every device's windows per model version and time bucket; judge them against the reference."""
    bucket_seconds = parse_duration(bucket)
    start = parse_since(since, time.time()) if since is not None else None
    with _store(store_url) as store:
        if model is not None:
            _check_model(store, model)
        report = query_fleet_drift(store, bucket_seconds=bucket_seconds, model=model, since=start)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_fleet_drift(report))
