"""Records as columns: a batch's records as one Arrow table, and back, losing nothing.

The columnar body of an envelope (``docs/ARCHITECTURE.md``, "Records and envelopes")
carries its records as an Arrow table, so a stage can check, filter and split a batch
by columns instead of walking a dict per record. Records are JSON objects whose values
may be anything (an edge database is dynamically typed, a replayed record may be
hand-written), so the table follows rules that keep every record exactly as it was:

- one column per key of the records, in the order keys are first seen;
- a column whose every present value is an object becomes a *struct* column, its
  children following these same rules;
- a column whose present values are all of one JSON scalar type is *typed*: boolean,
  int64 (integers within 64 bits), float64 or string; all null is a null column;
- anything else (an integer and a float in one column, a list, an integer beyond 64
  bits) is *JSON text*: a string column marked :data:`JSON_TEXT`, each value as its
  JSON, so ``21`` and ``21.0`` stay what they were;
- *absent* and *null* differ: when some records lack a key, the column is marked
  :data:`ABSENT_IS_NULL` and its nulls mean "no such key", unless a record also holds
  an explicit null, in which case the column is JSON text (``null`` is the text
  ``"null"``, an absent key a null).

:func:`rows_of` gives the records back equal to what went in (same keys, values and
types; key order is column order). The two marks travel as Arrow field metadata, so a
table read from an IPC stream carries its own rules.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

JSON_TEXT = b"sensorpipe.json"
ABSENT_IS_NULL = b"sensorpipe.absent"
_MARK = b"1"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def use_system_allocator() -> None:
    """Give Arrow's buffers the C library's allocator, unless the operator chose one
    (``ARROW_DEFAULT_MEMORY_POOL``). Arrow's default pool (mimalloc) keeps freed pages
    for reuse: a validator decoding and encoding 2,000-record tables held 146 MiB
    with it and 125 MiB with the system allocator, at the same CPU."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())


class _Missing:
    """Where a record lacks a key (its type marks the cell: ``set(map(type, ...))``)."""


_MISSING = _Missing()
_SCALAR_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}


def table_of(records: Sequence[dict[str, Any]]) -> pa.Table:
    """The records as a table (rules in the module docstring)."""
    names: dict[str, None] = {}
    for record in records:
        for name in record:
            names.setdefault(name)
    fields, arrays = [], []
    for name in names:
        field, array = column_of(name, [record.get(name, _MISSING) for record in records])
        fields.append(field)
        arrays.append(array)
    # No key at all gives a table of no columns, which cannot say how many records it
    # held: callers that need the count (the envelope) keep it beside the table.
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def column_of(name: str, values: list[Any]) -> tuple[pa.Field[Any], pa.Array[Any]]:
    """One column from its values (``_MISSING`` where a record lacks the key)."""
    kinds = set(map(type, values))  # C speed: one pass, no Python frame per value
    absent = _Missing in kinds
    kinds.discard(_Missing)
    if absent and type(None) in kinds:
        return _json_column(name, values)
    kinds.discard(type(None))
    marks = {ABSENT_IS_NULL: _MARK} if absent else None
    if not kinds:
        cells = [None] * len(values)
        return pa.field(name, pa.null(), metadata=marks), pa.array(cells, type=pa.null())
    if len(kinds) > 1:
        return _json_column(name, values)
    (kind,) = kinds
    if kind is dict:
        return _struct_column(name, values, marks)
    if kind not in _SCALAR_TYPES:
        return _json_column(name, values)
    cells = [None if value is _MISSING else value for value in values] if absent else values
    if kind is int:
        present: list[int] = [v for v in cells if v is not None]  # type: ignore[misc]
        if min(present) < _INT64_MIN or max(present) > _INT64_MAX:
            return _json_column(name, values)
    type_ = _SCALAR_TYPES[kind]
    return pa.field(name, type_, metadata=marks), pa.array(cells, type=type_)


