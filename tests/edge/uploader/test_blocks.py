"""Property: a batch decided by columns gives the records and the poison rows that the
exact per-row path gives, for random SQLite rows, poison ones included (issue 12).

The same rows are read twice from one database: as a decoded block (SQLite's own UTF-8
decoding; it falls back to undecoded when some text is not UTF-8) and undecoded (every
row decided on its own, as every batch was before). Both must give the same records, as
dicts and as an Arrow table, and the same quarantine entries; the oracle for the records
and for which rows are poison is plain Python over the generated values.
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.uploader.blocks import RowBlock, Sendable, sendable, widest_row
from edge.uploader.rows import INVALID_UTF8, TOO_LARGE, Poison, Row, safe_values
from edge.uploader.source import SensorSource
from sensorpipe.columns import rows_of
from tests.edge.uploader.test_row_reader_property import (
    COLUMNS,
    NOISE,
    BadText,
    expected,
    invalid_utf8,
    is_invalid_text,
    write,
)

LIMIT = 3000  # JSON bytes of a row that still travels (the test's "message limit")
HUGE = st.sampled_from(["x" * 4000, "\x01" * 600, "é" * 1500, NOISE])  # near or over LIMIT
NUMBERS = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
TEXTS = st.one_of(st.none(), st.text(max_size=20), HUGE)
ANYTHING = st.one_of(NUMBERS, TEXTS, st.binary(max_size=20))
# Each column holds numbers only, text only, or anything (as a sensor table's columns do,
# and as SQLite lets a writer put anything anywhere).
ROWS = st.tuples(*(st.sampled_from([NUMBERS, TEXTS, ANYTHING]) for _ in COLUMNS)).flatmap(
    lambda kinds: st.lists(st.tuples(*kinds), min_size=1, max_size=30)
)
# (row index, column index, text that is probably not UTF-8): few rows turn poison.
BAD = st.lists(
    st.tuples(st.integers(0, 29), st.integers(0, len(COLUMNS) - 1), invalid_utf8()), max_size=2
)


def too_large(row: Row) -> str | None:
    size = len(orjson.dumps(row))
    return f"{size} bytes of JSON" if size > LIMIT else None


def fits(size: int) -> bool:
    return size <= LIMIT


def records(sent: Sendable) -> list[Row]:
    if sent.table is not None:
        return [r["sensor_data"] for r in rows_of(sent.table)]
    assert sent.rows is not None
    return sent.rows


def entries(poison: list[Poison]) -> list[tuple[int, str, str, dict[str, Any]]]:
    return [(p.row_id, p.reason, p.detail, safe_values(p.raw)) for p in poison]


def comparable(values: list[Row]) -> list[Any]:
    """Rows with each value's type, NaN made equal to itself (NaN is stored as NULL by
    SQLite, so none should be left; this only keeps a failure readable)."""
    return [
        {
            k: (type(v).__name__, "nan" if isinstance(v, float) and math.isnan(v) else v)
            for k, v in row.items()
        }
        for row in values
    ]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, bad=BAD)
def test_columns_and_rows_give_the_same_records_and_poison(
    rows: list[tuple[Any, ...]], bad: list[tuple[int, int, BadText]]
) -> None:
    table = [list(values) for values in rows]
    for index, column, text in bad:
        if index < len(table):
            table[index][column] = text
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "s.db"
        write(db, [tuple(values) for values in table])
        source = SensorSource(db, "sensor_readings")
        decoded = source.block_after(0, 1000)
        undecoded = source.block_between(1, len(table), decode=False)
        source.close()
    invalid = {i for i, values in enumerate(table, start=1) if any(map(is_invalid_text, values))}
    assert decoded.decoded == (not invalid), "SQLite decodes unless some text is not UTF-8"
    assert not undecoded.decoded and undecoded.ids == decoded.ids == list(range(1, len(table) + 1))

    want = {
        i: {"id": i, **{c: expected(v) for c, v in zip(COLUMNS, values, strict=True)}}
        for i, values in enumerate(table, start=1)
        if i not in invalid
    }
    large = {i for i, row in want.items() if len(orjson.dumps(row)) > LIMIT}
    travel = [row for i, row in want.items() if i not in large]

    by_rows, poison_by_rows = sendable(undecoded, too_large=too_large, fits=fits, columnar=False)
    assert comparable(records(by_rows)) == comparable(travel)
    assert by_rows.ids == [row["id"] for row in travel]
    reasons = {p.row_id: p.reason for p in poison_by_rows}
    assert reasons == {**dict.fromkeys(large, TOO_LARGE), **dict.fromkeys(invalid, INVALID_UTF8)}
    for columnar in (False, True):
        sent, poison = sendable(decoded, too_large=too_large, fits=fits, columnar=columnar)
        assert comparable(records(sent)) == comparable(travel)
        assert sent.ids == by_rows.ids
        assert entries(poison) == entries(poison_by_rows), "the same quarantine lines"
        if columnar and travel and not invalid:
            assert sent.table is not None, "a decoded batch travels as a table"


JSON_READY = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),  # any character, control characters (escaped to 6 bytes) too
)


@given(
    st.integers(1, 5).flatmap(
        lambda width: st.lists(st.lists(JSON_READY, min_size=width, max_size=width), min_size=1)
    )
)
def test_the_widest_row_bound_is_never_below_a_rows_json(rows: list[list[Any]]) -> None:
    names = tuple(f"c{i}\n" for i in range(len(rows[0])))
    columns = [list(column) for column in zip(*rows, strict=True)]
    bound = widest_row(names, columns, [set(map(type, column)) for column in columns])
    for values in rows:
        assert len(orjson.dumps(dict(zip(names, values, strict=True)))) <= bound


def test_a_block_keeps_the_rows_asked_for_and_joins_only_its_own_kind() -> None:
    block = RowBlock(("id", "a"), [(1, "x"), (2, "y"), (3, "z")], decoded=False)
    assert block.only({1, 3}).rows == [(1, "x"), (3, "z")]
    assert block.plus(RowBlock(("id", "a"), [(4, "w")], decoded=False)).ids == [1, 2, 3, 4]
    assert block.plus(RowBlock(("id", "a"), [], decoded=True)) is block
    assert block.row(-1) == {"id": 3, "a": "z"}
    with pytest.raises(ValueError, match="do not join"):
        block.plus(RowBlock(("id", "a"), [(4, "w")], decoded=True))
    with pytest.raises(TypeError, match="not all integers"):
        _ = RowBlock(("id",), [(1,), ("2",)], decoded=True).ids


def test_a_batch_with_text_that_is_not_utf8_is_read_undecoded() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "s.db"
        write(db, [("t", "s", 1, 2.5, None), ("t", "s", BadText(b"\xff"), 1, None)])
        source = SensorSource(db, "sensor_readings")
        try:
            assert source.block_after(0, 1).decoded, "the first row alone decodes"
            block = source.block_after(0, 2)
            assert not block.decoded and block.ids == [1, 2]
            assert block.rows[1][3] == b"\xff"
        finally:
            source.close()
        with sqlite3.connect(db) as conn:  # the file itself is untouched
            assert conn.execute("SELECT COUNT(*) FROM sensor_readings").fetchone() == (2,)


def test_non_finite_floats_among_text_or_numbers_travel_as_text() -> None:
    inf = float("inf")
    rows = [("t", "s", inf, 1.5, 2), ("t", "s", "text", -inf, None), ("t", "s", 3.0, 2, 7)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "s.db"
        write(db, rows)
        source = SensorSource(db, "sensor_readings")
        block = source.block_after(0, 10)
        source.close()
    assert block.decoded
    want = [
        {"id": i, **{c: expected(v) for c, v in zip(COLUMNS, values, strict=True)}}
        for i, values in enumerate(rows, start=1)
    ]
    assert want[0]["a"] == "Infinity" and want[1]["b"] == "-Infinity"
    for columnar in (False, True):
        sent, poison = sendable(block, too_large=too_large, fits=fits, columnar=columnar)
        assert comparable(records(sent)) == comparable(want) and not poison
