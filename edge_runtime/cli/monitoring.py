"""``status``, ``drift`` and ``log``: read a monitoring database through :class:`MonitoringDatabase`."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge_runtime.cli.options import db_option, json_option, library_errors

if TYPE_CHECKING:
    from edge_runtime.monitoring.reports import LatencySummary, MonitoringDatabase

__all__ = ["drift", "log_command", "status"]


def _open(db: Path) -> MonitoringDatabase:
    # Imported on use: sqlite-utils (and pandas, when installed) slow every other command's start.
    from edge_runtime.monitoring.reports import MonitoringDatabase

    return MonitoringDatabase(db)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _fmt_us(latency: LatencySummary | None) -> str:
    if latency is None:
        return "-"
    return f"p50 {latency.p50_us:.1f} / p90 {latency.p90_us:.1f} / p99 {latency.p99_us:.1f} us"


@click.command()
@db_option()
@click.option("--windows", "recent", type=click.IntRange(1), default=5, show_default=True,
              help="Recent closed windows to show.")
@json_option()
@library_errors
def status(db: Path, recent: int, as_json: bool) -> None:
    """Current window, recent windows, data quality, latency and drift status."""
    with _open(db) as database:
        report = database.status(recent)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"decision log: {report.decisions} rows, database {report.database_bytes / 1e6:.2f} MB")
    for current in report.open_windows:  # one per writer with a window open
        seq = current.seq if current.seq is not None else "(not yet numbered)"
        click.echo(f"open window {seq} of writer {current.writer}: {current.rows} rows, {current.rejected} "
                   f"rejected, latency {_fmt_us(current.latency)}")
        budget = current.budget
        if budget:
            click.echo(f"budget: level {budget['level']}, latency {_fmt(budget['latency_ms'], ' ms')}, "
                       f"cpu share {_fmt(budget['cpu_share'])}, rss {_fmt(budget['rss_mb'], ' MB')}, "
                       f"violations {budget['violations'] or 'none'}")
    for w in report.windows:
        drifted = (", ".join(w.summary.drifted) or "none") if w.summary.assessed else "not assessed"
        level = f", budget level {w.budget['level']}" if w.budget else ""
        prediction = w.summary.prediction if w.summary.assessed else "-"
        click.echo(f"window {w.seq}: {w.rows} rows{' (partial)' if w.partial else ''}, "
                   f"{w.rejected} rejected, latency {_fmt_us(w.latency)}, drift: {drifted}, "
                   f"prediction: {prediction}{level}")
    if report.quality:
        click.echo("data quality (recent windows): " + ", ".join(f"{k} {v}" for k, v in report.quality.items()))
    if report.features:
        click.echo("latest drift status:")
        for name, entry in report.features.items():
            threshold = f"{entry.threshold:.4f}" if entry.threshold is not None else "unreachable"
            click.echo(f"  {name}: {entry.status.value} ({entry.metric} {entry.value:.4f}, threshold {threshold})")
    for event in report.events:
        click.echo(f"event: window {event.window_seq} {event.status}: {event.message}")


@click.command()
@db_option()
@json_option()
@library_errors
def drift(db: Path, as_json: bool) -> None:
    """Per closed window: its rows and every feature's drift verdict."""
    with _open(db) as database:
        report = database.drift()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    if not report.windows:
        click.echo("no closed window yet")
    for w in report.windows:
        by_status: dict[str, list[str]] = {"drift": [], "warn": [], "ok": []}
        for name, verdict in w.features.items():
            by_status[verdict.status.value].append(f"{name} ({verdict.metric} {verdict.value:.3f})")
        prediction = w.prediction.status.value if w.prediction else "-"
        if w.prediction and w.prediction.status.value != "ok":  # name the signal that fired
            prediction += f" ({w.prediction.metric} {w.prediction.value:.3f})"
        click.echo(f"window {w.index}: {w.rows} rows{' (partial)' if w.partial else ''}; "
                   f"prediction {prediction}")
        if not w.features:
            click.echo("  (no reference profile in the bundle: not assessed)")
            continue
        if w.multivariate is not None:  # the PCA reconstruction error, when the bundle has its model
            mv = w.multivariate
            threshold = f"{mv.threshold:.3f}" if math.isfinite(mv.threshold) else "none"
            click.echo(f"  multivariate: {mv.status.value} (mean reconstruction error {mv.value:.3f}, "
                       f"threshold {threshold})")
        click.echo(f"  drift: {', '.join(by_status['drift']) or 'none'}")
        click.echo(f"  warn:  {', '.join(by_status['warn']) or 'none'}")
        click.echo(f"  ok:    {len(by_status['ok'])} features")


@click.command("log")
@db_option()
@click.option("--tail", "tail_rows", type=click.IntRange(1), default=20, show_default=True,
              help="How many of the most recent decisions to show.")
@json_option("Print JSON lines.")
@library_errors
def log_command(db: Path, tail_rows: int, as_json: bool) -> None:
    """The most recent decisions of the decision log."""
    with _open(db) as database:
        decisions = database.tail(tail_rows)
    if as_json:
        for decision in decisions:
            click.echo(json.dumps(decision.to_dict()))
        return
    click.echo(f"{'request_id':>10}  {'time (UTC)':<29}  {'model':<20}  {'prediction':<12}  {'score':>7}  "
               f"{'latency_us':>10}  input_hash")
    for d in decisions:
        when = datetime.datetime.fromtimestamp(d.ts, datetime.timezone.utc).isoformat(timespec="milliseconds")
        click.echo(f"{d.request_id:>10}  {when:<29}  {d.model + ':' + d.version:<20}  "
                   f"{d.prediction:<12}  {d.score:>7.4f}  {d.latency_us:>10.1f}  {d.input_hash}")
