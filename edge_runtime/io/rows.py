"""Reading input rows from CSV or JSON lines and writing predictions back.

No pandas on the device: the standard library's csv and json modules do it.

Examples
--------
>>> import io
>>> from edge_runtime.io.rows import read_rows
>>> rows = list(read_rows(io.StringIO("a,b\\n1,x\\n,y\\n"), "csv"))
>>> rows
[{'a': '1', 'b': 'x'}, {'a': None, 'b': 'y'}]
>>> list(read_rows(io.StringIO('{"a": 1}\\n\\n{"a": 2}\\n'), "jsonl"))
[{'a': 1}, {'a': 2}]
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from edge_runtime.errors import InputFormatError

__all__ = ["FORMATS", "PredictionWriter", "batched", "read_rows"]

FORMATS = ("csv", "jsonl")


def read_rows(stream: TextIO, fmt: str, *, drop: Iterable[str] = ()) -> Iterator[dict[str, Any] | Exception]:
    """Yield one dict per input row; a row that cannot be parsed yields its error instead.

    Parameters
    ----------
    stream : text file
        CSV with a header row, or one JSON object per line.
    fmt : {'csv', 'jsonl'}
    drop : iterable of str
        Columns to remove from every row (an id or target column, say).

    Notes
    -----
    An empty CSV cell is read as None, i.e. a missing value.
    """
    dropped = set(drop)
    if fmt == "csv":
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            return
        for number, cells in enumerate(reader, start=1):
            if len(cells) != len(header):
                yield InputFormatError(f"row {number}: {len(cells)} cells, the header has {len(header)}")
                continue
            yield {k: (v if v != "" else None) for k, v in zip(header, cells) if k not in dropped}
    elif fmt == "jsonl":
        number = 0
        for line in stream:
            if not line.strip():
                continue
            number += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield InputFormatError(f"row {number}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                yield InputFormatError(f"row {number}: expected a JSON object, got {type(row).__name__}")
                continue
            yield {k: v for k, v in row.items() if k not in dropped}
    else:
        raise InputFormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Group an iterable into lists of ``size`` (the last may be shorter)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class PredictionWriter:
    """Write prediction records (``row``, ``prediction``, ``proba_<label>``...) as CSV or JSON lines.

    Parameters
    ----------
    stream : text file
    fmt : {'csv', 'jsonl'}
    columns : list of str
        Column order for CSV.
    """

    def __init__(self, stream: TextIO, fmt: str, columns: list[str]) -> None:
        self._stream = stream
        self._fmt = fmt
        self._csv = csv.DictWriter(stream, fieldnames=columns) if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        """Write one record."""
        if self._csv is not None:
            self._csv.writerow(record)
        else:
            self._stream.write(json.dumps(record) + "\n")