def _json_column(name: str, values: list[Any]) -> tuple[pa.Field[Any], pa.Array[Any]]:
    cells = [None if value is _MISSING else orjson.dumps(value).decode() for value in values]
    return pa.field(name, pa.string(), metadata={JSON_TEXT: _MARK}), pa.array(
        cells, type=pa.string()
    )


def _struct_column(
    name: str, values: list[Any], marks: dict[bytes, bytes] | None
) -> tuple[pa.Field[Any], pa.Array[Any]]:
    mask = [not isinstance(value, dict) for value in values]  # absent or null rows
    inner = [value if isinstance(value, dict) else {} for value in values]
    children = table_of(inner)
    if children.num_columns == 0:  # only empty objects: JSON text keeps them exactly
        return _json_column(name, values)
    array = pa.StructArray.from_arrays(
        [children.column(i).combine_chunks() for i in range(children.num_columns)],
        fields=list(children.schema),
        mask=pa.array(mask, type=pa.bool_()),
    )
    return pa.field(name, array.type, metadata=marks), array


def nested_table(name: str, columns: Mapping[str, list[Any]]) -> pa.Table:
    """``table_of([{name: record} for record in records])``, the records given as columns:
    one list of values per key, in row order, every record holding every key. The same
    table (schema, marks and values), built without a dict per record."""
    if not columns:
        raise ValueError("records given as columns need at least one column")
    fields, arrays = [], []
    for key, values in columns.items():
        field, array = column_of(key, values)
        fields.append(field)
        arrays.append(array)
    rows = len(arrays[0])
    struct = pa.StructArray.from_arrays(
        arrays, fields=fields, mask=pa.array(np.zeros(rows, dtype=np.bool_), type=pa.bool_())
    )
    return pa.Table.from_arrays([struct], schema=pa.schema([pa.field(name, struct.type)]))


def constant_column(name: str, value: Any, rows: int) -> tuple[pa.Field[Any], pa.Array[Any]]:
    """A column holding ``value`` in each of ``rows`` rows, typed by the rules above
    (built once, repeated in C: no Python object per row)."""
    field, one = column_of(name, [value])
    return field, one.take(np.zeros(rows, dtype=np.int64))


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """The records a table holds, as :func:`table_of` was given them."""
    rows: list[dict[str, Any]] = [{} for _ in range(table.num_rows)]
    for field, column in zip(table.schema, table.columns, strict=True):
        _fill(rows, field, column.to_pylist())
    return rows


def values_of(field: pa.Field[Any], column: pa.Array[Any] | pa.ChunkedArray[Any]) -> list[Any]:
    """One column's values as :func:`rows_of` gives them, None where a record lacks
    the key (or holds null): what ``record.get(name)`` answers, without a dict per row."""
    values = column.to_pylist()
    meta = field.metadata or {}
    if meta.get(JSON_TEXT) == _MARK:
        return [None if value is None else orjson.loads(value) for value in values]
    if pa.types.is_struct(field.type):
        _patch(values, field.type)
    return values


def _fill(rows: list[dict[str, Any]], field: pa.Field[Any], values: list[Any]) -> None:
    name = field.name
    meta = field.metadata or {}
    if meta.get(JSON_TEXT) == _MARK:
        for row, value in zip(rows, values, strict=True):
            if value is not None:
                row[name] = orjson.loads(value)
        return
    absent = meta.get(ABSENT_IS_NULL) == _MARK
    if pa.types.is_struct(field.type):
        _fill_struct(rows, field, values, absent)
        return
    for row, value in zip(rows, values, strict=True):
        if value is not None or not absent:
            row[name] = value


def _fill_struct(
    rows: list[dict[str, Any]], field: pa.Field[Any], values: list[Any], absent: bool
) -> None:
    """Struct cells come out as dicts of every child; the children's own marks decide
    which of their nulls are absent keys or JSON text (patched in place, one pass per
    marked child: no dict is built twice)."""
    _patch(values, field.type)
    name = field.name
    for row, value in zip(rows, values, strict=True):
        if value is not None or not absent:
            row[name] = value


