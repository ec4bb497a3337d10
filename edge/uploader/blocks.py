"""A batch as read: rows as SQLite gave them, decided per column, sent as columns.

The source reads a batch with SQLite's own UTF-8 decoding (``text_factory=str``, C speed,
no Python call per value). If any TEXT of the batch is not UTF-8 that read fails, and
the batch is read again undecoded (``RawText``): then every row takes the exact per-row
path of ``rows.py`` (``decode_row``, one dict per row), as every batch did before.

A decoded batch is checked per column, each check one pass in C:

- a column holding BLOBs or, by its sum, a non-finite float is rendered value by value
  with ``rows.json_safe``, the very rendering ``decode_row`` applies; the other columns
  are sent as read;
- whether a row might be too large for a message alone: an upper bound of every row's
  JSON size, from each column's widest value. Only when the bound says one might be are
  the rows measured one by one, exactly as the per-row path measures them; those too
  large go to quarantine with their values as read.

The records are then made once for the batch: for Arrow bodies the table straight from
the columns (``sensorpipe.columns.nested_table``: the same table ``table_of`` builds
from the dicts), for JSON bodies a dict per row, the same dicts (and so the same bytes)
the per-row path gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Final

import orjson
import pyarrow as pa

from edge.uploader.rows import (
    INVALID_UTF8,
    TOO_LARGE,
    Poison,
    RawRow,
    Row,
    decode_row,
    json_safe,
    row_id,
)
from sensorpipe.columns import nested_table

RECORD_KEY: Final = "sensor_data"  # a record is {"sensor_data": row}
# The longest JSON of an int64 ("-9223372036854775808": 20), a float (24) or null (4).
_NUMBER_WIDTH: Final = 24
# The most bytes one character of a string takes in JSON (a control character: \u001f).
_CHAR_WIDTH: Final = 6
_NULL = type(None)
_NUMBERS: Final = frozenset({int, float, _NULL})
_TEXTS: Final = frozenset({str, _NULL})
# What may stop a table from holding the records (sensorpipe.envelope falls back the same).
_NOT_COLUMNAR = (pa.ArrowException, orjson.JSONEncodeError, OverflowError, UnicodeError)

TooLarge = Callable[[Row], "str | None"]  # why a row cannot travel alone, or None


@dataclass(frozen=True, slots=True)
class RowBlock:
    """Rows of one read, as tuples in the order of ``names``. ``decoded``: TEXT came as
    ``str`` (valid UTF-8); otherwise as ``RawText``, to be decided row by row."""

    names: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    decoded: bool

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)

    @property
    def ids(self) -> list[int]:
        index = self.names.index("id")
        ids = [values[index] for values in self.rows]
        if set(map(type, ids)) - {int}:  # the sensor tables' id is an INTEGER PRIMARY KEY
            raise TypeError(f"row ids {ids[:5]!r}... are not all integers")
        return ids

    def row(self, index: int) -> RawRow:
        """One row as the per-row path sees it (a dict, values as read)."""
        return dict(zip(self.names, self.rows[index], strict=True))

    def only(self, ids: Container[int]) -> RowBlock:
        """The rows whose id is in ``ids``, in order."""
        index = self.names.index("id")
        return RowBlock(self.names, [v for v in self.rows if v[index] in ids], self.decoded)

    def plus(self, other: RowBlock) -> RowBlock:
        """This block's rows, then ``other``'s (the same table, so the same names)."""
        if not self.rows:
            return other
        if not other.rows:
            return self
        if other.names != self.names or other.decoded != self.decoded:
            raise ValueError("blocks of other columns or decodings do not join")
        return RowBlock(self.names, self.rows + other.rows, self.decoded)


@dataclass(frozen=True, slots=True)
class Sendable:
    """The rows of a batch that travel: as dicts (``rows``) or as a table (``table``)."""

    ids: list[int]
    rows: list[Row] | None = None
    table: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def records(self) -> list[dict[str, Any]]:
        assert self.rows is not None
        return [{RECORD_KEY: row} for row in self.rows]


def sendable(
    block: RowBlock,
    *,
    too_large: TooLarge,
    fits: Callable[[int], bool],
    columnar: bool,
) -> tuple[Sendable, list[Poison]]:
    """The rows that can travel and the poison ones, with why. ``fits(n)``: a row of at
    most ``n`` bytes of JSON certainly fits a message alone (``too_large`` not needed)."""
    if not block.rows:
        return Sendable([], rows=[]), []
    if not block.decoded:
        return _row_by_row(block, too_large)
    return _by_columns(block, too_large, fits, columnar)


def _row_by_row(block: RowBlock, too_large: TooLarge) -> tuple[Sendable, list[Poison]]:
    """The exact path: each row decoded and measured on its own."""
    rows: list[Row] = []
    poison: list[Poison] = []
    for values in block.rows:
        item: RawRow = dict(zip(block.names, values, strict=True))
        row, problem = decode_row(item)
        if row is None:
            poison.append(Poison(row_id(item), INVALID_UTF8, str(problem), item))
            continue
        reason = too_large(row)
        if reason is not None:
            poison.append(Poison(row_id(item), TOO_LARGE, reason, item))
            continue
        rows.append(row)
    return Sendable([row["id"] for row in rows], rows=rows), poison


def _by_columns(
    block: RowBlock, too_large: TooLarge, fits: Callable[[int], bool], columnar: bool
) -> tuple[Sendable, list[Poison]]:
    names = block.names
    columns = [list(column) for column in zip(*block.rows, strict=True)]
    kinds = [set(map(type, column)) for column in columns]
    for i, column in enumerate(columns):
        if _needs_rendering(column, kinds[i]):
            columns[i] = list(map(json_safe, column))
            kinds[i] = set(map(type, columns[i]))
    poison: list[Poison] = []
    if not fits(widest_row(names, columns, kinds)):
        keep: list[int] = []
        for index, values in enumerate(zip(*columns, strict=True)):
            reason = too_large(dict(zip(names, values, strict=True)))
            if reason is None:
                keep.append(index)
            else:
                raw = block.row(index)
                poison.append(Poison(row_id(raw), TOO_LARGE, reason, raw))
        if poison:
            columns = [[column[i] for i in keep] for column in columns]
    ids: list[int] = columns[names.index("id")]
    if not ids:
        return Sendable([], rows=[]), poison
    if columnar:
        try:
            table = nested_table(RECORD_KEY, dict(zip(names, columns, strict=True)))
        except _NOT_COLUMNAR:
            pass  # as dicts: the encoder decides (JSON) as it does for any such records
        else:
            return Sendable(ids, table=table), poison
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    return Sendable(ids, rows=rows), poison


def _needs_rendering(column: list[Any], kinds: set[type]) -> bool:
    """Whether some value of the column is not sent as read (a BLOB, a non-finite float)."""
    if bytes in kinds:
        return True
    if float not in kinds:
        return False
    if kinds <= _NUMBERS:
        # inf or nan make the sum non-finite; an overflowing sum only costs the walk.
        return not math.isfinite(sum(filter(None, column)))
    return True  # floats among text: rare, value by value


def widest_row(names: tuple[str, ...], columns: list[list[Any]], kinds: list[set[type]]) -> int:
    """At least the bytes of JSON (``orjson``) of any row of these columns (rendered
    values: int, float, str or None)."""
    width = 2  # {}
    for name, column, kind in zip(names, columns, kinds, strict=True):
        width += len(orjson.dumps(name)) + 2  # "name": and a comma
        if kind <= _NUMBERS:
            width += _NUMBER_WIDTH
        elif kind <= _TEXTS:
            longest = max(map(len, filter(None, column)), default=0)
            width += max(_CHAR_WIDTH * longest + 2, _NUMBER_WIDTH)
        else:
            width += max(
                _CHAR_WIDTH * len(v) + 2 if type(v) is str else _NUMBER_WIDTH for v in column
            )
    return width
