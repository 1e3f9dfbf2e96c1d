"""``predict``: score a CSV or JSON-lines file on the device, optionally monitored."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click

from edge_runtime.cli.options import (
    config_option,
    db_option,
    format_from_name,
    library_errors,
)
from edge_runtime.io.columns import shown_name
from edge_runtime.io.rows import FORMATS, PredictionWriter, batched, read_rows
from edge_runtime.io.scoring import RowErrorTally, score_chunk
from edge_runtime.runtime import Runtime
from edge_runtime.sync.background import start_background_sync

__all__ = ["predict"]

_MAX_ROW_ERRORS_SHOWN = 20


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--input", "input_file", required=True, type=click.File("rb"),
              help="CSV with a header row, or JSON lines; '-' reads standard input.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format (default: from the file name, else csv).")
@click.option("--encoding", default="utf-8", show_default=True,
              help="Text encoding of the input; a row it cannot decode is reported and the others are served.")
@click.option("--output", type=click.File("w"), default="-", help="Where predictions go (default: standard output).")
@config_option()
@click.option("--drop", multiple=True, help="Input column to ignore (an id or target); repeatable.")
@click.option("--ignore-extra-columns", is_flag=True,
              help="Ignore every input column (or JSON key) that is not a feature of the model.")
@click.option("--batch-size", type=click.IntRange(1), default=1024, show_default=True, help="Rows per model call.")
@db_option(required=False, help="Monitoring database (SQLite): turns on drift monitoring and the decision log.")
@click.option("--window-rows", type=click.IntRange(1), help="Rows per monitoring window (default 5000).")
@library_errors
def predict(bundle: Path, input_file: Any, fmt: str | None, encoding: str, output: Any, config: Path | None,
            drop: tuple[str, ...], ignore_extra_columns: bool, batch_size: int, db: Path | None,
            window_rows: int | None) -> None:
    """Predict every row of a CSV or JSON-lines file.

    Writes one line per good row with its row number, a `prediction` column and,
    for classifiers, one `proba_<label>` column per class. The CSV header is
    checked first: every missing feature and unknown column is named, and
    nothing is written (--drop or --ignore-extra-columns leaves extra columns
    out). A UTF-8 byte-order mark is dropped. Bad rows (a value that does not fit,
    a byte the --encoding cannot decode, an oversized field) are reported on
    standard error by row number (1 = first data row), the first 20 as they come,
    then a count; the other rows are served and the exit status is 1. With --db
    (or [monitoring] db in the config) every prediction is monitored and logged;
    a [sync] table in the config sends the closed windows upstream meanwhile.
    SIGTERM or Ctrl-C stops after the batch in hand is written, so every logged
    decision is in the output, and prints the summary (exit status 128 + signal).
    """
    fmt = fmt or format_from_name(input_file)
    tally = RowErrorTally(keep=_MAX_ROW_ERRORS_SHOWN)
    total = 0
    with _SignalsBetweenBatches() as signals:
        with signals.held(stop=False):
            runtime = Runtime(bundle, config=config, db=db, window_rows=window_rows)
            # [sync] enabled: closed windows go upstream from a background thread meanwhile.
            background = start_background_sync(runtime.config)
        try:
            signals.stop_if_received()
            reader = read_rows(input_file, fmt, features=runtime.feature_names, drop=drop,
                               ignore_extra=ignore_extra_columns, encoding=encoding)
            if reader.columns is not None and reader.ignored:
                _note_ignored(reader.ignored, "columns")
            columns = ["row", "prediction"] + [f"proba_{c}" for c in runtime.classes]
            writer = PredictionWriter(output, fmt, columns)
            for rows in batched(reader, batch_size):
                # Reading may be interrupted; from the model call until the answers are
                # flushed it may not: the monitor logs decisions during the call.
                with signals.held():
                    chunk = score_chunk(runtime, rows, first_row=total + 1)
                    for error in tally.add(chunk.errors):
                        click.echo(f"Error: {error}", err=True)
                    try:
                        for record in chunk.records:
                            writer.write(record)
                        output.flush()
                    except BrokenPipeError:
                        _report_closed_output(output, total + 1, total + chunk.rows, tally)
                        raise SystemExit(1) from None
                    total += chunk.rows
            if reader.columns is None and reader.ignored:
                _note_ignored(reader.ignored, "keys")
        except _Stopped as stop:
            _report_omitted(tally)
            click.echo(f"Error: stopped by {signal.Signals(stop.signum).name} after {total} rows; "
                       f"{tally.count} of them rejected, the other rows were written", err=True)
            raise SystemExit(128 + stop.signum) from None
        finally:
            with signals.held(stop=False):
                runtime.close()
                if background is not None:
                    background.close()
    if tally.count:
        _report_omitted(tally)
        raise click.ClickException(f"{tally.count} of {total} rows rejected; the other rows were written")


def _report_omitted(tally: RowErrorTally) -> None:
    if tally.omitted:
        click.echo(f"Error: ... and {tally.omitted} more bad rows", err=True)


def _report_closed_output(output: Any, first: int, last: int, tally: RowErrorTally) -> None:
    if output is sys.stdout or getattr(output, "name", None) == "<stdout>":
        # Python flushes standard output once more at exit: into the void, not into a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    _report_omitted(tally)
    click.echo(f"Error: the output was closed: rows {first} to {last} were predicted but may be missing from it, "
               f"and no later row was read; {tally.count} of {last} rows rejected", err=True)


def _note_ignored(names: tuple[str, ...], what: str) -> None:
    click.echo(f"Note: ignoring {what} that are not features of the model: "
               f"{', '.join(shown_name(n) for n in names)}", err=True)


class _Stopped(BaseException):
    """SIGTERM or SIGINT, raised between batches (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _SignalsBetweenBatches:
    """SIGTERM and SIGINT stop the command, but never between a model call and the writing of its answers.

    The monitor may log a batch's decisions during the model call; a signal
    that arrived since is held until the batch's answers are written and
    flushed, so the output is never behind the decision log. Outside a held
    section (reading the input) a signal stops at once. Python delivers signals
    to the main thread only; elsewhere nothing is installed.
    """

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._holding = False
        self._stopping = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalsBetweenBatches:
        if threading.current_thread() is threading.main_thread():
            for signum in self._SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @contextlib.contextmanager
    def held(self, *, stop: bool = True) -> Iterator[None]:
        """Hold signals in the block; after it, stop if one came (``stop``), else leave it pending."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if stop:
            self.stop_if_received()

    def stop_if_received(self) -> None:
        """Raise _Stopped if a signal came while held (once: stopping is not interrupted again)."""
        if self.received is not None and not self._stopping:
            self._stopping = True
            raise _Stopped(self.received)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if not self._holding:
            self.stop_if_received()
