"""Fleet stores behind one interface (:class:`~collector.stores.base.FleetStore`), opened by URL.

- ``sqlite:///fleet.db`` (relative) or ``sqlite:////var/lib/fleet.db`` (absolute), as
  SQLAlchemy spells them; a plain path without a scheme is a SQLite file too.
- ``postgresql://user@host:port/dbname`` (or ``postgres://``): PostgreSQL through psycopg 3.

Each backend module is imported only when its URL is opened, so the SQLite store
works without psycopg installed.

Examples
--------
>>> open_store("mysql://fleet")
Traceback (most recent call last):
...
edge_runtime.errors.ConfigError: store URL 'mysql://fleet' has an unknown scheme 'mysql'; use sqlite:///PATH or postgresql://USER@HOST:PORT/DB
"""

from __future__ import annotations

from pathlib import Path

from collector.stores.base import (
    Arrival,
    ArrivalOutcome,
    ClockOffset,
    DeviceRecord,
    FleetRetention,
    FleetStore,
    ModelRecord,
    PendingPart,
    StoredWindow,
    WindowKey,
)
from edge_runtime.errors import ConfigError

__all__ = ["Arrival", "ArrivalOutcome", "ClockOffset", "DeviceRecord", "FleetRetention", "FleetStore", "ModelRecord", "PendingPart",
           "StoredWindow", "WindowKey", "open_store"]


def open_store(url: str, *, create: bool = True) -> FleetStore:
    """Open (creating its tables when absent) the fleet store at ``url``.

    With ``create`` False (the read-only views), a SQLite file that does not exist is an
    error rather than a new, empty store that would answer "nothing here".

    Raises
    ------
    ConfigError
        The URL's scheme is neither ``sqlite`` nor ``postgresql``, or it names no file.
    collector.errors.FleetStoreError
        The database cannot be opened or reached.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "sqlite", "/" + url
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"store URL '{url}' names no file; use sqlite:///fleet.db (relative) or "
                              "sqlite:////abs/path/fleet.db")
        from collector.stores.sqlite_store import SQLiteFleetStore

        if not create and not Path(rest[1:]).is_file():
            raise ConfigError(f"no fleet store at '{rest[1:]}' (store URL '{url}'): a collector makes it "
                              "(edge-runtime collector serve, add-device or add-model)")
        return SQLiteFleetStore(rest[1:])
    if scheme in ("postgresql", "postgres"):
        try:
            from collector.stores.postgres_store import PostgresFleetStore
        except ImportError as exc:
            raise ConfigError(f"a PostgreSQL store needs psycopg ({exc}): pip install 'edge-runtime[collector]'") from exc
        return PostgresFleetStore(url)
    raise ConfigError(f"store URL '{url}' has an unknown scheme '{scheme}'; use sqlite:///PATH or "
                      "postgresql://USER@HOST:PORT/DB")
