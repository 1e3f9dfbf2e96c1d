"""``device init``, ``sync`` and ``sync status``: report closed windows upstream (docs/sync.md).

``device init`` and ``sync`` need the ``sync`` extra (``cryptography``); ``sync
status`` reads the database only and works without it.
"""

from __future__ import annotations

import datetime
import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge_runtime.cli.extensions import extra_missing
from edge_runtime.cli.options import db_option, json_option, library_errors

if TYPE_CHECKING:
    from edge_runtime.sync.loop import SyncRun
    from edge_runtime.sync.outbox import SyncStatus

__all__ = ["device", "sync"]


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="seconds")


@click.group()
def device() -> None:
    """This device's identity for reporting upstream."""


@device.command("init")
@click.option("--id", "device_id", required=True, help="The device's id, as the collector will know it.")
@click.option("--key-file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the private key (PEM, mode 0600); an existing file is never replaced.")
@library_errors
def device_init(device_id: str, key_file: Path) -> None:
    """Make the device's Ed25519 key pair and print its public key.

    The public key (one line, `ed25519:...`) is what the collector registers
    (`edge-runtime collector add-device ID --public-key KEY`). The private key
    never leaves the key file and is never printed.
    """
    try:
        from edge_runtime.sync.keys import DeviceKey
    except ImportError as exc:
        raise extra_missing("device init", "sync", exc) from exc
    key = DeviceKey.generate(device_id)
    key.save(key_file)
    click.echo(key.public_text)
    click.echo(f"Note: device '{device_id}': private key written to {key_file} (mode 0600); register the public "
               f"key above on the collector", err=True)


# The subcommand is optional (a bare `sync` syncs): said explicitly, as click versions render it differently.
@click.group(invoke_without_command=True, subcommand_metavar="[COMMAND] [ARGS]...")
@db_option(required=False, help="Monitoring database (SQLite) whose windows are sent; default: [monitoring] db.")
@click.option("--url", help="The collector, e.g. https://collector.example:8443.")
@click.option("--device-id", help="This device's id; must be the key file's (default: the key file's).")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help="The device's private key file.")
@click.option("--once", is_flag=True, help="One run, then exit (for a systemd timer or cron).")
@click.option("--interval", type=click.FloatRange(min=0.001), help="Seconds between runs (default 60).")
@click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path),
              help="CA certificates the collector's HTTPS certificate must chain to.")
@click.option("--max-bytes-per-run", type=click.IntRange(min=0), help="Bytes one run may send (0: no cap).")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Device config (TOML): its [sync] and [monitoring] db fill what is not given here.")
@click.pass_context
@library_errors
def sync(ctx: click.Context, db: Path | None, url: str | None, device_id: str | None, key_file: Path | None,
         once: bool, interval: float | None, ca_file: Path | None, max_bytes_per_run: int | None,
         config: Path | None) -> None:
    """Send closed windows to the fleet collector: oldest first, signed, exactly once.

    Runs until stopped (SIGTERM or Ctrl-C), every --interval seconds, backing
    off with jitter while the collector is unreachable; --once runs once and
    exits 1 when the collector could not be reached. The first run enrolls the
    database: from then on retention keeps every window until it is sent.
    `edge-runtime sync status --db PATH` shows the outbox.
    """
    if ctx.invoked_subcommand is not None:
        return
    from edge_runtime.config import RuntimeConfig, load_config

    runtime_config = load_config(config) if config is not None else RuntimeConfig()
    db = db or runtime_config.monitoring.db
    if db is None:
        raise click.ClickException("sync needs --db (or [monitoring] db in --config)")
    try:
        from edge_runtime.sync.loop import SyncLoop, settings_with
    except ImportError as exc:
        raise extra_missing("sync", "sync", exc) from exc
    settings = settings_with(runtime_config.sync, url=url, device_id=device_id, key_file=key_file,
                             interval_s=interval, ca_file=ca_file, max_bytes_per_run=max_bytes_per_run)
    loop = SyncLoop(db, settings, retention=runtime_config.retention, create=False,
                    on_run=_report_once if once else _report_busy_run)
    try:
        if once:
            run = loop.run_once()
            if run.failed:
                waiting = "1 window waits" if run.remaining == 1 else f"{run.remaining} windows wait"
                raise click.ClickException(f"the collector did not take the windows: {run.error}; "
                                           f"{waiting} in the outbox")
            return
        _stop_on_signals(loop.stop)
        loop.run()
    finally:
        loop.close()


