"""Device configuration: small frozen value objects loaded from TOML in one place.

Examples
--------
>>> from edge_runtime.config import RuntimeConfig, SessionConfig, config_from_dict
>>> RuntimeConfig().session.intra_op_threads
1
>>> cfg = config_from_dict({"inputs": {"non_finite": "allow"}})
>>> cfg.inputs.non_finite
<NonFinitePolicy.ALLOW: 'allow'>
>>> SessionConfig(intra_op_threads=0)
Traceback (most recent call last):
...
edge_runtime.errors.ConfigError: The 'intra_op_threads' parameter of SessionConfig must be an int in [1, 256]. Got 0 instead.
"""

from __future__ import annotations

import enum
import math
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_runtime.errors import ConfigError

__all__ = [
    "DEVICE_ID",
    "BudgetConfig",
    "DriftPolicy",
    "InputPolicy",
    "MonitoringConfig",
    "NonFinitePolicy",
    "RetentionPolicy",
    "RuntimeConfig",
    "SessionConfig",
    "SyncSettings",
    "UnseenCategoryPolicy",
    "check_choice",
    "check_device_id",
    "check_float",
    "check_int",
    "config_from_dict",
    "load_config",
]


class NonFinitePolicy(str, enum.Enum):
    """What to do with NaN or infinity in a numeric feature."""

    REJECT = "reject"  # raise NonFiniteValueError, except NaN in features trained with missing values
    ALLOW = "allow"  # pass the value to the model unchanged


class UnseenCategoryPolicy(str, enum.Enum):
    """What to do with a category never seen in training."""

    REJECT = "reject"  # raise UnseenCategoryError
    ALLOW = "allow"  # pass it on: an encoder with handle_unknown='ignore' encodes it as all zeros


_EXECUTION_MODES = ("sequential", "parallel")
_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def check_int(owner: str, name: str, value: Any, low: int, high: int) -> None:
    """Raise ConfigError, in scikit-learn's words, unless ``value`` is an int in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"The '{name}' parameter of {owner} must be an int in [{low}, {high}]. Got {value!r} instead."
        )


def check_float(owner: str, name: str, value: Any, low: float, high: float) -> None:
    """Raise ConfigError unless ``value`` is a number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(
            f"The '{name}' parameter of {owner} must be a float in [{low}, {high}]. Got {value!r} instead."
        )


