"""The sync loop: send the outbox oldest first, record what became of each window, back off on failure.

One run (:func:`sync_once`) takes the database's lease (one sync loop per
database, whatever the number of processes), then for each outbox entry,
oldest first: builds its :class:`~edge_runtime.sync.payload.WindowSummary` from
the stored window (nothing was encoded when it closed), signs it into one or
more messages, marks it attempted (from then on it is never merged), and sends
them. Then:

- every part answered ``SENT``: the entry leaves the outbox;
- ``PERMANENT`` (a 4xx other than authentication): the entry goes to the dead
  letters, counted as lost, and the run goes on with the next one;
- ``AUTH`` or ``RETRY`` (401/403, 5xx, timeouts, refused connections): the run
  stops, the error is recorded, and the loop waits a random time in
  ``[0, min(backoff_max_s, backoff_base_s * 2**failures)]`` (full jitter).

A run also stops once it would send more than ``max_bytes_per_run`` (its first
message always goes). :class:`SyncLoop` repeats runs every ``interval_s`` in the
foreground (``edge-runtime sync``) or in a background thread of a long-running
command; a failing run is recorded and retried, never raised into the serving
thread.

Examples
--------
>>> from edge_runtime.sync.loop import backoff_delay
>>> import random
>>> rng = random.Random(0)  # after 1, 2, 5 and 10 failed runs: at most 2, 4, 30 and 30 s
>>> [round(backoff_delay(n, 1.0, 30.0, rng), 2) for n in (1, 2, 5, 10)]
[1.69, 3.03, 12.62, 7.77]
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edge_runtime.config import RetentionPolicy, SyncSettings
from edge_runtime.errors import ConfigError, EdgeRuntimeError, StoreError, SyncError
from edge_runtime.monitoring.store import MonitorStore
from edge_runtime.sync.http_transport import HttpTransport
from edge_runtime.sync.keys import DeviceKey
from edge_runtime.sync.outbox import Outbox, OutboxEntry
from edge_runtime.sync.payload import WindowSummary, boot_id, encode_window
from edge_runtime.sync.transport import Delivery, SendResult, Transport

__all__ = ["SyncLoop", "SyncRun", "SyncSettings", "backoff_delay", "load_device_key", "open_transport",
           "settings_with", "summary_for", "sync_once"]

_log = logging.getLogger("edge_runtime.sync")
_BATCH = 32  # outbox entries read at a time
_SMALLEST_MESSAGE = 8 * 1024  # a 413 halves the message size down to this before the window is refused


@dataclass(frozen=True, slots=True)
class SyncRun:
    """What one run did.

    Attributes
    ----------
    leased : bool
        False when another process held the database's sync lease: nothing was done.
    sent_windows, sent_entries : int
        Windows acknowledged (a merged entry counts its windows), and entries.
    dead_letters : int
        Entries the collector refused for good.
    bytes_sent : int
        Message bytes acknowledged (the byte cap also counts those refused or unanswered).
    remaining : int
        Windows still in the outbox after the run.
    stopped : str or None
        Why the run stopped before the outbox was empty: ``auth``, ``retry``,
        ``budget`` (max_bytes_per_run) or ``lease`` (lost mid-run); None when it emptied it.
    error : str or None
        The failure that stopped it (auth or retry).
    """

    leased: bool
    sent_windows: int = 0
    sent_entries: int = 0
    dead_letters: int = 0
    bytes_sent: int = 0
    remaining: int = 0
    stopped: str | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        """True when the collector could not be reached or refused this device (back off)."""
        return self.stopped in ("auth", "retry")


def settings_with(base: SyncSettings | None, **given: object) -> SyncSettings:
    """Sync settings from a config's ``[sync]`` (``base``, may be None) with the values ``given``
    (those not None) in its place: the command line over the config file. Without a device
    id, the one the key file records.

    Raises
    ------
    ConfigError
        The URL, device id or key file is in neither, or a value is out of range.
    """
    values: dict[str, object] = {}
    if base is not None:
        values = {name: getattr(base, name) for name in base.__dataclass_fields__}
    values.update({name: value for name, value in given.items() if value is not None})
    if values.get("device_id") is None and values.get("key_file") is not None:
        values["device_id"] = DeviceKey.load(str(values["key_file"])).device_id  # the id the key file records
    missing = [name for name in ("url", "device_id", "key_file") if values.get(name) is None]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise ConfigError(f"sync needs {flags} (or the same keys in the [sync] table of --config)")
    return SyncSettings(**values)  # type: ignore[arg-type]


def backoff_delay(failures: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter backoff: a uniform time in [0, min(max_s, base_s * 2**failures)]."""
    return rng.uniform(0.0, min(max_s, base_s * 2.0 ** min(failures, 62)))


