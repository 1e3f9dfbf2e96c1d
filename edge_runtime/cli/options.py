"""What every command shares: the one error boundary and the options declared once.

Library errors become one ``Error: ...`` line and exit status 1 here, at this one
boundary; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edge_runtime.errors import EdgeRuntimeError

__all__ = ["config_option", "db_option", "format_from_name", "json_option", "library_errors"]

F = TypeVar("F", bound=Callable[..., Any])


def library_errors(func: F) -> F:
    """Turn library errors into click's one-line ``Error: ...`` unless --debug is on."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            # The reader went away (`... | head`): not an error worth a message.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except (EdgeRuntimeError, OSError) as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt as exc:  # Ctrl-C: one line, like every other stop (click says "Aborted!")
            raise click.ClickException("interrupted") from exc

    return wrapper  # type: ignore[return-value]


def json_option(help: str = "Print JSON.") -> Callable[[F], F]:
    """``--json``, passed to the command as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def db_option(*, required: bool = True,
              help: str = "Monitoring database (SQLite).") -> Callable[[F], F]:
    """``--db PATH`` of a monitoring database."""
    return click.option("--db", required=required, type=click.Path(dir_okay=False, path_type=Path), help=help)


def config_option() -> Callable[[F], F]:
    """``--config FILE``: a device config (TOML)."""
    return click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        help="Device config (TOML).")


def format_from_name(stream: Any) -> str:
    """``jsonl`` for a file named ``*.jsonl`` or ``*.ndjson``, else ``csv``."""
    return "jsonl" if str(getattr(stream, "name", "")).endswith((".jsonl", ".ndjson")) else "csv"
