"""Scoring a stream of rows in batches: every good row is answered, every bad one reported by number.

This is what ``edge-runtime predict`` does with a file; the CLI only reads, writes
and prints. :class:`RowErrorTally` keeps the first row errors of a run and counts
the rest, so a file of a million bad rows costs no more memory than one of ten.

Examples
--------
>>> import tempfile, numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from converters import export
>>> from edge_runtime import Runtime
>>> from edge_runtime.io.scoring import score_rows
>>> X = np.random.default_rng(0).normal(size=(50, 2)); y = (X[:, 0] > 0).astype(int)
>>> path = export(LogisticRegression().fit(X, y), X, y, name="m", version="1",
...               feature_names=["a", "b"], out_dir=tempfile.mkdtemp() + "/m").path
>>> rows = [{"a": 1.0, "b": 0.0}, {"a": "x", "b": 0.0}, {"a": -1.0, "b": 0.0}]
>>> with Runtime(path) as rt:
...     chunks = list(score_rows(rt, rows, batch_size=2))
>>> [(r["row"], r["prediction"]) for c in chunks for r in c.records]
[(1, 1), (3, 0)]
>>> [str(e) for c in chunks for e in c.errors]
["row 2: feature 'a': value 'x' is not a number"]
>>> tally = RowErrorTally(keep=1)
>>> [str(e) for c in chunks for e in tally.add(c.errors)], tally.count, tally.omitted
(["row 2: feature 'a': value 'x' is not a number"], 1, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import OverloadError
from edge_runtime.io.rows import batched

if TYPE_CHECKING:
    from edge_runtime.runtime import Runtime

__all__ = ["RowError", "RowErrorTally", "ScoredChunk", "score_chunk", "score_rows"]


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that got no answer: its number in the input (1 = first data row) and why."""

    row: int
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """One batch's outcome: answered rows as records (``row`` is the input row number) and refused ones."""

    rows: int
    records: list[dict[str, Any]]
    errors: list[RowError]


@dataclass(slots=True)
class RowErrorTally:
    """The first ``keep`` row errors of a run, and how many there were in all.

    Attributes
    ----------
    keep : int
        Errors kept at most.
    kept : list of RowError
        The first errors, in input order.
    count : int
        Every error added.
    """

    keep: int = 20
    kept: list[RowError] = field(default_factory=list)
    count: int = 0

    def add(self, errors: Iterable[RowError]) -> list[RowError]:
        """Count ``errors``; return those kept from them (the ones to show now)."""
        new: list[RowError] = []
        for error in errors:
            self.count += 1
            if len(self.kept) < self.keep:
                self.kept.append(error)
                new.append(error)
        return new

    @property
    def omitted(self) -> int:
        """Errors counted but not kept."""
        return self.count - len(self.kept)


def score_chunk(runtime: Runtime, rows: list[dict[str, Any] | Exception], *, first_row: int = 1) -> ScoredChunk:
    """Predict one batch of parsed rows in one model call; number rows from ``first_row``.

    Parameters
    ----------
    runtime : Runtime
    rows : list of dict or Exception
        Parsed rows (as :func:`edge_runtime.io.rows.read_rows` yields them); an
        exception stands for a row that could not be parsed.
    first_row : int
        Input row number of ``rows[0]`` (1 = first data row).

    Returns
    -------
    ScoredChunk
        A batch refused by load shedding reports each of its rows as refused.
    """
    offset = first_row - 1
    good = [(i, r) for i, r in enumerate(rows) if not isinstance(r, Exception)]
    errors = [RowError(offset + i + 1, _without_row(r)) for i, r in enumerate(rows) if isinstance(r, Exception)]
    records: list[dict[str, Any]] = []
    if good:
        try:
            result = runtime.predict_batch([r for _, r in good], on_error="skip")
        except OverloadError as exc:
            errors += [RowError(offset + i + 1, str(exc)) for i, _ in good]
        else:
            errors += [RowError(offset + good[err.row or 0][0] + 1, err.args[0]) for err in result.errors]
            for record in result.records():
                record["row"] = offset + good[record["row"]][0] + 1
                records.append(record)
    errors.sort(key=lambda e: e.row)
    return ScoredChunk(rows=len(rows), records=records, errors=errors)


def score_rows(runtime: Runtime, rows: Iterable[dict[str, Any] | Exception], *,
               batch_size: int = 1024) -> Iterator[ScoredChunk]:
    """Predict rows in batches of ``batch_size``; yield each batch's answers and errors in input order.

    Parameters
    ----------
    runtime : Runtime
    rows : iterable of dict or Exception
        Parsed rows (as :func:`edge_runtime.io.rows.read_rows` yields them); an
        exception stands for a row that could not be parsed.
    batch_size : int
        Rows per model call.

    Yields
    ------
    ScoredChunk
        A batch refused by load shedding reports each of its rows as refused,
        and scoring goes on with the next batch.
    """
    done = 0
    for chunk in batched(rows, batch_size):
        yield score_chunk(runtime, chunk, first_row=done + 1)
        done += len(chunk)


def _without_row(error: Exception) -> str:
    """A parse error's message without its own ``row N:`` prefix (the chunk numbers rows itself)."""
    text = str(error)
    head, sep, rest = text.partition(": ")
    return rest if sep and head.startswith("row ") else text
