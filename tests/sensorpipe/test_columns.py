"""Records to an Arrow table and back: nothing lost, whatever the records hold."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorpipe.columns import (
    ABSENT_IS_NULL,
    JSON_TEXT,
    nested_table,
    problems,
    rows_of,
    table_of,
    use_system_allocator,
)

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson writes
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = st.sampled_from(["a", "b", "sensor_data", "quality"])
_RECORDS = st.lists(st.dictionaries(_KEYS, _JSON, max_size=4), min_size=1, max_size=12)


def _same(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What JSON would say the records are: the oracle compares values and types."""
    return [orjson.loads(orjson.dumps(r)) for r in records]


def _typed(records: list[dict[str, Any]]) -> list[Any]:
    """Every value with its type, so 1 and 1.0 and True differ."""

    def tag(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: tag(v) for k, v in value.items()}
        if isinstance(value, list):
            return [tag(v) for v in value]
        return (type(value).__name__, value)

    return [tag(r) for r in records]


@settings(max_examples=300, deadline=None)
@given(_RECORDS)
def test_records_come_back_as_they_went_in(records: list[dict[str, Any]]) -> None:
    records = _same(records)
    table = table_of(records)
    if table.num_columns == 0:  # records without a key: the caller keeps the count
        assert all(not r for r in records)
        return
    assert table.num_rows == len(records)
    assert problems(table) is None
    assert _typed(rows_of(table)) == _typed(records)


def test_sensor_rows_become_typed_columns_and_mixed_ones_json_text() -> None:
    rows: list[dict[str, Any]] = [
        {"sensor_data": {"id": 1, "temperature": 21.5, "sensor_id": "s1", "note": None}},
        {"sensor_data": {"id": 2, "temperature": 22.0, "sensor_id": "s2", "note": "x"}},
        {"sensor_data": {"id": 3, "temperature": 23, "sensor_id": "s3"}, "extra": True},
    ]
    table = table_of(rows)
    data = table.schema.field("sensor_data").type
    assert data.field("id").type == pa.int64()
    assert data.field("sensor_id").type == pa.string()
    # 21.5 and 23 in one column: JSON text keeps 23 an integer
    assert (data.field("temperature").metadata or {}).get(JSON_TEXT) == b"1"
    # a key one record lacks while another holds null: JSON text tells them apart
    assert (data.field("note").metadata or {}).get(JSON_TEXT) == b"1"
    assert (table.schema.field("extra").metadata or {}).get(ABSENT_IS_NULL) == b"1"
    back = rows_of(table)
    assert back == rows
    assert type(back[2]["sensor_data"]["temperature"]) is int
    assert "note" not in back[2]["sensor_data"] and "extra" not in back[0]


def test_integers_beyond_64_bits_and_lists_are_kept_as_json_text() -> None:
    rows = [{"v": 2**63, "l": [1, {"x": None}]}, {"v": 1, "l": []}]
    table = table_of(rows)
    assert all((f.metadata or {}).get(JSON_TEXT) == b"1" for f in table.schema)
    assert rows_of(table) == rows


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (pa.table({"x": pa.array([1], pa.int32())}), "column 'x' is int32"),
        (
            pa.table({"x": pa.array(["{"])})
            .replace_schema_metadata(None)
            .cast(pa.schema([pa.field("x", pa.string(), metadata={JSON_TEXT: b"1"})])),
            "column 'x' row 0 is not JSON",
        ),
        (
            pa.table({"x": pa.array([1])}).cast(
                pa.schema([pa.field("x", pa.int64(), metadata={JSON_TEXT: b"1"})])
            ),
            "marked JSON text but is int64",
        ),
        (
            pa.table({"x": pa.array([1])}).cast(
                pa.schema([pa.field("x", pa.int64(), metadata={b"other": b"1"})])
            ),
            "metadata no column layout writes",
        ),
        (
            pa.table({"s": pa.array([{"d": [1]}])}),
            "column 's.d' is list<item: int64>",
        ),
    ],
)
def test_a_table_no_layout_writes_is_named_with_its_column(table: pa.Table, expected: str) -> None:
    problem = problems(table)
    assert problem is not None and expected in problem


def test_the_system_allocator_is_used_unless_the_operator_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
        pa.set_memory_pool(pa.mimalloc_memory_pool())
        use_system_allocator()
        assert pa.default_memory_pool().backend_name == "mimalloc"
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        use_system_allocator()
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(before)


_COLUMNS = st.integers(min_value=1, max_value=10).flatmap(
    lambda rows: st.dictionaries(
        st.text(min_size=1, max_size=6), st.lists(_JSON, min_size=rows, max_size=rows), min_size=1
    )
)


@given(_COLUMNS)
def test_records_given_as_columns_make_the_table_of_their_dicts(
    columns: dict[str, list[Any]],
) -> None:
    rows = len(next(iter(columns.values())))
    records = [{"sensor_data": {k: v[i] for k, v in columns.items()}} for i in range(rows)]
    table = nested_table("sensor_data", columns)
    assert _typed(rows_of(table)) == _typed(_same(records))
    assert table.equals(table_of(records), check_metadata=True)  # what the envelope writes


def test_records_given_as_no_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        nested_table("sensor_data", {})