def load_device_key(settings: SyncSettings) -> DeviceKey:
    """The key file of ``settings``, checked to be the settings' device.

    Raises
    ------
    ConfigError
        The file is missing or unreadable.
    SyncError
        It is another device's key.
    """
    key = DeviceKey.load(settings.key_file)
    if key.device_id != settings.device_id:
        raise SyncError(f"device id '{settings.device_id}' differs from the key file's ('{key.device_id}' in "
                        f"'{settings.key_file}')")
    return key


def open_transport(settings: SyncSettings) -> Transport:
    """The transport for the settings' URL scheme: HTTP(S), or MQTT for ``mqtt://`` and ``mqtts://``.

    Raises
    ------
    ConfigError
        An MQTT URL without the mqtt extra (paho-mqtt), or an unreadable CA file.
    """
    scheme = urlsplit(settings.url).scheme
    if scheme in ("http", "https"):
        return HttpTransport(settings.url, timeout_s=settings.timeout_s, ca_file=settings.ca_file)
    try:
        from edge_runtime.sync.mqtt_transport import MqttTransport  # paho-mqtt: the mqtt extra
    except ImportError as exc:
        raise ConfigError(f"{scheme}:// URLs need the mqtt extra, which is not installed ({exc}): "
                          "pip install 'edge-runtime[mqtt]'") from exc
    return MqttTransport(settings.url, settings.device_id, ca_file=settings.ca_file, timeout_s=settings.timeout_s)


def summary_for(outbox: Outbox, entry: OutboxEntry, device_id: str, *, boot: str,
                clock: Callable[[], float] = time.time,
                monotonic: Callable[[], float] = time.monotonic) -> WindowSummary | None:
    """The summary of an outbox entry, built now from its stored window (or its merged document);
    None when its window is gone."""
    stored = outbox.document(entry)
    if stored is None:
        return None
    document, profile = stored
    return WindowSummary(
        device_id=device_id, database_id=outbox.database_id, model_name=str(document["model"]),
        model_version=str(document["version"]), model_sha256=str(document["model_sha256"]),
        seq_first=entry.seq_first, seq_last=entry.seq_last, opened_at=float(document["opened_at"] or 0.0),
        closed_at=float(document["closed_at"]), rows=int(document["rows"]), rejected=int(document["rejected"]),
        partial=bool(document["partial"]), quality=document["quality"] or {}, latency=document["latency"],
        budget=document["budget"], verdicts=list(document["verdicts"]), profile=profile, losses=outbox.losses(),
        outbox_depth=outbox.depth(), boot_id=boot, sent_wall=clock(), sent_mono=monotonic())


