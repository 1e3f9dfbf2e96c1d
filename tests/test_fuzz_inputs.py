"""Property-based fuzzing of everything a user can hand the device: no traceback, ever.

Each generated case is answered, or refused with a ``SchemaError``
(a row), an ``InputFormatError`` (a file) or a ``ConfigError`` (a config); any
other exception, or a RuntimeWarning, fails the test. Messages stay bounded.

Every test runs in two tiers: a small deterministic run in the fast tier, and a
large one marked slow (``pytest -m "slow or not slow"``). The slow tier tries
the cases in ``MANY``, per runtime where a test runs on both bundles (tensor
and columns layout): 12,000 in all (``test_the_slow_tier_tries_ten_thousand_cases``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import string
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_runtime import Runtime
from edge_runtime.config import (
    BudgetConfig,
    DriftPolicy,
    InputPolicy,
    MonitoringConfig,
    RetentionPolicy,
    RuntimeConfig,
    SessionConfig,
    config_from_dict,
    load_config,
)
from edge_runtime.errors import ConfigError, InputFormatError, SchemaError
from edge_runtime.io.rows import read_rows
from edge_runtime.io.scoring import score_chunk
from edge_runtime.serving.results import BatchResult, Prediction

pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:Generating overly large repr")]

# Cases per test (and runtime) in the slow tier; the fast tier tries FEW of each.
MANY = {
    "csv_bytes": 600, "csv_documents": 500, "jsonl_bytes": 600, "jsonl_documents": 500,
    "dict_rows": 800, "sequence_rows": 600, "numpy_rows": 800, "batches": 300,
    "config_dicts": 2000, "config_files": 600,
}
PER_RUNTIME = {"csv_bytes", "csv_documents", "jsonl_bytes", "jsonl_documents", "dict_rows", "sequence_rows",
               "numpy_rows", "batches"}
FEW = 25
MESSAGE_CHARS = 2000  # no message, however hostile the input, is longer


def test_the_slow_tier_tries_ten_thousand_cases() -> None:
    assert sum(n * (2 if name in PER_RUNTIME else 1) for name, n in MANY.items()) == 12_000


def tiers(name: str) -> list[Any]:
    return [pytest.param(FEW, id="fast"), pytest.param(MANY[name], id="many", marks=pytest.mark.slow)]


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Deterministic settings: the same cases on every run, no example database."""
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def cancer_rt(cancer_bundle: Path) -> Any:
    """Tensor layout: 30 numeric features."""
    with Runtime(cancer_bundle) as rt:
        yield rt


@pytest.fixture(scope="module")
def mixed_rt(mixed_bundle: Path) -> Any:
    """Columns layout: numeric and categorical features, NaN allowed in 'age'."""
    with Runtime(mixed_bundle) as rt:
        yield rt


@pytest.fixture(scope="module", params=["cancer", "mixed"])
def rt(request: pytest.FixtureRequest, cancer_rt: Runtime, mixed_rt: Runtime) -> Runtime:
    return cancer_rt if request.param == "cancer" else mixed_rt


