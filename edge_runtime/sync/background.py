"""Syncing inside a long-running command (``predict`` streaming, the server) when ``[sync]`` enables it.

Sync is an observer, like monitoring: a missing extra, an unreadable key file or
a failing collector is a warning, never a reason to stop serving.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from edge_runtime.config import RuntimeConfig
from edge_runtime.errors import EdgeRuntimeError

if TYPE_CHECKING:
    from edge_runtime.sync.loop import SyncLoop

__all__ = ["start_background_sync"]


def start_background_sync(config: RuntimeConfig) -> SyncLoop | None:
    """Start a :class:`~edge_runtime.sync.loop.SyncLoop` thread on the config's monitoring database.

    Returns None (with a RuntimeWarning saying why, when ``[sync]`` asked for it)
    when there is nothing to start. Stop it with ``loop.close()``.
    """
    settings = config.sync
    if settings is None or not settings.enabled:
        return None
    db = config.monitoring.db
    if db is None:
        warnings.warn("edge-runtime: [sync] is enabled but monitoring has no database ([monitoring] db or "
                      "--db): nothing to sync", RuntimeWarning, stacklevel=2)
        return None
    try:
        from edge_runtime.sync.loop import SyncLoop  # cryptography: the sync extra
    except ImportError as exc:
        warnings.warn(f"edge-runtime: [sync] needs the sync extra, which is not installed ({exc}); serving "
                      "without sync: pip install 'edge-runtime[sync]'", RuntimeWarning, stacklevel=2)
        return None
    try:
        loop = SyncLoop(db, settings, retention=config.retention)
    except EdgeRuntimeError as exc:
        warnings.warn(f"edge-runtime: sync is off for this run: {exc}", RuntimeWarning, stacklevel=2)
        return None
    loop.start()
    return loop