def sync_once(outbox: Outbox, transport: Transport, key: DeviceKey, settings: SyncSettings, *,
              holder: str | None = None, monotonic: Callable[[], float] = time.monotonic) -> SyncRun:
    """One run: take the lease, send the outbox oldest first, record the outcome, release the lease.

    Parameters
    ----------
    outbox : Outbox
        The database's outbox (enrolled here under ``settings.device_id`` if not yet).
    transport : Transport
    key : DeviceKey
        The device's key (its id must be ``settings.device_id``).
    settings : SyncSettings
    holder : str, optional
        This loop's name in the lease (one per process by default).

    Raises
    ------
    SyncError
        The key or the database belongs to another device.
    StoreError
        The database cannot be read or written.
    """
    if key.device_id != settings.device_id:
        raise SyncError(f"device id '{settings.device_id}' differs from the key's ('{key.device_id}')")
    outbox.enroll(settings.device_id)
    holder = holder or f"pid-{uuid.uuid4()}"
    ttl = max(60.0, 4 * settings.timeout_s)
    if not outbox.take_lease(holder, ttl):
        return SyncRun(leased=False, remaining=outbox.depth())
    boot = boot_id()
    sent_windows = sent_entries = dead = sent_bytes = wire_bytes = 0
    stopped: str | None = None
    error: str | None = None
    try:
        while stopped is None:
            entries = outbox.pending(_BATCH)
            if not entries:
                break
            for entry in entries:
                summary = summary_for(outbox, entry, settings.device_id, boot=boot, clock=outbox.store.clock,
                                      monotonic=monotonic)
                if summary is None:  # its window went (by hand?): it would block every later one
                    _log.warning("edge-runtime sync: window %s is gone from the database; counted as lost",
                                 entry.seq_first)
                    outbox.drop(entry, "window_gone")
                    continue
                try:
                    messages = encode_window(summary, key, max_message_bytes=settings.max_message_bytes)
                except (SyncError, ValueError) as exc:
                    _log.warning("edge-runtime sync: window %s cannot be encoded (%s); counted as lost",
                                 entry.seq_first, exc)
                    outbox.drop(entry, "unencodable")
                    continue
                size = sum(len(m) for m in messages)
                if settings.max_bytes_per_run and wire_bytes + size > settings.max_bytes_per_run and (
                        sent_entries or dead):
                    stopped = "budget"
                    break
                outbox.mark_attempted(entry)
                result = _send_all(transport, messages)
                wire_bytes += size
                limit = settings.max_message_bytes
                while result.status == 413 and limit // 2 >= _SMALLEST_MESSAGE:
                    # The collector (or a proxy before it) takes less than this device sends:
                    # cut the window into smaller parts rather than lose it.
                    limit //= 2
                    messages = encode_window(summary, key, max_message_bytes=limit)
                    size = sum(len(m) for m in messages)
                    result = _send_all(transport, messages)
                    wire_bytes += size
                if result.outcome is Delivery.SENT:
                    outbox.mark_sent(entry, size)
                    sent_windows += entry.windows
                    sent_entries += 1
                    sent_bytes += size
                elif result.outcome is Delivery.PERMANENT:
                    outbox.dead_letter(entry, result.status, result.detail)
                    dead += 1
                else:
                    stopped = "auth" if result.outcome is Delivery.AUTH else "retry"
                    error = result.detail
                    break
                if not outbox.renew_lease(holder, ttl):  # after each entry; lost if it expired and was taken
                    stopped = "lease"
                    break
    finally:
        try:
            outbox.release_lease(holder)
        except StoreError:
            pass  # it expires by itself
    if error is None:
        outbox.record_success()
    return SyncRun(leased=True, sent_windows=sent_windows, sent_entries=sent_entries, dead_letters=dead,
                   bytes_sent=sent_bytes, remaining=outbox.depth(), stopped=stopped, error=error)


def _send_all(transport: Transport, messages: list[bytes]) -> SendResult:
    """Send every part of one window; the first part that is not SENT decides."""
    result = SendResult(Delivery.SENT, None, "")
    for message in messages:
        result = transport.send(message)
        if result.outcome is not Delivery.SENT:
            return result
    return result