# ------------------------------------------------------------------ values
HOSTILE_TEXT = [
    "", " ", "nan", "NaN", "-inf", "Infinity", "1e308", "-1e39", "1e309", "3.4028235e38", "3.4028236e38",
    "0x10", "1_000", " 1 ", "1,5", "1e-400", "-0", "true", "None", "null", "paris", "lyon", "basic", "pro",
    "\x00", "é", "\ufeff", "\r", "\n", '"', "'", ",", "\udce9",
]
# Long text (a number of 5,000 digits, a 200 KB field), made on demand: it would fill every report.
LONG_TEXT = st.sampled_from([("9", 400), ("9", 5000), ("x", 300), ("x", 200_000)]).map(lambda c: c[0] * c[1])
TEXTS = st.sampled_from(HOSTILE_TEXT) | LONG_TEXT
VALUES = st.one_of(
    st.floats(),
    st.floats(width=32),
    st.integers(),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.none(),
    st.booleans(),
    TEXTS,
    st.text(max_size=12),
    st.binary(max_size=8),
    st.complex_numbers(max_magnitude=1e10),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.fractions(max_denominator=10**6),
    st.floats().map(np.float64),
    st.floats(width=32).map(np.float32),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.lists(st.floats(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _check_prediction(runtime: Runtime, row: Any) -> None:
    try:
        prediction = runtime.predict(row)
    except SchemaError as exc:
        assert len(str(exc)) < MESSAGE_CHARS, str(exc)[:200]
        return
    assert isinstance(prediction, Prediction) and prediction.label is not None
    if prediction.scores is not None:
        assert np.all(np.isfinite(prediction.scores))


def _check_batch(runtime: Runtime, rows: Any, n_rows: int) -> None:
    try:
        result = runtime.predict_batch(rows, on_error="skip")
    except SchemaError as exc:  # the batch as a whole does not fit (a matrix of the wrong width)
        assert len(str(exc)) < MESSAGE_CHARS
        return
    assert isinstance(result, BatchResult)
    assert len(result) + len(result.errors) == n_rows
    assert sorted(result.rows.tolist() + [e.row for e in result.errors]) == list(range(n_rows))
    assert all(isinstance(e, SchemaError) and len(str(e)) < MESSAGE_CHARS for e in result.errors)


def _serve_file(runtime: Runtime, data: bytes, fmt: str, **options: Any) -> None:
    """Read a file as `edge-runtime predict` does and score every row it yields."""
    try:
        reader = read_rows(io.BytesIO(data), fmt, features=runtime.feature_names, **options)
    except InputFormatError as exc:  # the header: mismatched columns, undecodable
        assert len(str(exc)) < MESSAGE_CHARS, str(exc)[:200]
        return
    rows = list(reader)
    assert all(isinstance(r, dict) or isinstance(r, InputFormatError) for r in rows)
    chunk = score_chunk(runtime, rows)
    assert len(chunk.records) + len(chunk.errors) == len(rows)
    assert [r["row"] for r in chunk.records] == sorted(r["row"] for r in chunk.records)
    assert all(len(str(e)) < MESSAGE_CHARS for e in chunk.errors), max(chunk.errors, key=lambda e: len(str(e)))


# ------------------------------------------------------------------ files
@st.composite
def csv_documents(draw: st.DrawFn, features: tuple[str, ...]) -> tuple[bytes, dict[str, Any]]:
    """A CSV much like a real one: the features (some renamed, dropped or repeated), extra columns, hostile cells."""
    columns = list(draw(st.permutations(features)))
    for i in draw(st.lists(st.integers(0, len(columns) - 1), max_size=2)):
        columns[i] = draw(st.sampled_from([columns[i].upper(), f" {columns[i]}", columns[i] + "_", ""]))
    extra = draw(st.lists(st.sampled_from(["id", "churn", "Age", "", "x" * 300]) | st.text(max_size=8), max_size=3))
    header = columns + extra + draw(st.lists(st.sampled_from(features), max_size=1))
    cells = st.one_of(TEXTS, st.floats().map(repr), st.integers().map(str), st.text(max_size=10))
    rows = draw(st.lists(st.lists(cells, min_size=len(header) - 1, max_size=len(header) + 1), max_size=6))
    text = io.StringIO()
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    writer = csv.writer(text, quoting=quoting, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerows([header, *rows])
    data = text.getvalue().encode("utf-8", errors="surrogatepass")  # a lone surrogate: bytes UTF-8 refuses
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    for position, byte in draw(st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)), st.binary(min_size=1,
                                                                                                      max_size=2)),
                                        max_size=2)):
        data = data[:position] + byte + data[position:]
    options = {"drop": draw(st.lists(st.sampled_from(header or ["id"]), max_size=2)),
               "ignore_extra": draw(st.booleans()),
               "encoding": draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "cp1252", "utf-16"]))}
    return data, options


@st.composite
def jsonl_documents(draw: st.DrawFn, features: tuple[str, ...]) -> tuple[bytes, dict[str, Any]]:
    """JSON lines much like real ones: objects of features and extra keys, hostile values, junk lines."""
    leaves = st.one_of(st.none(), st.booleans(), st.floats(), st.integers(min_value=-(10**300), max_value=10**300),
                       TEXTS, st.text(max_size=10))
    values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=4), inner, max_size=3), max_leaves=6)
    keys = st.sampled_from([*features, *(f.upper() for f in features), "id", "churn", "", "x" * 300]) | st.text(
        max_size=6)
    objects = st.dictionaries(keys, values, max_size=len(features) + 3)
    full_rows = st.fixed_dictionaries({f: values for f in features})
    lines = draw(st.lists(st.one_of(
        objects.map(lambda o: json.dumps(o, ensure_ascii=False)),
        full_rows.map(lambda o: json.dumps(o, ensure_ascii=False)),
        values.map(json.dumps),
        st.sampled_from(["", "{", "[" * 5000, '{"a": 1' + "0" * 5000 + "}", "NaN", "{\"age\": NaN}", "\x00"]),
        st.text(max_size=20),
    ), max_size=8))
    data = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    options = {"drop": draw(st.lists(st.sampled_from(["id", *features]), max_size=2)),
               "ignore_extra": draw(st.booleans())}
    return data, options


