"""Layout of the ``pipeline_config`` table, its creation and in-place migrations.

The table is an append-only log: one row per scenario change, the newest row (highest id)
is the active scenario and its id is the config version. Two older public layouts exist
(notes/origin.md section 8) and are converted on first use, inside one ``BEGIN IMMEDIATE``
transaction, keeping every row, its id and its order. Only ``pipeline_config`` is touched:
the file is often the sensor database itself.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sensorpipe.controller.errors import UnsupportedSchemaError
from sensorpipe.scenarios import DEFAULT_SCENARIO

# Stored in PRAGMA user_version. 1 was the CHECK-constrained seed layout.
SCHEMA_VERSION = 2
TABLE = "pipeline_config"
SEED_OPERATOR = "system"
MIGRATION_OPERATOR = "migration"

_CREATE_TABLE = """
CREATE TABLE pipeline_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_type TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
)
"""
# History is an audit log: refuse edits at the database level, not only in this code.
_CREATE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS pipeline_config_no_update BEFORE UPDATE ON pipeline_config
       BEGIN SELECT RAISE(ABORT, 'pipeline_config is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS pipeline_config_no_delete BEFORE DELETE ON pipeline_config
       BEGIN SELECT RAISE(ABORT, 'pipeline_config is append-only'); END""",
)
INSERT_ROW = (
    "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
    "VALUES (?, ?, ?, ?)"
)

# (name, NOT NULL) per column, in order, as PRAGMA table_info reports them.
_CURRENT_COLUMNS = (
    ("id", False),
    ("pipeline_type", True),
    ("updated_at", True),
    ("updated_by", True),
    ("metadata", True),
)
_SEED_V1_COLUMNS = {"id", "pipeline_type", "updated_at", "updated_by", "metadata"}
_ACTIVE_FLAG_COLUMNS = {"id", "pipeline_type", "created_at", "created_by", "is_active"}


class Layout(Enum):
    """Which shape ``pipeline_config`` has in a database file."""

    ABSENT = "absent"
    CURRENT = "current"
    # 46c2f087: CHECK on pipeline_type, updated_at DEFAULT CURRENT_TIMESTAMP, nullable by.
    SEED_V1 = "seed-v1-check-constrained"
    # a140e6d0 and later: created_at/created_by/is_active, newest active row wins.
    ACTIVE_FLAG = "active-flag"


@dataclass(frozen=True, slots=True)
class SchemaState:
    layout: Layout
    has_rows: bool

    @property
    def ready(self) -> bool:
        """Usable as is: nothing to create, migrate or seed."""
        return self.layout is Layout.CURRENT and self.has_rows


