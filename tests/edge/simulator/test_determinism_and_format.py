"""Reproducibility, the generator's table layout and its formats."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edge.simulator import SimulationOptions, SimulatorError
from edge.simulator.fleet import CITIES
from tests.edge.simulator.conftest import REPLAY_START, read_rows, simulate

ISO_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$")
SENSOR_ID = re.compile(r"^[A-Z]{1,4}_[A-Z0-9]{6}$")
ORIGIN_COLUMNS = [
    "id",
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
]
FAULTS = {"invalid_fraction": 0.05, "late_fraction": 0.03, "duplicate_fraction": 0.03}


def test_same_seed_gives_identical_rows_and_manifest(tmp_path: Path) -> None:
    first = simulate(tmp_path / "a.db", anomaly_probability=0.05, **FAULTS)
    second = simulate(tmp_path / "b.db", anomaly_probability=0.05, **FAULTS)
    assert read_rows(tmp_path / "a.db") == read_rows(tmp_path / "b.db")
    assert first.to_dict() == second.to_dict()


def test_another_seed_gives_other_rows(tmp_path: Path) -> None:
    simulate(tmp_path / "a.db", seed=1)
    simulate(tmp_path / "b.db", seed=2)
    a, b = read_rows(tmp_path / "a.db"), read_rows(tmp_path / "b.db")
    assert {r["sensor_id"] for r in a}.isdisjoint({r["sensor_id"] for r in b})
    assert [r["temperature"] for r in a] != [r["temperature"] for r in b]


def test_table_layout_and_wal(tmp_path: Path) -> None:
    simulate(tmp_path / "s.db", count=10)
    conn = sqlite3.connect(tmp_path / "s.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(sensor_readings)")]
    assert columns == ORIGIN_COLUMNS
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(sensor_readings)")}
    assert {"idx_sensor_readings_timestamp", "idx_sensor_readings_sensor_id"} <= indexes


def test_sensor_data_table_has_the_synced_column(tmp_path: Path) -> None:
    simulate(tmp_path / "s.db", count=10, table="sensor_data")
    rows = read_rows(tmp_path / "s.db", "sensor_data")
    assert len(rows) == 10
    assert list(rows[0]) == [*ORIGIN_COLUMNS, "synced"]


def test_rows_have_the_generator_formats(tmp_path: Path) -> None:
    manifest = simulate(tmp_path / "s.db", count=1000, sensors=30, locations=5)
    rows = read_rows(tmp_path / "s.db")
    assert [r["id"] for r in rows] == list(range(1, 1001))
    assert manifest.valid == list(range(1, 1001))
    cities = {c.name: c for c in CITIES}
    for row in rows:
        assert ISO_MS_UTC.match(row["timestamp"]), row["timestamp"]
        assert SENSOR_ID.match(row["sensor_id"]), row["sensor_id"]
        city = cities[row["location"]]
        prefix = "".join(ch for ch in city.name.upper() if ch.isalpha())[:4]
        assert row["sensor_id"].startswith(prefix + "_")
        assert abs(row["latitude"] - city.latitude) < 0.1
        assert abs(row["longitude"] - city.longitude) < 0.1
        assert row["original_timezone"] == city.utc_offset
        assert re.match(r"^\d+\.\d+\.\d+$", row["firmware_version"])
        assert row["status_code"] == row["anomaly_flag"] in (0, 1)
        assert (row["anomaly_type"] is None) == (row["anomaly_flag"] == 0)
        assert all(isinstance(row[m], float) for m in ("temperature", "humidity", "pressure"))
    assert len({r["sensor_id"] for r in rows}) == 30
    assert len({r["location"] for r in rows}) == 5


def test_event_time_advances_by_simulated_time(tmp_path: Path) -> None:
    simulate(tmp_path / "s.db", count=101, rate=20.0)
    rows = read_rows(tmp_path / "s.db")
    times = [datetime.fromisoformat(r["timestamp"]) for r in rows]
    assert times[0] == REPLAY_START
    assert times[-1] - times[0] == timedelta(seconds=5)  # 100 steps at 20 readings/s
    assert times == sorted(times)


def test_duration_bounds_simulated_time(tmp_path: Path) -> None:
    manifest = simulate(tmp_path / "s.db", count=None, duration_s=3.0, rate=10.0)
    assert manifest.rows == 30


def test_replay_is_paced_by_speed(tmp_path: Path) -> None:
    import time

    started = time.monotonic()
    simulate(tmp_path / "s.db", count=101, rate=100.0, speed=4.0)  # 1 s simulated
    assert time.monotonic() - started >= 0.24


def test_appending_continues_ids_and_recreate_restarts_them(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    simulate(db, count=50)
    second = simulate(db, count=20, seed=7)
    assert (second.first_id, second.last_id) == (51, 70)
    third = simulate(db, count=5, recreate=True)
    assert (third.first_id, third.last_id) == (1, 5)
    assert len(read_rows(db)) == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [("table", "readings; DROP TABLE x"), ("rate", 0.0), ("invalid_fraction", 1.5)],
)
def test_bad_options_are_refused(tmp_path: Path, field: str, value: object) -> None:
    options = {"db": tmp_path / "s.db", "count": 1, field: value}
    with pytest.raises(SimulatorError):
        SimulationOptions(**options).check()  # type: ignore[arg-type]