@pytest.mark.parametrize("examples", tiers("csv_bytes"))
def test_csv_from_arbitrary_bytes(rt: Runtime, examples: int) -> None:
    header = ",".join(rt.feature_names).encode() + b"\n"

    @fuzz(examples)
    @given(st.binary(max_size=600), st.booleans(), st.booleans())
    def run(data: bytes, with_header: bool, ignore_extra: bool) -> None:
        _serve_file(rt, header + data if with_header else data, "csv", ignore_extra=ignore_extra)

    run()


@pytest.mark.parametrize("examples", tiers("csv_documents"))
def test_csv_documents(rt: Runtime, examples: int) -> None:
    @fuzz(examples)
    @given(csv_documents(rt.feature_names))
    def run(document: tuple[bytes, dict[str, Any]]) -> None:
        data, options = document
        _serve_file(rt, data, "csv", **options)

    run()


@pytest.mark.parametrize("examples", tiers("jsonl_bytes"))
def test_jsonl_from_arbitrary_bytes(rt: Runtime, examples: int) -> None:
    @fuzz(examples)
    @given(st.binary(max_size=400), st.booleans())
    def run(data: bytes, ignore_extra: bool) -> None:
        _serve_file(rt, data, "jsonl", ignore_extra=ignore_extra)

    run()


@pytest.mark.parametrize("examples", tiers("jsonl_documents"))
def test_jsonl_documents(rt: Runtime, examples: int) -> None:
    @fuzz(examples)
    @given(jsonl_documents(rt.feature_names))
    def run(document: tuple[bytes, dict[str, Any]]) -> None:
        data, options = document
        _serve_file(rt, data, "jsonl", **options)

    run()


# ------------------------------------------------------------------ rows
@st.composite
def dict_rows(draw: st.DrawFn, features: tuple[str, ...]) -> dict[Any, Any]:
    row = {name: draw(VALUES) for name in features}
    for name in draw(st.lists(st.sampled_from(features), max_size=2)):
        row.pop(name, None)
    for key in draw(st.lists(st.text(max_size=6) | st.integers() | st.none(), max_size=2)):
        row[key] = draw(VALUES)
    return row


@pytest.mark.parametrize("examples", tiers("dict_rows"))
def test_dict_rows(rt: Runtime, examples: int) -> None:
    @fuzz(examples)
    @given(dict_rows(rt.feature_names))
    def run(row: dict[Any, Any]) -> None:
        _check_prediction(rt, row)

    run()


@pytest.mark.parametrize("examples", tiers("sequence_rows"))
def test_sequence_rows(rt: Runtime, examples: int) -> None:
    width = len(rt.feature_names)

    @fuzz(examples)
    @given(st.lists(VALUES, min_size=width - 1, max_size=width + 1), st.sampled_from([list, tuple]))
    def run(values: list[Any], kind: type) -> None:
        _check_prediction(rt, kind(values))

    run()


@st.composite
def numpy_rows(draw: st.DrawFn, width: int) -> np.ndarray:
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32, np.float16, np.int64, np.uint8, np.bool_,
                                  np.complex128, object, "U6"]))
    shape = draw(st.sampled_from([(width,), (width,), (1, width), (width - 1,), (2, width), ()]))
    if dtype is object:
        return draw(hnp.arrays(object, shape, elements=VALUES))
    return draw(hnp.arrays(dtype, shape))


@pytest.mark.parametrize("examples", tiers("numpy_rows"))
def test_numpy_rows(rt: Runtime, examples: int) -> None:
    @fuzz(examples)
    @given(numpy_rows(len(rt.feature_names)))
    def run(row: np.ndarray) -> None:
        _check_prediction(rt, row)

    run()