def utc_now_iso() -> str:
    """The timestamp format of ``updated_at``: ISO-8601, UTC, microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def inspect_schema(conn: sqlite3.Connection, db_path: str) -> SchemaState:
    """Classify the table without writing anything."""
    columns = conn.execute(
        "SELECT name, \"notnull\" FROM pragma_table_info('pipeline_config') ORDER BY cid"
    ).fetchall()
    if not columns:
        return SchemaState(Layout.ABSENT, has_rows=False)
    shape = tuple((str(name), bool(not_null)) for name, not_null in columns)
    names = {name for name, _ in shape}
    (has_rows,) = conn.execute("SELECT EXISTS (SELECT 1 FROM pipeline_config)").fetchone()
    if shape == _CURRENT_COLUMNS:
        return SchemaState(Layout.CURRENT, bool(has_rows))
    if names == _SEED_V1_COLUMNS:
        return SchemaState(Layout.SEED_V1, bool(has_rows))
    if names >= _ACTIVE_FLAG_COLUMNS:
        return SchemaState(Layout.ACTIVE_FLAG, bool(has_rows))
    (user_version,) = conn.execute("PRAGMA user_version").fetchone()
    newer = f" (user_version {user_version} is newer than {SCHEMA_VERSION})"
    raise UnsupportedSchemaError(
        f"table pipeline_config has an unknown layout, columns {sorted(names)}"
        + (newer if int(user_version) > SCHEMA_VERSION else ""),
        db_path=db_path,
        hint="point --db at the pipeline config database; the file was left untouched",
    )


def bring_up_to_date(conn: sqlite3.Connection, db_path: str) -> None:
    """Create, migrate or seed the table. Call inside ``BEGIN IMMEDIATE``."""
    state = inspect_schema(conn, db_path)
    if state.ready:
        return
    if state.layout is Layout.ABSENT:
        _create(conn)
    elif state.layout is not Layout.CURRENT:
        _migrate(conn, state.layout)
    if not inspect_schema(conn, db_path).has_rows:
        _append(conn, DEFAULT_SCENARIO, SEED_OPERATOR, {"reason": "initial default scenario"})
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


def _create(conn: sqlite3.Connection) -> None:
    conn.execute(_CREATE_TABLE)
    for trigger in _CREATE_TRIGGERS:
        conn.execute(trigger)


def _append(
    conn: sqlite3.Connection, scenario: str, operator: str, metadata: dict[str, Any]
) -> None:
    conn.execute(
        INSERT_ROW, (scenario, utc_now_iso(), operator, json.dumps(metadata, sort_keys=True))
    )


@dataclass(frozen=True, slots=True)
class _LegacyRow:
    id: int
    scenario: str
    at: str | None
    by: str | None
    metadata: str | None
    is_active_flag: int | None  # the column of the active-flag layout, as stored


def _read_legacy(conn: sqlite3.Connection, layout: Layout) -> tuple[list[_LegacyRow], int | None]:
    """All rows in id order, and the id of the row the old code treated as active."""
    if layout is Layout.SEED_V1:
        query = "SELECT id, pipeline_type, updated_at, updated_by, metadata, NULL"
        # The 46c2f087 code took the newest row by updated_at; break its ties by id.
        active_query = "SELECT id FROM pipeline_config ORDER BY updated_at DESC, id DESC LIMIT 1"
    else:
        query = "SELECT id, pipeline_type, created_at, created_by, NULL, is_active"
        active_query = "SELECT max(id) FROM pipeline_config WHERE is_active = 1"
    rows = [
        _LegacyRow(
            int(i), str(t), _text_or_none(a), _text_or_none(b), _text_or_none(m),
            None if flag is None else int(flag),
        )
        for i, t, a, b, m, flag in conn.execute(query + " FROM pipeline_config ORDER BY id")
    ]  # fmt: skip
    active = conn.execute(active_query).fetchone()
    return rows, (int(active[0]) if active and active[0] is not None else None)


def _migrate(conn: sqlite3.Connection, layout: Layout) -> None:
    rows, active_id = _read_legacy(conn, layout)
    migrated_at = utc_now_iso()
    # Ids are config versions: never hand out again an id the old table once used.
    highest_used = _highest_used_id(conn)
    conn.execute("DROP TABLE IF EXISTS pipeline_config_migrating")
    # The current layout under a temporary name; renamed once every row is copied.
    conn.execute(_CREATE_TABLE.replace("pipeline_config", "pipeline_config_migrating", 1))
    for row in rows:
        metadata = _legacy_metadata(row.metadata)
        timestamp = _legacy_timestamp(row.at)
        if timestamp is None:  # keep the row; say what its time was
            metadata["legacy_timestamp"] = row.at
            timestamp = migrated_at
        metadata["migrated_from"] = {
            "layout": layout.value,
            "was_active": row.id == active_id,
            "migrated_at": migrated_at,
        }
        if row.is_active_flag is not None:
            metadata["migrated_from"]["is_active"] = bool(row.is_active_flag)
        conn.execute(
            "INSERT INTO pipeline_config_migrating "
            "(id, pipeline_type, updated_at, updated_by, metadata) VALUES (?, ?, ?, ?, ?)",
            (row.id, row.scenario, timestamp, (row.by or "").strip() or "unknown",
             json.dumps(metadata, sort_keys=True)),
        )  # fmt: skip
    conn.execute("DROP TABLE pipeline_config")
    conn.execute("ALTER TABLE pipeline_config_migrating RENAME TO pipeline_config")
    if highest_used > _highest_used_id(conn):
        conn.execute("DELETE FROM sqlite_sequence WHERE name = 'pipeline_config'")
        conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('pipeline_config', ?)",
            (highest_used,),
        )
    for trigger in _CREATE_TRIGGERS:
        conn.execute(trigger)
    if rows and active_id != rows[-1].id:
        # The old code's active row was not the newest one; re-append it so the active
        # scenario does not change by migrating.
        kept = next((r.scenario for r in rows if r.id == active_id), DEFAULT_SCENARIO)
        reason = "keep the scenario that was active before migrating from " + layout.value
        _append(conn, kept, MIGRATION_OPERATOR, {"reason": reason})


def _highest_used_id(conn: sqlite3.Connection) -> int:
    """The AUTOINCREMENT high-water mark (0 when the table never had AUTOINCREMENT)."""
    has_sequence = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).fetchone()
    if not has_sequence:
        return 0
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pipeline_config'").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _legacy_metadata(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"legacy_metadata": text}
    return parsed if isinstance(parsed, dict) else {"legacy_metadata": parsed}


def _legacy_timestamp(text: str | None) -> str | None:
    """SQLite's CURRENT_TIMESTAMP / datetime('now') text (UTC) as ISO-8601 with microseconds."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)
