"""The sensor-log-generator table layout (notes/origin.md section 2), in WAL mode.

``sensor_readings`` is the generator's table; ``sensor_data`` is the name the v2 demo's
test database and orchestrator used, with the extra ``synced`` column of that era.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Final

from edge.simulator.errors import SimulatorError

SENSOR_TABLES: Final = ("sensor_readings", "sensor_data")

# Column order of an inserted row (everything but the AUTOINCREMENT id).
COLUMNS: Final = (
    "timestamp",
    "sensor_id",
    "temperature",
    "humidity",
    "pressure",
    "vibration",
    "voltage",
    "status_code",
    "anomaly_flag",
    "anomaly_type",
    "firmware_version",
    "model",
    "manufacturer",
    "location",
    "latitude",
    "longitude",
    "original_timezone",
    "serial_number",
    "deployment_type",
    "installation_date",
    "height_meters",
    "manufacture_date",
    "instance_id",
    "sensor_type",
    "orientation_degrees",
)

_COLUMN_TYPES: Final = """
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    sensor_id TEXT NOT NULL,
    temperature REAL,
    humidity REAL,
    pressure REAL,
    vibration REAL,
    voltage REAL,
    status_code INTEGER,
    anomaly_flag INTEGER DEFAULT 0,
    anomaly_type TEXT,
    firmware_version TEXT,
    model TEXT,
    manufacturer TEXT,
    location TEXT,
    latitude REAL,
    longitude REAL,
    original_timezone TEXT,
    serial_number TEXT,
    deployment_type TEXT,
    installation_date TEXT,
    height_meters REAL,
    manufacture_date TEXT,
    instance_id TEXT,
    sensor_type TEXT,
    orientation_degrees REAL"""

_DDL: Final = {
    "sensor_readings": (
        f"CREATE TABLE IF NOT EXISTS sensor_readings ({_COLUMN_TYPES}\n)",
        "CREATE INDEX IF NOT EXISTS idx_sensor_readings_timestamp ON sensor_readings(timestamp)",
        "CREATE INDEX IF NOT EXISTS idx_sensor_readings_sensor_id ON sensor_readings(sensor_id)",
    ),
    "sensor_data": (
        f"CREATE TABLE IF NOT EXISTS sensor_data ({_COLUMN_TYPES},\n"
        "    synced INTEGER DEFAULT 0\n)",
        "CREATE INDEX IF NOT EXISTS idx_sensor_data_timestamp ON sensor_data(timestamp)",
        "CREATE INDEX IF NOT EXISTS idx_sensor_data_sensor_id ON sensor_data(sensor_id)",
    ),
}

_INSERT: Final = {
    table: (
        f"INSERT INTO {table} (id, {', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in range(len(COLUMNS) + 1))})"
    )
    for table in SENSOR_TABLES
}


def check_table(table: str) -> str:
    if table not in SENSOR_TABLES:
        raise SimulatorError(
            f"table {table!r} is not a sensor table", hint=f"use one of {list(SENSOR_TABLES)}"
        )
    return table


def insert_sql(table: str) -> str:
    return _INSERT[check_table(table)]


def remove_database(path: Path) -> None:
    """Delete the file and its WAL companions, as the generator does on start."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


def open_database(path: Path, table: str) -> sqlite3.Connection:
    """Open (creating if needed) the database with the generator's pragmas and table."""
    check_table(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for statement in _DDL[table]:
            conn.execute(statement)
    except sqlite3.Error as exc:
        raise SimulatorError(
            f"cannot open sensor database {path}: {exc}",
            hint="check the path, disk space and permissions",
        ) from exc
    return conn


def next_row_id(conn: sqlite3.Connection, table: str) -> int:
    """The id AUTOINCREMENT would give the next row (ids are never reused)."""
    check_table(table)
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    highest = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]
    return max(int(row[0]) if row else 0, int(highest)) + 1
