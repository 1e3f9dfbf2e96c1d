"""Config files: every example in configs/ loads; bad files give ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.config import (
    BudgetConfig,
    DriftPolicy,
    MonitoringConfig,
    NonFinitePolicy,
    RetentionPolicy,
    RuntimeConfig,
    SessionConfig,
    UnseenCategoryPolicy,
    load_config,
)
from edge_runtime.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))


def test_configs_folder_is_not_empty() -> None:
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_example_config_loads(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, RuntimeConfig)


def test_device_example_values() -> None:
    config = load_config(Path(__file__).parent.parent / "configs" / "device.toml")
    assert config.session == SessionConfig()
    assert config.inputs.non_finite is NonFinitePolicy.REJECT
    assert config.inputs.unseen_category is UnseenCategoryPolicy.REJECT
    assert config.bundle is not None and config.bundle.is_absolute()
    assert config.bundle.name == "breast-cancer"
    assert config.monitoring == MonitoringConfig(db=config.monitoring.db)
    assert config.monitoring.db is not None and config.monitoring.db.is_absolute()
    assert config.retention == RetentionPolicy() and config.drift == DriftPolicy()
    assert config.budgets == BudgetConfig() and not config.budgets.enabled


@pytest.mark.parametrize("text, message", [
    ("[session]\nthreads = 2\n", "unknown key 'threads' in [session]"),
    ("[sesion]\n", "unknown table [sesion]"),
    ("[session]\nintra_op_threads = -1\n", "'intra_op_threads' parameter of SessionConfig must be an int in [1, 256]. Got -1"),
    ("[session]\nexecution_mode = 'fast'\n", "'execution_mode' parameter of SessionConfig must be one of sequential, parallel. Got 'fast'"),
    ("[session]\nallow_spinning = 'yes'\n", "'allow_spinning' parameter of SessionConfig must be a bool"),
    ("[inputs]\nnon_finite = 'drop'\n", "'non_finite' parameter of InputPolicy must be one of reject, allow. Got 'drop'"),
    ("[bundle]\npath = 'x'\nname = 'y'\n", "[bundle] takes only the key 'path'"),
    ("[monitoring]\nwindow_rows = 0\n", "'window_rows' parameter of MonitoringConfig must be an int in [1, 1000000000]"),
    ("[monitoring]\nlog_sample_rate = 1.5\n", "'log_sample_rate' parameter of MonitoringConfig must be a float in [0.0, 1.0]"),
    ("[retention]\nmax_bytes = 10\n", "'max_bytes' parameter of RetentionPolicy must be an int in [65536,"),
    ("[drift]\nks_drift = 0.01\n", "'ks_warn' (0.02) must not exceed 'ks_drift' (0.01)"),
    ("[budgets]\nshed_mode = 'drop'\n", "'shed_mode' parameter of BudgetConfig must be one of refuse, defer"),
    ("session = 3\n", "[session] must be a table"),
    ("[session\n", "is not valid TOML"),
])
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_fallback_bundle_path_is_relative_to_the_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[budgets]\ncpu_share = 0.5\nfallback_bundle = "small"\n')
    config = load_config(path)
    assert config.budgets.fallback_bundle == tmp_path.resolve() / "small" and config.budgets.enabled
