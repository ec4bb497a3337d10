from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.simulator import Manifest, Simulation, SimulationOptions

REPLAY_START = datetime(2025, 8, 18, tzinfo=UTC)


def simulate(db: Path, **overrides: Any) -> Manifest:
    options: dict[str, Any] = {
        "db": db,
        "count": 2000,
        "seed": 42,
        "replay_start": REPLAY_START,
        "sensors": 20,
        "locations": 4,
        "rate": 50.0,
    }
    options.update(overrides)
    return Simulation(SimulationOptions(**options)).run()


def read_rows(db: Path, table: str = "sensor_readings") -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        assert table in ("sensor_readings", "sensor_data")
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
    finally:
        conn.close()
