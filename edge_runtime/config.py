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
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_runtime.errors import ConfigError

__all__ = [
    "InputPolicy",
    "NonFinitePolicy",
    "RuntimeConfig",
    "SessionConfig",
    "UnseenCategoryPolicy",
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


def _check_int(owner: str, name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"The '{name}' parameter of {owner} must be an int in [{low}, {high}]. Got {value!r} instead."
        )


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
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
        _check_int("SessionConfig", "intra_op_threads", self.intra_op_threads, 1, 256)
        _check_int("SessionConfig", "inter_op_threads", self.inter_op_threads, 1, 256)
        _check_choice("SessionConfig", "execution_mode", self.execution_mode, _EXECUTION_MODES)
        _check_choice(
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
class RuntimeConfig:
    """Everything a device needs to serve one bundle.

    Parameters
    ----------
    bundle : Path or None
        The bundle directory; relative paths in a file are relative to that file.
    session : SessionConfig
    inputs : InputPolicy
    """

    bundle: Path | None = None
    session: SessionConfig = field(default_factory=SessionConfig)
    inputs: InputPolicy = field(default_factory=InputPolicy)


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
        Tables ``bundle``, ``session`` and ``inputs``; all optional.
    base_dir : Path, optional
        Directory that a relative ``bundle.path`` is resolved against.
    """
    known_tables = {"bundle", "session", "inputs"}
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
    return RuntimeConfig(
        bundle=bundle_path,
        session=_section(SessionConfig, data.get("session", {}), "session"),
        inputs=_section(InputPolicy, data.get("inputs", {}), "inputs"),
    )


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
    return config_from_dict(data, base_dir=config_path.resolve().parent)