def _windows(n: int) -> str:
    return "1 window" if n == 1 else f"{n} windows"


def _report_run(run: SyncRun, *, err: bool = True) -> None:
    if not run.leased:
        click.echo(f"another sync loop holds this database's lease; {_windows(run.remaining)} wait", err=True)
        return
    line = f"sent {_windows(run.sent_windows)} ({run.bytes_sent} bytes), {run.remaining} waiting"
    if run.dead_letters:
        line += f", {run.dead_letters} refused for good (dead letters)"
    if run.stopped == "budget":
        line += "; stopped at --max-bytes-per-run"
    elif run.failed:
        line += f"; stopped: {run.error}"
    click.echo(line, err=err)


def _report_once(run: SyncRun) -> None:
    """``sync --once``: what was sent, on stdout; a failed run is the one ``Error:`` line instead."""
    if not run.failed:
        _report_run(run, err=not run.leased)


def _report_busy_run(run: SyncRun) -> None:
    """A long-running sync reports the runs that did something or failed, not the idle ones."""
    if run.leased and not (run.sent_windows or run.dead_letters or run.stopped):
        return
    _report_run(run)


def _stop_on_signals(stop: Any) -> None:
    """SIGTERM and SIGINT stop the loop after the message in flight (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop())


@sync.command("status")
@db_option()
@json_option()
@library_errors
def sync_status(db: Path, as_json: bool) -> None:
    """Outbox depth, the last success and error, what was lost, and the dead letters."""
    from edge_runtime.monitoring.store import MonitorStore
    from edge_runtime.sync.outbox import Outbox

    store = MonitorStore(db, create=False, read_only=True)
    try:
        status = Outbox(store).status()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2))
        return
    _print_status(status)


def _print_status(status: SyncStatus) -> None:
    if status.device_id is None:
        click.echo("device: not enrolled (no sync run yet; windows follow normal retention)")
    else:
        click.echo(f"device: {status.device_id} (enrolled {_when(status.enrolled_at)})")
    oldest = f", oldest window {status.oldest_seq}" if status.oldest_seq is not None else ""
    click.echo(f"outbox: {_windows(status.outbox_windows)} waiting in {status.outbox_entries} entries "
               f"({status.outbox_bytes / 1e3:.1f} kB){oldest}")
    click.echo(f"last success: {_when(status.last_success_at)}")
    if status.last_error is None:
        click.echo("last error: none")
    else:
        state = "recovered since"
        if status.consecutive_failures:
            n = status.consecutive_failures
            state = f"{n} failed run{'s' if n != 1 else ''} in a row"
            if status.next_attempt_at is not None:
                state += f", next try {_when(status.next_attempt_at)}"
        click.echo(f"last error: {_when(status.last_error_at)}: {status.last_error} ({state})")
    click.echo(f"sent: {_windows(status.windows_sent)}, {status.bytes_sent / 1e3:.1f} kB")
    lost = ", ".join(f"{reason} {n}" for reason, n in status.losses.items())
    click.echo(f"lost: {lost or 'none'}")
    click.echo(f"dead letters: {status.dead_letters}")
    for dead in status.recent_dead_letters:
        span = f"{dead.seq_first}" if dead.seq_first == dead.seq_last else f"{dead.seq_first}-{dead.seq_last}"
        click.echo(f"  window {span}: {dead.detail} ({_when(dead.dead_at)})")
