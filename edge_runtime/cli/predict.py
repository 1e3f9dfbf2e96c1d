"""``predict``: score a CSV or JSON-lines file on the device, optionally monitored."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import click

from edge_runtime.cli.options import (
    config_option,
    db_option,
    format_from_name,
    library_errors,
)
from edge_runtime.io.rows import FORMATS, PredictionWriter, read_rows
from edge_runtime.io.scoring import score_rows
from edge_runtime.runtime import Runtime

__all__ = ["predict"]

_MAX_ROW_ERRORS_SHOWN = 20


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--input", "input_file", required=True, type=click.File("r"),
              help="CSV with a header row, or JSON lines; '-' reads standard input.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format (default: from the file name, else csv).")
@click.option("--output", type=click.File("w"), default="-", help="Where predictions go (default: standard output).")
@config_option()
@click.option("--drop", multiple=True, help="Input column to ignore (an id or target); repeatable.")
@click.option("--batch-size", type=click.IntRange(1), default=1024, show_default=True, help="Rows per model call.")
@db_option(required=False, help="Monitoring database (SQLite): turns on drift monitoring and the decision log.")
@click.option("--window-rows", type=click.IntRange(1), help="Rows per monitoring window (default 5000).")
@library_errors
def predict(bundle: Path, input_file: Any, fmt: str | None, output: Any, config: Path | None,
            drop: tuple[str, ...], batch_size: int, db: Path | None, window_rows: int | None) -> None:
    """Predict every row of a CSV or JSON-lines file.

    Writes one line per good row with its row number, a `prediction` column and,
    for classifiers, one `proba_<label>` column per class. Bad rows are reported
    on standard error by row number (1 = first data row) and the exit status is 1.
    With --db (or [monitoring] db in the config) every prediction is monitored and
    logged; SIGTERM or Ctrl-C stops cleanly, losing nothing already predicted.
    """
    fmt = fmt or format_from_name(input_file)
    _exit_cleanly_on_sigterm()
    total, errors = 0, []
    with Runtime(bundle, config=config, db=db, window_rows=window_rows) as runtime:
        columns = ["row", "prediction"] + [f"proba_{c}" for c in runtime.classes]
        writer = PredictionWriter(output, fmt, columns)
        for chunk in score_rows(runtime, read_rows(input_file, fmt, drop=drop), batch_size=batch_size):
            for record in chunk.records:
                writer.write(record)
            errors += chunk.errors
            total += chunk.rows
            output.flush()
    if errors:
        for error in errors[:_MAX_ROW_ERRORS_SHOWN]:
            click.echo(f"Error: {error}", err=True)
        if len(errors) > _MAX_ROW_ERRORS_SHOWN:
            click.echo(f"Error: ... and {len(errors) - _MAX_ROW_ERRORS_SHOWN} more bad rows", err=True)
        raise click.ClickException(f"{len(errors)} of {total} rows rejected; the other rows were written")


def _exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so `with Runtime(...)` flushes and closes the database."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