class SyncLoop:
    """Runs :func:`sync_once` again and again: every ``interval_s``, or after a backoff when a run failed.

    Parameters
    ----------
    db : Path
        The monitoring database (created when missing unless ``create`` is False).
    settings : SyncSettings
    retention : RetentionPolicy, optional
        The database's bounds (those of the runtime writing it).
    transport : Transport, optional
        Default: :func:`open_transport` for the settings' URL.
    key : DeviceKey, optional
        Default: :func:`load_device_key`.
    clock : callable
        Wall-clock time (records and the lease).
    rng : random.Random, optional
        The backoff's jitter; seed it for repeatable delays.
    sleep : callable, optional
        ``sleep(seconds) -> bool``: wait, True when asked to stop. Default: waits on :meth:`stop`.
    create : bool
        Create the database when missing (False: StoreError instead).
    on_run : callable, optional
        Called with each :class:`SyncRun` (a command prints it).

    Raises
    ------
    ConfigError, SyncError, StoreError
        The key file or the database cannot be used (at construction, not in the loop).
    """

    def __init__(self, db: str | Path, settings: SyncSettings, *, retention: RetentionPolicy | None = None,
                 transport: Transport | None = None, key: DeviceKey | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 sleep: Callable[[float], bool] | None = None, create: bool = True,
                 on_run: Callable[[SyncRun], None] | None = None) -> None:
        self.settings = settings
        self.key = key if key is not None else load_device_key(settings)
        if self.key.device_id != settings.device_id:
            raise SyncError(f"device id '{settings.device_id}' differs from the key's ('{self.key.device_id}')")
        self.transport = transport if transport is not None else open_transport(settings)
        self.store = MonitorStore(db, retention, clock=clock, create=create)
        self.outbox = Outbox(self.store)
        self.rng = rng or random.Random()
        self.holder = f"{uuid.uuid4()}"
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._thread: threading.Thread | None = None
        self._next_delay = settings.interval_s
        self._failures_unrecorded = 0
        self.last_run: SyncRun | None = None
        self._on_run = on_run

    def run_once(self) -> SyncRun:
        """One run; a failure to reach the collector is recorded (with the time of the next try)
        and returned in the run, not raised."""
        if self.store.vanished():  # the runtime moved a corrupt database aside and started a new one
            self.store.close()
            self.store = MonitorStore(self.store.path, self.store.retention, clock=self.store.clock)
            self.outbox = Outbox(self.store)
        run = sync_once(self.outbox, self.transport, self.key, self.settings, holder=self.holder)
        if run.failed:
            self._next_delay = self._fail(run.error or str(run.stopped))
        else:
            self._next_delay = self.settings.interval_s
        self.last_run = run
        if self._on_run is not None:
            self._on_run(run)
        return run

    def _fail(self, error: str) -> float:
        """Record a failed run; return the backoff before the next one."""
        try:
            failures = self.outbox.consecutive_failures() + 1
            delay = self._backoff(failures)
            self.outbox.record_failure(error, self.store.clock() + delay)
        except EdgeRuntimeError:  # the database itself fails: the log says so
            self._failures_unrecorded += 1
            delay = self._backoff(self._failures_unrecorded)
        return delay

    def _backoff(self, failures: int) -> float:
        return backoff_delay(failures, self.settings.backoff_base_s, self.settings.backoff_max_s, self.rng)

    def next_delay(self) -> float:
        """Seconds until the next run: the interval after a good run, a backoff after a failed one."""
        return self._next_delay

    def run(self, runs: int | None = None) -> None:
        """Run until :meth:`stop` (or ``runs`` runs). A run that raises (the database failing) is
        logged and retried after a backoff: the loop itself never dies of it."""
        done = 0
        while not self._stop.is_set() and (runs is None or done < runs):
            try:
                self.run_once()
                delay = self.next_delay()
            except EdgeRuntimeError as exc:
                _log.warning("edge-runtime sync: run failed: %s", exc)
                delay = self._fail(str(exc))
            except Exception as exc:  # noqa: BLE001 - a background loop must not take its process down
                _log.exception("edge-runtime sync: unexpected failure")
                delay = self._fail(f"{type(exc).__name__}: {exc}")
            done += 1
            if runs is not None and done >= runs:
                break
            if self._sleep(delay):
                break

    def start(self) -> threading.Thread:
        """Run in a daemon thread (a long-running command's background sync)."""
        self._thread = threading.Thread(target=self.run, name="edge-runtime-sync", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop after the message in flight; wait up to ``timeout`` for its thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop, then close the transport and the database."""
        self.stop(self.settings.timeout_s + 1.0)
        self.transport.close()
        self.store.close()