@pytest.mark.parametrize("examples", tiers("batches"))
def test_batches(rt: Runtime, examples: int) -> None:
    features = rt.feature_names
    width = len(features)
    sequences = st.lists(VALUES, min_size=width - 1, max_size=width + 1)
    mixed = st.lists(dict_rows(features) | sequences | VALUES, max_size=6)
    shapes = st.tuples(st.integers(0, 5), st.sampled_from([width, width, width - 1]))
    matrices = hnp.arrays(st.sampled_from([np.float64, np.float32, np.int32, np.complex64, "U4"]), shapes) | hnp.arrays(
        object, shapes, elements=VALUES)
    frames = st.lists(st.fixed_dictionaries({f: VALUES for f in features}), min_size=1, max_size=5).map(pd.DataFrame)

    @fuzz(examples)
    @given(st.one_of(mixed, matrices, frames))
    def run(batch: Any) -> None:
        _check_batch(rt, batch, len(batch))

    run()


# ------------------------------------------------------------------ configs
SECTIONS = {"session": SessionConfig, "inputs": InputPolicy, "monitoring": MonitoringConfig,
            "retention": RetentionPolicy, "drift": DriftPolicy, "budgets": BudgetConfig}
KEYS = sorted({f.name for owner in SECTIONS.values() for f in dataclasses.fields(owner)} | {"path"})
TOML_SCALARS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(),
                         st.text(max_size=12), st.sampled_from(["reject", "allow", "parallel", "all", "defer", "raise",
                                                                 "degrade", "../x.db"]),
                         st.integers(-5, 5000), st.floats(-2, 2), st.datetimes(), st.dates(), st.times())
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=6)
TABLES = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), TOML_VALUES, max_size=5)
CONFIGS = st.dictionaries(st.sampled_from([*SECTIONS, "bundle"]) | st.text(max_size=8), TABLES | TOML_VALUES,
                          max_size=4)


@pytest.mark.parametrize("examples", tiers("config_dicts"))
def test_config_dicts(examples: int) -> None:
    @fuzz(examples)
    @given(CONFIGS, st.none() | st.just(Path("/tmp/configs")))
    def run(data: dict[str, Any], base_dir: Path | None) -> None:
        try:
            config = config_from_dict(data, base_dir=base_dir)
        except ConfigError as exc:
            assert len(str(exc)) < 20 * MESSAGE_CHARS
            return
        assert isinstance(config, RuntimeConfig)

    run()


def _toml_literal(value: Any) -> str:
    """A TOML literal of a drawn value (tomllib reads, and nothing in the standard library writes, TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (int, str)):
        return json.dumps(value) if isinstance(value, str) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_literal(v)}" for k, v in value.items()) + "}"
    return value.isoformat()


@pytest.mark.parametrize("examples", tiers("config_files"))
def test_config_files(tmp_path: Path, examples: int) -> None:
    path = tmp_path / "device.toml"
    section_names = st.sampled_from([*SECTIONS, "bundle"]) | st.text(string.ascii_letters, min_size=1, max_size=6)
    tables = st.dictionaries(section_names, st.dictionaries(st.sampled_from(KEYS), TOML_VALUES, max_size=4),
                             max_size=3)

    @fuzz(examples)
    @given(tables, st.text(max_size=40))
    def run(data: dict[str, dict[str, Any]], junk: str) -> None:
        text = "".join(f"[{json.dumps(name)}]\n" + "".join(f"{key} = {_toml_literal(value)}\n"
                                                            for key, value in table.items())
                       for name, table in data.items())
        path.write_text(text + junk, encoding="utf-8", errors="surrogatepass")
        try:
            config = load_config(path)
        except ConfigError as exc:
            assert len(str(exc)) < 20 * MESSAGE_CHARS
            return
        assert isinstance(config, RuntimeConfig)

    run()


def test_a_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "device.toml"
    path.write_bytes(b'[inputs]\nnon_finite = "r\xe9ject"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path)


# ------------------------------------------------------------------ fixed regressions
@pytest.mark.parametrize("value", [Decimal("sNaN"), Fraction(10**400, 3), 10**5000, [10**5000], np.longdouble(1e300),
                                   1 + 2j, np.complex64(1), b"\xff", "\udce9"],
                         ids=["snan", "fraction", "int5000", "list", "longdouble", "complex", "complex64", "bytes",
                              "surrogate"])
def test_values_fuzzing_found(cancer_rt: Runtime, mixed_rt: Runtime, value: Any) -> None:
    for runtime in (cancer_rt, mixed_rt):
        row = dict.fromkeys(runtime.feature_names, 1.0)
        row[runtime.feature_names[1]] = value
        _check_prediction(runtime, row)
        _check_batch(runtime, [row, list(row.values())], 2)
