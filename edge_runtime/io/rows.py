"""Reading input rows from CSV or JSON lines and writing predictions back.

No pandas on the device: the standard library's csv and json modules do it.

Input is read as bytes and decoded here, so that a byte the encoding cannot
decode fails its own row and never the run, and a UTF-8 byte-order mark (what
Excel writes) is dropped. A CSV header is matched with the model's features
once, before any row is read; a row that cannot be parsed (ragged, an
oversized field, broken JSON) yields its error and reading goes on.

Examples
--------
>>> import io
>>> from edge_runtime.io.rows import read_rows
>>> list(read_rows(io.BytesIO(b"a,b\\n1,x\\n,y\\n"), "csv"))
[{'a': '1', 'b': 'x'}, {'a': None, 'b': 'y'}]
>>> list(read_rows(io.StringIO('{"a": 1}\\n\\n{"a": 2}\\n'), "jsonl"))
[{'a': 1}, {'a': 2}]
>>> data = b"\\xef\\xbb\\xbfage,churn\\n41,1\\n4\\xe91,0\\n"
>>> reader = read_rows(io.BytesIO(data), "csv", features=["age"], ignore_extra=True)
>>> reader.ignored
('churn',)
>>> [row if isinstance(row, dict) else str(row) for row in reader]
[{'age': '41'}, 'row 2: not valid utf-8 (byte 0xe9 at position 1); use --encoding to name the encoding of the file']
>>> read_rows(io.BytesIO(b"Age,churn\\n41,1\\n"), "csv", features=["age"])
Traceback (most recent call last):
...
edge_runtime.errors.ColumnMismatchError: the header does not match the model's features: missing 'age'; extra 'Age' (did you mean 'age'?), 'churn'
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from edge_runtime.errors import ColumnMismatchError, InputFormatError
from edge_runtime.io.columns import match_columns, shown_name

__all__ = ["FORMATS", "PredictionWriter", "RowReader", "batched", "read_rows"]

FORMATS = ("csv", "jsonl")

# Keys left out of JSON rows (ignore_extra) that are remembered for the caller's note.
_IGNORED_KEPT = 20

# A byte the encoding cannot decode becomes the lone surrogate U+DC00 + byte (as
# Python's "surrogateescape" does, but for any byte value): no decoded text holds
# one otherwise, so the row it lands in is found after parsing and reported alone.
_MARKER_ERRORS = "edge_runtime.mark_undecodable"
_MARKED = re.compile("[\udc00-\udcff]")


def _mark_undecodable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start:error.end]
    return "".join(chr(0xDC00 + b) for b in bad), error.end


codecs.register_error(_MARKER_ERRORS, _mark_undecodable)


def read_rows(stream: IO[Any], fmt: str, *, features: Sequence[str] | None = None, drop: Iterable[str] = (),
              ignore_extra: bool = False, encoding: str = "utf-8") -> RowReader:
    """Open an input for reading rows; a CSV header is read and checked now.

    Parameters
    ----------
    stream : binary or text file
        CSV with a header row, or one JSON object per line. A binary stream is
        decoded with ``encoding``; a text stream is read as it is.
    fmt : {'csv', 'jsonl'}
    features : sequence of str, optional
        The model's features. When given, a CSV header must name each of them
        once, and every extra column (or JSON key) is refused, unless dropped or
        ``ignore_extra``; rows then hold exactly the features.
    drop : iterable of str
        Columns to remove from every row (an id or target column, say).
    ignore_extra : bool
        Leave out every column that is not a feature (needs ``features``).
    encoding : str
        Encoding of a binary stream.

    Returns
    -------
    RowReader
        Iterate it for one dict per row, or that row's error instead.

    Raises
    ------
    ColumnMismatchError
        The CSV header lacks a feature, repeats one, or has a column that is no
        feature (every name is listed, with near-name hints).
    InputFormatError
        Unknown format or encoding, a header that cannot be decoded, or a CSV with no header at all.

    Notes
    -----
    An empty CSV cell is read as None, i.e. a missing value. Blank lines are
    skipped and not counted: row 1 is the first data row.
    """
    if fmt not in FORMATS:
        raise InputFormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return RowReader(_Lines(stream, encoding), fmt, features=features, drop=drop, ignore_extra=ignore_extra)


class RowReader:
    """The rows of one CSV or JSON-lines input, made by :func:`read_rows`.

    Iterating yields one dict per row, or instead an :class:`InputFormatError`
    saying what is wrong with that row (``row N: ...``). It can be iterated once.

    Attributes
    ----------
    columns : tuple of str or None
        The CSV header (None for JSON lines, or an empty input).
    ignored : tuple of str
        Columns left out because they are no feature (``ignore_extra``): the
        header's, or for JSON lines the first keys met so far.
    """

    def __init__(self, lines: _Lines, fmt: str, *, features: Sequence[str] | None, drop: Iterable[str],
                 ignore_extra: bool) -> None:
        self._lines = lines
        self._features = tuple(features) if features is not None else None
        self._dropped = frozenset(drop)
        self._ignore_extra = ignore_extra
        self.columns: tuple[str, ...] | None = None
        self.ignored: tuple[str, ...] = ()
        self._rows: Iterator[dict[str, Any] | Exception]
        if fmt == "csv":
            reader = csv.reader(lines)
            try:
                header = next(reader, None)
            except csv.Error as exc:  # a header cell past csv's field limit, say
                raise InputFormatError(f"the header row cannot be read as CSV: {_brief_csv_error(exc)}") from exc
            problem = lines.decode_problem()
            lines.start_record()
            if header is None:
                if features is not None:  # a zero-byte file: a truncated export, most likely
                    raise InputFormatError("the CSV input is empty: it has no header row naming the features")
                self._rows = iter(())
                return
            if problem:
                raise InputFormatError(f"the header is {problem}")
            self.columns = tuple(header)
            self._rows = self._csv_rows(reader, self._picks(header))
        else:
            self._rows = self._jsonl_rows()

    def __iter__(self) -> Iterator[dict[str, Any] | Exception]:
        return self._rows

    def _picks(self, header: list[str]) -> list[tuple[str, int]]:
        """(name, cell index) of each column a row keeps."""
        if self._features is None:
            return [(name, i) for i, name in enumerate(header) if name not in self._dropped]
        match = match_columns(header, self._features, drop=self._dropped, ignore_extra=self._ignore_extra)
        if not match.ok:
            raise ColumnMismatchError(f"the header does not match the model's features: {match.describe()}")
        self.ignored = match.extra
        return [(name, header.index(name)) for name in self._features]

    def _csv_rows(self, reader: Any, picks: list[tuple[str, int]]) -> Iterator[dict[str, Any] | Exception]:
        lines, width, number = self._lines, len(self.columns or ()), 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # The reader goes on with the next line; this row alone is lost.
                number += 1
                yield InputFormatError(f"row {number}: {self._csv_problem(exc)}")
                lines.start_record()
                continue
            if not cells:  # a blank line
                lines.start_record()
                continue
            number += 1
            if lines.undecodable:
                yield InputFormatError(f"row {number}: {lines.decode_problem()}")
            elif len(cells) != width:
                yield InputFormatError(f"row {number}: {len(cells)} cells, the header has {width}")
            else:
                yield {name: (cells[i] if cells[i] != "" else None) for name, i in picks}
            lines.start_record()

    def _csv_problem(self, error: csv.Error) -> str:
        text = shown_name("".join(self._lines.record).rstrip("\r\n"))
        if str(error).startswith("field larger than field limit"):
            return (f"a field is longer than {csv.field_size_limit():,} characters, the most a CSV field "
                    f"may hold; the row reads {text}")
        return f"not valid CSV ({error}); the row reads {text}"

    def _jsonl_rows(self) -> Iterator[dict[str, Any] | Exception]:
        lines, number = self._lines, 0
        features = frozenset(self._features) if self._features is not None else None
        for line in lines:
            if not line.strip():
                lines.start_record()
                continue
            number += 1
            problem = lines.decode_problem()
            lines.start_record()
            if problem:
                yield InputFormatError(f"row {number}: {problem}")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield InputFormatError(f"row {number}: not valid JSON ({exc.msg})")
                continue
            except ValueError:  # Python reads no int of more than 4,300 digits
                yield InputFormatError(f"row {number}: not valid JSON (a number of too many digits)")
                continue
            except RecursionError:
                yield InputFormatError(f"row {number}: not valid JSON (nested too deeply)")
                continue
            if not isinstance(row, dict):
                yield InputFormatError(f"row {number}: expected a JSON object, got {type(row).__name__}")
            elif features is None:
                yield {k: v for k, v in row.items() if k not in self._dropped} if self._dropped else row
            elif row.keys() == features:
                yield row
            else:
                yield self._json_keys_checked(row, features, number)

    def _json_keys_checked(self, row: dict[str, Any], features: frozenset[str],
                           number: int) -> dict[str, Any] | Exception:
        """A JSON row of other keys than the features: every unknown key named at once, or left out.

        Missing keys alone are left for the runtime to report, as for any dict row.
        """
        extra = [key for key in row if key not in features and key not in self._dropped]
        if extra and not self._ignore_extra:
            assert self._features is not None
            match = match_columns(row, self._features, drop=self._dropped)
            return ColumnMismatchError(f"row {number}: the keys do not match the model's features: "
                                       f"{match.describe()}")
        if extra and len(self.ignored) < _IGNORED_KEPT:
            self.ignored += tuple(k for k in dict.fromkeys(extra) if k not in self.ignored)[
                : _IGNORED_KEPT - len(self.ignored)]
        return {key: value for key, value in row.items() if key in features}


class _Lines:
    """The decoded lines of an input, remembering those of the record being parsed.

    The parser pulls lines one at a time (a quoted CSV field may span several);
    the reader calls :meth:`start_record` after each record.
    """

    def __init__(self, stream: IO[Any], encoding: str) -> None:
        self.encoding = encoding
        self._wrapper: io.TextIOWrapper | None = None
        if isinstance(stream, io.TextIOBase):
            self._text: Iterable[str] = stream
        else:
            try:
                codecs.lookup(encoding)
            except LookupError as exc:
                raise InputFormatError(f"unknown encoding {encoding!r}") from exc
            # newline="": the csv module reads line endings inside quoted fields itself.
            self._wrapper = io.TextIOWrapper(stream, encoding=encoding, errors=_MARKER_ERRORS, newline="")
            self._text = self._wrapper
        self.record: list[str] = []
        self.undecodable = False
        self._iterator = self._read()

    def __iter__(self) -> Iterator[str]:
        return self._iterator

    def __next__(self) -> str:
        return next(self._iterator)

    def start_record(self) -> None:
        """Forget the lines of the record just parsed."""
        self.record.clear()
        self.undecodable = False

    def decode_problem(self) -> str | None:
        """What the current record's first undecodable byte is, or None when it has none."""
        if not self.undecodable:
            return None
        text = "".join(self.record)
        match = _MARKED.search(text)
        assert match is not None
        try:
            position = len(text[: match.start()].encode(self.encoding))
        except (UnicodeError, LookupError):
            position = match.start()
        return (f"not valid {self.encoding} (byte 0x{ord(match.group()) - 0xDC00:02x} at position {position}); "
                "use --encoding to name the encoding of the file")

    def _read(self) -> Iterator[str]:
        first = True
        try:
            for line in self._text:
                if first:
                    first = False
                    line = line.removeprefix("\ufeff")  # a byte-order mark
                if self._wrapper is not None and not line.isascii() and _MARKED.search(line):
                    self.undecodable = True
                self.record.append(line)
                yield line
        except UnicodeError as exc:  # raised by the codec itself, e.g. "UTF-16 stream does not start with BOM"
            raise InputFormatError(f"the input is not valid {self.encoding}: {exc}") from exc
        finally:
            if self._wrapper is not None:
                # Hand the caller's stream back open: the wrapper would close it when collected.
                try:
                    self._wrapper.detach()
                except ValueError:  # the stream was closed under us
                    pass


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

    Lines end with ``\\n`` in both formats.

    Parameters
    ----------
    stream : text file
    fmt : {'csv', 'jsonl'}
    columns : list of str
        Column order for CSV.
    """

    def __init__(self, stream: IO[str], fmt: str, columns: list[str]) -> None:
        self._stream = stream
        self._fmt = fmt
        # lineterminator: the csv module's default is "\r\n".
        self._csv = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        """Write one record."""
        if self._csv is not None:
            self._csv.writerow(record)
        else:
            self._stream.write(json.dumps(record) + "\n")


def _brief_csv_error(exc: csv.Error) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."