def _patch(cells: list[dict[str, Any] | None], struct: pa.StructType) -> None:
    for i in range(struct.num_fields):
        child = struct.field(i)
        name, meta = child.name, child.metadata or {}
        if meta.get(JSON_TEXT) == _MARK:
            for cell in cells:
                if cell is not None:
                    text = cell[name]
                    if text is None:
                        del cell[name]
                    else:
                        cell[name] = orjson.loads(text)
            continue
        if pa.types.is_struct(child.type):
            _patch([None if cell is None else cell[name] for cell in cells], child.type)
        if meta.get(ABSENT_IS_NULL) == _MARK:
            for cell in cells:
                if cell is not None and cell[name] is None:
                    del cell[name]


def problems(table: pa.Table) -> str | None:
    """What makes a table not one :func:`table_of` could have written (a columnar
    body from elsewhere), or None: every column of a type the rules allow, the marks
    only where they belong, JSON text that parses and could be written again."""
    for field, column in zip(table.schema, table.columns, strict=True):
        problem = _field_problem(field, field.name)
        if problem is None and (field.metadata or {}).get(JSON_TEXT) == _MARK:
            problem = _json_problem(column, field.name)
        elif problem is None and pa.types.is_struct(field.type):
            problem = _children_problem(column, field.name)
        if problem is not None:
            return problem
    return None


_TYPED = (pa.null(), pa.bool_(), pa.int64(), pa.float64(), pa.string())


def _field_problem(field: pa.Field[Any], where: str) -> str | None:
    marks = set((field.metadata or {}).items())
    if not marks <= {(JSON_TEXT, _MARK), (ABSENT_IS_NULL, _MARK)}:
        return f"column {where!r} has metadata no column layout writes"
    if (JSON_TEXT, _MARK) in marks:
        ok = field.type == pa.string() and (ABSENT_IS_NULL, _MARK) not in marks
        return None if ok else f"column {where!r} is marked JSON text but is {field.type}"
    if pa.types.is_struct(field.type):
        for i in range(field.type.num_fields):
            child = field.type.field(i)
            problem = _field_problem(child, f"{where}.{child.name}")
            if problem is not None:
                return problem
        return None if field.type.num_fields else f"column {where!r} is a struct of nothing"
    if field.type not in _TYPED:
        return f"column {where!r} is {field.type}; expected bool, int64, float64, string or struct"
    return None


def _children_problem(column: pa.ChunkedArray[Any], where: str) -> str | None:
    struct = column.type
    for i in range(struct.num_fields):
        child = struct.field(i)
        parts = [cast(pa.StructArray, chunk).field(i) for chunk in column.chunks]
        values = pa.chunked_array(parts, type=child.type)
        problem = None
        if (child.metadata or {}).get(JSON_TEXT) == _MARK:
            problem = _json_problem(values, f"{where}.{child.name}")
        elif pa.types.is_struct(child.type):
            problem = _children_problem(values, f"{where}.{child.name}")
        if problem is not None:
            return problem
    return None


# JSON text that is certainly a number orjson reads and writes back (a finite float, an
# integer well within 64 bits): the common cell of a JSON-text column, not parsed here.
_PLAIN_NUMBER = r"^-?(?:0|[1-9]\d{0,17})(?:\.\d{1,17})?(?:[eE][+-]?\d{1,2})?$"


def _json_problem(column: pa.ChunkedArray[Any], where: str) -> str | None:
    matched = pc.match_substring_regex(column, _PLAIN_NUMBER)
    plain = cast("pa.ChunkedArray[Any]", pc.fill_null(matched, pa.scalar(True)))
    rows = np.flatnonzero(~np.asarray(plain.to_numpy(zero_copy_only=False), dtype=np.bool_))
    if not len(rows):
        return None
    cells = column.take(rows).to_pylist()
    for index, cell in zip(rows.tolist(), cells, strict=True):
        try:
            orjson.dumps(orjson.loads(cell or ""))  # what reads must write again (depth)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError) as exc:
            return f"column {where!r} row {index} is not JSON a stage could write: {exc}"
    return None
