"""Reading hostile input files: encodings, byte-order marks, headers, oversized fields, broken JSON."""

from __future__ import annotations

import csv
import io
import json

import pytest

from edge_runtime.errors import ColumnMismatchError, InputFormatError
from edge_runtime.io.columns import match_columns
from edge_runtime.io.rows import PredictionWriter, batched, read_rows
from edge_runtime.io.scoring import RowError, RowErrorTally

FEATURES = ["age", "income", "city"]


def _read(data: bytes, fmt: str = "csv", **kwargs: object) -> list[object]:
    return [row if isinstance(row, dict) else str(row)
            for row in read_rows(io.BytesIO(data), fmt, **kwargs)]  # type: ignore[arg-type]


# ------------------------------------------------------------------ encodings
def test_utf8_byte_order_mark_is_dropped() -> None:
    data = "age,income,city\n41,52000,lyon\n".encode("utf-8-sig")
    assert _read(data, features=FEATURES) == [{"age": "41", "income": "52000", "city": "lyon"}]
    text = io.StringIO("\ufeffage,income,city\n41,52000,lyon\n")
    assert list(read_rows(text, "csv", features=FEATURES)) == [{"age": "41", "income": "52000", "city": "lyon"}]
    jsonl = '{"age": 41}\n'.encode("utf-8-sig")
    assert _read(jsonl, "jsonl") == [{"age": 41}]


def test_an_undecodable_byte_fails_its_row_only() -> None:
    lines = [b"age,income,city"] + [b"41,52000,lyon"] * 6 + [b"41,52000,S\xc3\xa9te\xe9"] + [b"42,1,nice"] * 3
    rows = _read(b"\n".join(lines) + b"\n", features=FEATURES)
    assert len(rows) == 10
    # position counts bytes: "41,52000,S" is 10, the valid "é" 2 more, "te" 2 more
    assert rows[6] == ("row 7: not valid utf-8 (byte 0xe9 at position 14); "
                       "use --encoding to name the encoding of the file")
    assert all(isinstance(r, dict) for i, r in enumerate(rows) if i != 6)
    assert rows[7] == {"age": "42", "income": "1", "city": "nice"}


def test_an_undecodable_byte_in_jsonl_and_a_truncated_last_character() -> None:
    rows = _read(b'{"age": 1}\n{"age": "\xff"}\n{"age": 3}\n{"age": "\xc3', "jsonl")
    assert rows[0] == {"age": 1} and rows[2] == {"age": 3}
    assert rows[1].startswith("row 2: not valid utf-8 (byte 0xff at position 9)")
    assert rows[3].startswith("row 4: not valid utf-8 (byte 0xc3 at position 9)")


def test_encoding_option_reads_latin1() -> None:
    data = "age,income,city\n41,52000,Sète\n".encode("latin-1")
    assert _read(data, features=FEATURES)[0].startswith("row 1: not valid utf-8 (byte 0xe8")
    assert _read(data, features=FEATURES, encoding="latin-1") == [{"age": "41", "income": "52000", "city": "Sète"}]
    utf16 = "age,income,city\n41,52000,Sète\n".encode("utf-16")
    assert _read(utf16, features=FEATURES, encoding="utf-16") == [{"age": "41", "income": "52000", "city": "Sète"}]


def test_unknown_encoding_and_undecodable_header() -> None:
    with pytest.raises(InputFormatError, match="unknown encoding 'klingon'"):
        read_rows(io.BytesIO(b"a\n1\n"), "csv", encoding="klingon")
    with pytest.raises(InputFormatError, match=r"^the header is not valid utf-8 \(byte 0xe9 at position 1\)"):
        read_rows(io.BytesIO(b"a\xe9\n1\n"), "csv")


def test_quoted_fields_with_line_breaks_still_work() -> None:
    data = (b'age,income,city,notes\r\n41,1,lyon,"two\r\nlines"\r\n42,2,nice,"caf\xe9\nbad"\r\n'
            b'43,3,paris,"three\nlines\nhere"\r\n')
    rows = _read(data, features=FEATURES, drop=["notes"])
    assert rows[0] == {"age": "41", "income": "1", "city": "lyon"}
    assert rows[1].startswith("row 2: not valid utf-8 (byte 0xe9 at position 14)")
    assert rows[2] == {"age": "43", "income": "3", "city": "paris"}
    with_notes = list(read_rows(io.BytesIO(data), "csv"))
    assert with_notes[0]["notes"] == "two\r\nlines" and with_notes[2]["notes"] == "three\nlines\nhere"


# ------------------------------------------------------------------ headers
def test_header_names_every_missing_and_extra_column_at_once() -> None:
    with pytest.raises(ColumnMismatchError) as info:
        read_rows(io.BytesIO(b"Age,income,churn,customer_id\n1,2,3,4\n"), "csv", features=FEATURES)
    assert str(info.value) == ("the header does not match the model's features: missing 'age', 'city'; "
                               "extra 'Age' (did you mean 'age'?), 'churn', 'customer_id'")


def test_header_check_knows_drop_repeats_and_ignore_extra() -> None:
    with pytest.raises(ColumnMismatchError, match=r"missing 'city' \(dropped\); repeated 'age'$"):
        read_rows(io.BytesIO(b"age,age,income,city\n"), "csv", features=FEATURES, drop=["city"])
    reader = read_rows(io.BytesIO(b"id,age,churn,income,city\n7,41,1,5,lyon\n"), "csv", features=FEATURES,
                       ignore_extra=True)
    assert reader.columns == ("id", "age", "churn", "income", "city") and reader.ignored == ("id", "churn")
    assert list(reader) == [{"age": "41", "income": "5", "city": "lyon"}]