def check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(
            f"The '{name}' parameter of {owner} must be one of {', '.join(choices)}. Got {value!r} instead."
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """onnxruntime session options, with defaults for a small shared CPU.

    One intra-op thread and no spinning: on small models, more threads doubled
    the CPU per call here for no latency gain, and spinning burns a core that the
    device's other work needs.
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    execution_mode: str = "sequential"
    allow_spinning: bool = False
    graph_optimization: str = "all"

    def __post_init__(self) -> None:
        check_int("SessionConfig", "intra_op_threads", self.intra_op_threads, 1, 256)
        check_int("SessionConfig", "inter_op_threads", self.inter_op_threads, 1, 256)
        check_choice("SessionConfig", "execution_mode", self.execution_mode, _EXECUTION_MODES)
        check_choice(
            "SessionConfig", "graph_optimization", self.graph_optimization, _OPTIMIZATION_LEVELS
        )
        if not isinstance(self.allow_spinning, bool):
            raise ConfigError(
                "The 'allow_spinning' parameter of SessionConfig must be a bool. "
                f"Got {self.allow_spinning!r} instead."
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class InputPolicy:
    """How the runtime treats doubtful input values."""

    non_finite: NonFinitePolicy = NonFinitePolicy.REJECT
    unseen_category: UnseenCategoryPolicy = UnseenCategoryPolicy.REJECT

    def __post_init__(self) -> None:
        for name, enum_type in (
            ("non_finite", NonFinitePolicy),
            ("unseen_category", UnseenCategoryPolicy),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum_type(value))
            except ValueError as exc:
                choices = ", ".join(m.value for m in enum_type)
                raise ConfigError(
                    f"The '{name}' parameter of InputPolicy must be one of {choices}. "
                    f"Got {value!r} instead."
                ) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftPolicy:
    """Thresholds of the drift decisions; the rule and the defaults are in docs/drift.md.

    Parameters
    ----------
    alpha_warn, alpha_drift : float
        Family-wise false-alarm rate per window for warn and drift, split over
        all tests of the window.
    ks_warn, ks_drift : float
        Effect floors on the KS distance.
    psi_warn, psi_drift : float
        Effect floors on the PSI (the usual 0.1 / 0.25 rule of thumb).
    js_warn, js_drift : float
        Effect floors on the Jensen-Shannon distance (base 2, in [0, 1]).
    psi_bins : int
        PSI bins, cut at the reference quantiles.
    multivariate_warn, multivariate_drift : float
        Effect floors on the window's mean PCA reconstruction error, as a relative
        rise over the reference's mean (0.05: 5% higher).
    """

    alpha_warn: float = 0.05
    alpha_drift: float = 0.01
    ks_warn: float = 0.02
    ks_drift: float = 0.03
    psi_warn: float = 0.1
    psi_drift: float = 0.25
    js_warn: float = 0.02
    js_drift: float = 0.03
    psi_bins: int = 10
    multivariate_warn: float = 0.03
    multivariate_drift: float = 0.05

    def __post_init__(self) -> None:
        for name in ("alpha_warn", "alpha_drift"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ConfigError(f"The '{name}' parameter of DriftPolicy must be a float in (0, 1). "
                                  f"Got {value!r} instead.")
        for warn, drift in (("ks_warn", "ks_drift"), ("psi_warn", "psi_drift"), ("js_warn", "js_drift"),
                            ("multivariate_warn", "multivariate_drift")):
            low, high = getattr(self, warn), getattr(self, drift)
            for name, value in ((warn, low), (drift, high)):
                if not isinstance(value, (int, float)) or value < 0:
                    raise ConfigError(f"The '{name}' parameter of DriftPolicy must be a float in [0, inf). "
                                      f"Got {value!r} instead.")
            if low > high:
                raise ConfigError(f"DriftPolicy: '{warn}' ({low}) must not exceed '{drift}' ({high})")
        if not isinstance(self.psi_bins, int) or not 2 <= self.psi_bins <= 100:
            raise ConfigError(f"The 'psi_bins' parameter of DriftPolicy must be an int in [2, 100]. "
                              f"Got {self.psi_bins!r} instead.")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """Bounds of the monitoring database; the oldest rows go first.

    Parameters
    ----------
    max_rows : int
        Decision-log rows kept.
    max_bytes : int
        Size of the database file plus its write-ahead log. Before a write that
        would take them past 90% of it, the oldest decisions or windows are
        deleted; SQLite reuses the freed pages, so the files stop growing. One
        flush (``flush_rows`` decisions) or one window must fit well inside it.
    max_age_days : float
        Decisions and windows older than this are deleted (0 keeps them).
    max_windows : int
        Closed windows kept, with their drift results and events.
    keep_corrupt : int
        Corrupted databases moved aside (``<name>.corrupt-<time>``) and kept for
        diagnosis; they count against ``max_bytes``.
    """

    max_rows: int = 1_000_000
    max_bytes: int = 256 * 1024 * 1024
    max_age_days: float = 30.0
    max_windows: int = 10_000
    keep_corrupt: int = 2

    def __post_init__(self) -> None:
        check_int("RetentionPolicy", "max_rows", self.max_rows, 1, 10**12)
        check_int("RetentionPolicy", "max_bytes", self.max_bytes, 64 * 1024, 10**15)
        check_int("RetentionPolicy", "max_windows", self.max_windows, 1, 10**9)
        check_int("RetentionPolicy", "keep_corrupt", self.keep_corrupt, 0, 100)
        check_float("RetentionPolicy", "max_age_days", self.max_age_days, 0.0, math.inf)


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringConfig:
    """Live monitoring and the decision log.

    Parameters
    ----------
    db : Path or None
        SQLite file; monitoring is off while it is None.
    window_rows : int
        A window closes after this many served rows.
    window_seconds : float
        A window also closes this long after it opened (0: by rows only). Checked
        when rows arrive or on ``flush()``.
    flush_rows, flush_ms : int
        Buffered rows are written in one transaction when either is reached. A
        crash (kill -9) loses at most these rows; ``flush()``, ``close()`` and a
        clean CLI exit lose nothing.
    log_sample_rate : float
        Share of predictions written to the decision log (every one at 1.0).
    log_features : bool
        Also store raw feature values in the log (off by default: privacy).
    sketch_k : int
        KLL accuracy parameter of the live sketches.
    sketch_stride : int
        Largest thinning of the live numeric sketches: each block of rows (a
        full buffer of 4,096 rows or ``flush_rows``, or a batch that is a block
        of its own) is sorted per feature in chunks of up to 1,024 and every
        stride-th value goes to the KLL sketch.
        Counts, missing, range, mean and variance stay exact; the thinning's
        rank error is added to the sketch error of the drift thresholds. A
        window thins by ``min(sketch_stride, floor(sqrt(window_rows / 300)))``
        (see :func:`edge_runtime.monitoring.monitor.window_stride`), which keeps that
        error under half the KLL sketch's own; 1 sketches every value, at ~1 µs
        per row for 30 features.
    background : bool
        Sketch and log batches of 256 rows or more on a worker thread, while
        the caller's next model call runs: batch scoring gets its monitoring
        from a second core. Single rows are always monitored inline. A kill -9
        may then also lose the batches waiting for the worker (at most four).
    on_error : {'degrade', 'raise'}
        What a failing database (full disk, read-only or vanished file, lock
        timeout, corruption) does. ``degrade``: serving goes on, monitoring
        counts what it could not write, retries with backoff and recovers by
        itself (a corrupted file is moved aside and a fresh one started).
        ``raise``: the failure is raised as a StoreError subclass.
    lock_timeout_ms : int
        How long a writer waits for another writer's lock on the database; the
        serving thread may wait that long once per retry while another process
        holds the lock (writers hold it for milliseconds).
    """

    db: Path | None = None
    window_rows: int = 5000
    window_seconds: float = 0.0
    flush_rows: int = 1024
    flush_ms: int = 1000
    log_sample_rate: float = 1.0
    log_features: bool = False
    sketch_k: int = 200
    sketch_stride: int = 8
    background: bool = True
    on_error: str = "degrade"
    lock_timeout_ms: int = 1000

    def __post_init__(self) -> None:
        check_int("MonitoringConfig", "window_rows", self.window_rows, 1, 10**9)
        check_float("MonitoringConfig", "window_seconds", self.window_seconds, 0.0, math.inf)
        check_int("MonitoringConfig", "flush_rows", self.flush_rows, 1, 1_000_000)
        check_int("MonitoringConfig", "flush_ms", self.flush_ms, 1, 3_600_000)
        check_float("MonitoringConfig", "log_sample_rate", self.log_sample_rate, 0.0, 1.0)
        check_int("MonitoringConfig", "sketch_k", self.sketch_k, 8, 65535)
        check_int("MonitoringConfig", "sketch_stride", self.sketch_stride, 1, 1024)
        check_choice("MonitoringConfig", "on_error", self.on_error, ("degrade", "raise"))
        check_int("MonitoringConfig", "lock_timeout_ms", self.lock_timeout_ms, 0, 3_600_000)
        if not isinstance(self.background, bool):
            raise ConfigError("The 'background' parameter of MonitoringConfig must be a bool. "
                              f"Got {self.background!r} instead.")
        if not isinstance(self.log_features, bool):
            raise ConfigError("The 'log_features' parameter of MonitoringConfig must be a bool. "
                              f"Got {self.log_features!r} instead.")
        if self.db is not None and not isinstance(self.db, Path):
            object.__setattr__(self, "db", Path(str(self.db)))


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetConfig:
    """Latency, CPU and memory budgets, and how the runtime keeps them.

    A budget of 0 is off. When a check finds a budget exceeded, the runtime
    steps down one level of service: first it sheds optional work (the decision
    log drops to ``shed_log_rate``), then it answers with ``fallback_bundle``
    (when one is configured), then it sheds load (``shed_mode``: refuse with
    OverloadError, or return a deferred result). It steps back up one level
    after ``recover_checks`` checks in a row with every measurement under
    ``recover_ratio`` times its budget (hysteresis, so it does not flap).

    Parameters
    ----------
    latency_ms : float
        Bound on the ``latency_percentile`` of recent latencies (0: none).
    latency_percentile : float
        The percentile bounded, e.g. 99.
    cpu_share : float
        Share of one core the process may use, averaged over ``window_s`` (0: none).
    rss_mb : float
        Resident memory of the process, MB (0: none).
    check_every : int
        Calls between checks; psutil costs 12-25 µs a call, so never per prediction.
    check_interval_ms : int
        A check also happens on the first call this long after the last one.
    window_s : float
        Sliding window of the CPU-share measurement.
    """

    latency_ms: float = 0.0
    latency_percentile: float = 99.0
    cpu_share: float = 0.0
    rss_mb: float = 0.0
    check_every: int = 256
    check_interval_ms: int = 1000
    window_s: float = 5.0
    recover_ratio: float = 0.8
    recover_checks: int = 3
    shed_log_rate: float = 0.1
    shed_mode: str = "refuse"
    fallback_bundle: Path | None = None

    def __post_init__(self) -> None:
        check_float("BudgetConfig", "latency_ms", self.latency_ms, 0.0, math.inf)
        check_float("BudgetConfig", "latency_percentile", self.latency_percentile, 50.0, 99.99)
        check_float("BudgetConfig", "cpu_share", self.cpu_share, 0.0, 256.0)
        check_float("BudgetConfig", "rss_mb", self.rss_mb, 0.0, math.inf)
        check_int("BudgetConfig", "check_every", self.check_every, 1, 10**9)
        check_int("BudgetConfig", "check_interval_ms", self.check_interval_ms, 1, 3_600_000)
        check_float("BudgetConfig", "window_s", self.window_s, 0.1, 3600.0)
        check_float("BudgetConfig", "recover_ratio", self.recover_ratio, 0.0, 1.0)
        check_int("BudgetConfig", "recover_checks", self.recover_checks, 1, 10**6)
        check_float("BudgetConfig", "shed_log_rate", self.shed_log_rate, 0.0, 1.0)
        check_choice("BudgetConfig", "shed_mode", self.shed_mode, ("refuse", "defer"))
        if self.fallback_bundle is not None and not isinstance(self.fallback_bundle, Path):
            object.__setattr__(self, "fallback_bundle", Path(str(self.fallback_bundle)))

    @property
    def enabled(self) -> bool:
        """True when any budget is set."""
        return bool(self.latency_ms or self.cpu_share or self.rss_mb)


_SYNC_SCHEMES = ("http", "https", "mqtt", "mqtts")
# A device id travels in URLs, MQTT topics and file names: no separators, no wildcards.
# Ids go into MQTT topics and file names: no '/', '+', '#', spaces or control characters.
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_device_id(owner: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` is a device id: 1-128 letters, digits, '.', '_' or '-'."""
    if not isinstance(value, str) or not DEVICE_ID.fullmatch(value):
        raise ConfigError(f"The 'device_id' parameter of {owner} must be 1-128 letters, digits, '.', '_', ':' or '-', "
                          f"starting with a letter or digit. Got {value!r} instead.")


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncSettings:
    """Reporting closed windows upstream to a fleet collector (``[sync]``; docs/sync.md).

    Parameters
    ----------
    url : str
        The collector: ``https://host:port`` (or ``http://`` on a trusted network);
        ``mqtt://`` and ``mqtts://`` name a broker, for the MQTT transport.
    device_id : str
        This device's id, as registered on the collector and recorded in the key file.
    key_file : Path
        The device's private key (PEM, mode 0600), made by ``edge-runtime device init``.
    enabled : bool
        Whether long-running commands (``predict`` streaming) sync in the background.
    interval_s : float
        Seconds between runs while the collector answers.
    ca_file : Path or None
        CA certificates that the collector's certificate must chain to (default: the system's).
    max_bytes_per_run : int
        Bytes on the wire one run may send (0: no cap); the first message of a run always goes.
    max_message_bytes : int
        Largest message; a bigger window is split into parts (MQTT brokers cap at 128 KiB).
    timeout_s : float
        Seconds to wait for the collector's answer to one message.
    backoff_base_s, backoff_max_s : float
        After n failed runs in a row the next waits a random time in
        [0, min(backoff_max_s, backoff_base_s * 2**n)] (full jitter).
    """

    url: str
    device_id: str
    key_file: Path
    enabled: bool = True
    interval_s: float = 60.0
    ca_file: Path | None = None
    max_bytes_per_run: int = 0
    max_message_bytes: int = 131072
    timeout_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 600.0

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url) if isinstance(self.url, str) else None
        try:
            port_ok = parsed is not None and parsed.port != 0  # .port refuses a port past 65535
        except ValueError:
            port_ok = False
        if parsed is None or parsed.scheme not in _SYNC_SCHEMES or not parsed.hostname or not port_ok:
            raise ConfigError(f"The 'url' parameter of SyncSettings must be an {', '.join(_SYNC_SCHEMES)} URL "
                              f"with a host (and a port in 1-65535, if any). Got {self.url!r} instead.")
        check_device_id("SyncSettings", self.device_id)
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"The 'enabled' parameter of SyncSettings must be a bool. Got {self.enabled!r} instead.")
        check_float("SyncSettings", "interval_s", self.interval_s, 0.001, 7 * 86400.0)
        check_int("SyncSettings", "max_bytes_per_run", self.max_bytes_per_run, 0, 10**15)
        check_int("SyncSettings", "max_message_bytes", self.max_message_bytes, 4096, 64 * 1024 * 1024)
        check_float("SyncSettings", "timeout_s", self.timeout_s, 0.001, 3600.0)
        check_float("SyncSettings", "backoff_base_s", self.backoff_base_s, 0.0, 86400.0)
        check_float("SyncSettings", "backoff_max_s", self.backoff_max_s, 0.0, 7 * 86400.0)
        if self.backoff_base_s > self.backoff_max_s:
            raise ConfigError(f"SyncSettings: 'backoff_base_s' ({self.backoff_base_s}) must not exceed "
                              f"'backoff_max_s' ({self.backoff_max_s})")
        for name in ("key_file", "ca_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"The '{name}' parameter of SyncSettings must be a path. Got {value!r} instead.")
                object.__setattr__(self, name, Path(value))
        if self.key_file is None:
            raise ConfigError("The 'key_file' parameter of SyncSettings must be a path. Got None instead.")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """Everything a device needs to serve one bundle.

    Parameters
    ----------
    bundle : Path or None
        The bundle directory; relative paths in a file are relative to that file.
    session : SessionConfig
    inputs : InputPolicy
    monitoring : MonitoringConfig
    retention : RetentionPolicy
    drift : DriftPolicy
    budgets : BudgetConfig
    sync : SyncSettings or None
        Reporting upstream; None without a ``[sync]`` table.
    """

    bundle: Path | None = None
    session: SessionConfig = field(default_factory=SessionConfig)
    inputs: InputPolicy = field(default_factory=InputPolicy)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    budgets: BudgetConfig = field(default_factory=BudgetConfig)
    sync: SyncSettings | None = None


def _section(owner: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table, got {data!r}")
    known = {f.name for f in fields(owner)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"unknown key '{key}' in [{where}]; known keys: {', '.join(sorted(known))}"
            )
    try:
        return owner(**data)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"[{where}]: {exc}") from exc


def config_from_dict(data: dict[str, Any], *, base_dir: Path | None = None) -> RuntimeConfig:
    """Build a :class:`RuntimeConfig` from parsed TOML.

    Parameters
    ----------
    data : dict
        Tables ``bundle``, ``session``, ``inputs``, ``monitoring``, ``retention``,
        ``drift``, ``budgets`` and ``sync``; all optional.
    base_dir : Path, optional
        Directory that a relative ``bundle.path`` or ``monitoring.db`` is resolved against.
    """
    known_tables = {"bundle", "session", "inputs", "monitoring", "retention", "drift", "budgets", "sync"}
    for key in data:
        if key not in known_tables:
            raise ConfigError(
                f"unknown table [{key}] in config; known tables: {', '.join(sorted(known_tables))}"
            )
    bundle_path = None
    bundle_table = data.get("bundle", {})
    if not isinstance(bundle_table, dict) or set(bundle_table) - {"path"}:
        raise ConfigError(f"[bundle] takes only the key 'path', got {bundle_table!r}")
    if "path" in bundle_table:
        bundle_path = Path(str(bundle_table["path"]))
        if base_dir is not None and not bundle_path.is_absolute():
            bundle_path = base_dir / bundle_path
    monitoring = _with_path(data.get("monitoring", {}), "db", base_dir)
    budgets = _with_path(data.get("budgets", {}), "fallback_bundle", base_dir)
    sync = None
    if "sync" in data:
        table = _with_path(_with_path(data["sync"], "key_file", base_dir), "ca_file", base_dir)
        if isinstance(table, dict):
            missing = [key for key in ("url", "device_id", "key_file") if key not in table]
            if missing:
                raise ConfigError(f"[sync] lacks {', '.join(repr(k) for k in missing)}; it needs 'url', "
                                  "'device_id' and 'key_file'")
        sync = _section(SyncSettings, table, "sync")
    return RuntimeConfig(
        bundle=bundle_path,
        session=_section(SessionConfig, data.get("session", {}), "session"),
        inputs=_section(InputPolicy, data.get("inputs", {}), "inputs"),
        monitoring=_section(MonitoringConfig, monitoring, "monitoring"),
        retention=_section(RetentionPolicy, data.get("retention", {}), "retention"),
        drift=_section(DriftPolicy, data.get("drift", {}), "drift"),
        budgets=_section(BudgetConfig, budgets, "budgets"),
        sync=sync,
    )


def _with_path(table: Any, key: str, base_dir: Path | None) -> Any:
    """Resolve a relative path entry of a table against the config file's folder."""
    if not isinstance(table, dict) or key not in table:
        return table
    table = dict(table)
    path = Path(str(table[key]))
    table[key] = base_dir / path if base_dir is not None and not path.is_absolute() else path
    return table


def load_config(path: str | Path) -> RuntimeConfig:
    """Load a TOML config file.

    Raises
    ------
    ConfigError
        The file is missing, is not valid TOML, or holds an unknown key or bad value.
    """
    config_path = Path(path)
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file '{config_path}' does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file '{config_path}' is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{config_path}' is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                          f"at position {exc.start}); TOML files are UTF-8") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config file '{config_path}' is a folder") from exc
    return config_from_dict(data, base_dir=config_path.resolve().parent)
