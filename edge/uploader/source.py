"""Read new rows from the edge sensor database without disturbing its writer.

The connection is read-only (``mode=ro``) and the database is in WAL mode, so the
simulator or generator keeps writing while we read. Table names come from an allow-list
and every statement is a constant chosen from it; nothing from input is interpolated.
When the file is replaced (the generator deletes it on start) the next read reopens it.

A batch is read as a block of tuples (``blocks.RowBlock``) with SQLite's own UTF-8
decoding, at C speed; when some TEXT of it is not UTF-8 that read fails and the batch is
read again with TEXT undecoded (``RawText``), so such a value cannot make a read fail:
``edge.uploader.rows`` then decides per row what can be sent. Fingerprints and
``rows_after``/``rows_between`` (dicts) always read TEXT undecoded.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edge.uploader.blocks import RowBlock
from edge.uploader.errors import SourceError, UnknownTableError
from edge.uploader.rows import RawRow, RawText, Row, plain_value, row_id

SOURCE_TABLES: Final = ("sensor_readings", "sensor_data")
__all__ = [
    "SOURCE_TABLES",
    "RawRow",
    "RawText",
    "Row",
    "RowBlock",
    "RowFingerprint",
    "SensorSource",
    "check_table",
    "fingerprint_of",
]


@dataclass(frozen=True, slots=True)
class RowFingerprint:
    """What identifies a row beyond its id: a recreated database gives other values."""

    id: int
    timestamp: Any
    sensor_id: Any

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "timestamp": self.timestamp, "sensor_id": self.sensor_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RowFingerprint:
        return cls(int(data["id"]), data.get("timestamp"), data.get("sensor_id"))


@dataclass(frozen=True, slots=True)
class _Statements:
    after: str
    within: str
    by_id: str
    first: str
    max_id: str


def _statements(table: str) -> _Statements:
    return _Statements(
        after=f"SELECT * FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
        within=f"SELECT * FROM {table} WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?",
        by_id=f"SELECT id, timestamp, sensor_id FROM {table} WHERE id = ?",
        first=f"SELECT id, timestamp, sensor_id FROM {table} ORDER BY id LIMIT 1",
        max_id=f"SELECT COALESCE(MAX(id), 0) FROM {table}",
    )


_SQL: Final = {table: _statements(table) for table in SOURCE_TABLES}


def check_table(table: str) -> str:
    if table not in SOURCE_TABLES:
        raise UnknownTableError(table, SOURCE_TABLES)
    return table


class SensorSource:
    """Batches of rows by id from one table of one SQLite file."""

    def __init__(self, path: Path, table: str) -> None:
        self.path = Path(path)
        self.table = check_table(table)
        self._sql = _SQL[self.table]
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return f"{self.path.absolute()}:{self.table}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def exists(self) -> bool:
        return self.path.is_file()

    def rows_after(self, after_id: int, limit: int) -> list[RawRow]:
        return self._rows(self._sql.after, (after_id, limit))

    def rows_between(self, first_id: int, last_id: int, limit: int = -1) -> list[RawRow]:
        """Rows with ``first_id <= id <= last_id`` (at most ``limit``; -1: all)."""
        return self._rows(self._sql.within, (first_id, last_id, limit))

    def block_after(self, after_id: int, limit: int) -> RowBlock:
        """Rows with ``id > after_id`` (at most ``limit``), as a block."""
        return self._block(self._sql.after, (after_id, limit), decode=True)

    def block_between(
        self, first_id: int, last_id: int, limit: int = -1, *, decode: bool = True
    ) -> RowBlock:
        """Rows with ``first_id <= id <= last_id`` (at most ``limit``; -1: all), as a
        block; ``decode=False``: TEXT undecoded, whatever it holds."""
        return self._block(self._sql.within, (first_id, last_id, limit), decode=decode)

    def fingerprint(self, row_id: int) -> RowFingerprint | None:
        row = self._query(self._sql.by_id, (row_id,)).fetchone()
        return _fingerprint(row) if row else None

    def first_row(self) -> RowFingerprint | None:
        row = self._query(self._sql.first, ()).fetchone()
        return _fingerprint(row) if row else None

    def max_id(self) -> int:
        return int(self._query(self._sql.max_id, ()).fetchone()[0])

    def _rows(self, sql: str, params: tuple[int, ...]) -> list[RawRow]:
        block = self._block(sql, params, decode=False)
        return [dict(zip(block.names, values, strict=True)) for values in block.rows]

    def _block(self, sql: str, params: tuple[int, ...], *, decode: bool) -> RowBlock:
        if decode:
            cursor = self._query(sql, params, text=str)
            try:
                rows = cursor.fetchall()
            except sqlite3.OperationalError:
                # TEXT that is not UTF-8 (or a failing read, which fails again below):
                # read undecoded, and each row is decided on its own.
                pass
            else:
                return RowBlock(_names(cursor), rows, decoded=True)
        cursor = self._query(sql, params)
        return RowBlock(_names(cursor), self._fetch(cursor), decoded=False)

    def _fetch(self, cursor: sqlite3.Cursor) -> list[tuple[Any, ...]]:
        try:
            return cursor.fetchall()
        except sqlite3.DatabaseError as exc:  # the file changed or broke mid-read
            self.close()
            raise SourceError(f"reading {self.name} failed: {exc}") from exc

    def _query(
        self, sql: str, params: tuple[int, ...], *, text: type[str | RawText] = RawText
    ) -> sqlite3.Cursor:
        conn = self._connection()
        # RawText never fails, whatever bytes a TEXT value holds (rows.decode_row
        # decides); str is SQLite's own decoding and fails the read on invalid UTF-8.
        conn.text_factory = text
        try:
            return conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            self.close()
            if "no such table" in str(exc):
                raise SourceError(
                    f"{self.path} has no table {self.table!r} yet",
                    hint="start the simulator/generator, or pick the right --table",
                ) from exc
            raise SourceError(f"reading {self.name} failed: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self.close()
            raise SourceError(
                f"{self.path} is not a usable SQLite database: {exc}",
                hint="point --db at the sensor database",
            ) from exc

    def _connection(self) -> sqlite3.Connection:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self.close()
            raise SourceError(
                f"sensor database {self.path} does not exist",
                hint="start the simulator/generator first, or fix --db / source.path",
            ) from None
        file_id = (stat.st_dev, stat.st_ino)
        if self._conn is not None and file_id != self._file_id:
            # The file was replaced: the open handle still reads the deleted one.
            self.close()
        if self._conn is None:
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            try:
                self._conn = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
            except sqlite3.Error as exc:
                raise SourceError(f"cannot open {self.path} read-only: {exc}") from exc
            self._file_id = file_id
        return self._conn


def _names(cursor: sqlite3.Cursor) -> tuple[str, ...]:
    return tuple(d[0] for d in cursor.description)


def _fingerprint(row: tuple[Any, ...]) -> RowFingerprint:
    return RowFingerprint(int(row[0]), plain_value(row[1]), plain_value(row[2]))


def fingerprint_of(raw: RawRow) -> RowFingerprint:
    """The fingerprint of a row as read (``SensorSource.fingerprint`` gives the same)."""
    return RowFingerprint(
        row_id(raw),
        plain_value(raw.get("timestamp")),
        plain_value(raw.get("sensor_id")),
    )