def test_header_message_stays_one_short_line_for_a_hostile_header() -> None:
    header = ",".join(["x" * 100_000] + [f"c{i}" for i in range(5000)])
    with pytest.raises(ColumnMismatchError) as info:
        read_rows(io.StringIO(header + "\n"), "csv", features=FEATURES)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    assert "'xxxxxxxxxx" in message and "(100,000 characters)" in message and "and 4,981 more" in message


def test_match_columns_hints_only_close_names() -> None:
    match = match_columns([" income", "AGE", "zzz"], FEATURES)
    assert match.describe() == ("missing 'age', 'income', 'city'; "
                                "extra ' income' (did you mean 'income'?), 'AGE' (did you mean 'age'?), 'zzz'")


def test_an_empty_input_has_no_rows() -> None:
    with pytest.raises(InputFormatError, match="the CSV input is empty: it has no header row"):
        _read(b"", features=FEATURES)  # not even a header: a truncated file, not zero rows
    assert _read(b"age,income,city\n", features=FEATURES) == []
    assert _read(b"", "jsonl", features=FEATURES) == []


# ------------------------------------------------------------------ csv rows
def test_oversized_field_gets_a_bounded_message_and_reading_goes_on() -> None:
    limit = csv.field_size_limit()
    data = (b"age,income,city\n1,2,lyon\n1,2," + b"y" * (limit + 10) + b"\n3,4,nice\n")
    rows = _read(data, features=FEATURES)
    assert rows[0] == {"age": "1", "income": "2", "city": "lyon"} and rows[2] == {"age": "3", "income": "4",
                                                                                  "city": "nice"}
    assert rows[1] == (f"row 2: a field is longer than {limit:,} characters, the most a CSV field may hold; "
                       f"the row reads '1,2,{'y' * 56}'… ({limit + 14:,} characters)")


def test_ragged_and_blank_lines() -> None:
    rows = _read(b"age,income,city\n\n1,2\n1,2,3\n\r\n", features=FEATURES)
    assert rows == ["row 1: 2 cells, the header has 3", {"age": "1", "income": "2", "city": "3"}]


def test_empty_cells_are_missing_values() -> None:
    assert _read(b"age,income,city\n,2,\n", features=FEATURES) == [{"age": None, "income": "2", "city": None}]


# ------------------------------------------------------------------ json lines
def test_jsonl_names_every_unknown_key_at_once() -> None:
    data = b'{"Age": 1, "income": 2, "city": "a", "colour": 3}\n{"age": 1, "income": 2, "city": "a"}\n'
    rows = _read(data, "jsonl", features=FEATURES)
    assert rows[0] == ("row 1: the keys do not match the model's features: missing 'age'; "
                       "extra 'Age' (did you mean 'age'?), 'colour'")
    assert rows[1] == {"age": 1, "income": 2, "city": "a"}


def test_jsonl_missing_keys_alone_are_left_to_the_runtime_and_extra_keys_may_be_ignored() -> None:
    assert _read(b'{"age": 1}\n', "jsonl", features=FEATURES) == [{"age": 1}]
    reader = read_rows(io.BytesIO(b'{"age": 1, "id": 2, "income": 3, "city": "a"}\n{"age": 1, "id": 3, "x": 0}\n'),
                       "jsonl", features=FEATURES, ignore_extra=True)
    assert list(reader) == [{"age": 1, "income": 3, "city": "a"}, {"age": 1}]
    assert reader.ignored == ("id", "x")
    dropped = _read(b'{"age": 1, "id": 2, "income": 3, "city": "a"}\n', "jsonl", features=FEATURES, drop=["id"])
    assert dropped == [{"age": 1, "income": 3, "city": "a"}]


def test_jsonl_broken_rows() -> None:
    data = b"\n".join([b'{"age": 1', b"[1, 2]", b"[" * 100_000, b'{"age": ' + b"9" * 5000 + b"}", b'{"age": 2}'])
    assert _read(data, "jsonl") == [
        "row 1: not valid JSON (Expecting ',' delimiter)",
        "row 2: expected a JSON object, got list",
        "row 3: not valid JSON (nested too deeply)",
        "row 4: not valid JSON (a number of too many digits)",
        {"age": 2},
    ]


def test_unknown_format() -> None:
    with pytest.raises(InputFormatError, match="unknown format 'xml'; choose one of csv, jsonl"):
        read_rows(io.BytesIO(b""), "xml")


# ------------------------------------------------------------------ writing
def test_output_lines_end_with_a_newline_only() -> None:
    for fmt in ("csv", "jsonl"):
        out = io.StringIO(newline="")
        writer = PredictionWriter(out, fmt, ["row", "prediction"])
        writer.write({"row": 1, "prediction": "a"})
        assert "\r" not in out.getvalue()
        assert out.getvalue().endswith('"prediction": "a"}\n' if fmt == "jsonl" else "1,a\n")
    assert json.loads(out.getvalue()) == {"row": 1, "prediction": "a"}


def test_batched_and_the_error_tally() -> None:
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]
    tally = RowErrorTally(keep=2)
    assert tally.add([RowError(1, "a")]) == [RowError(1, "a")]
    assert tally.add([RowError(2, "b"), RowError(3, "c"), RowError(4, "d")]) == [RowError(2, "b")]
    assert (tally.count, tally.omitted, [str(e) for e in tally.kept]) == (4, 2, ["row 1: a", "row 2: b"])
