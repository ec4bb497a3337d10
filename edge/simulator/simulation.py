"""The simulation loop: readings on a simulated clock, faults, batched WAL commits.

Event timestamps advance by simulated time (``i / rate`` seconds after the replay
start), so a replay runs as fast as asked (``speed`` x real time, 0 = unthrottled) and the
same seed and replay start give identical rows. The manifest lists exactly which row ids
are valid, invalid (with the rule they break), anomalous, late and duplicated.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.simulator.errors import SimulatorError
from edge.simulator.faults import FaultInjector, Row
from edge.simulator.fleet import Sensor, build_fleet
from edge.simulator.readings import Reading, ReadingGenerator
from edge.simulator.schema import (
    COLUMNS,
    check_table,
    insert_sql,
    next_row_id,
    open_database,
    remove_database,
)

# Commit at least this often in wall time, so a concurrent reader sees rows promptly.
_MAX_COMMIT_DELAY_S = 1.0


@dataclass(frozen=True)
class SimulationOptions:
    db: Path
    table: str = "sensor_readings"
    sensors: int = 50
    locations: int = 5
    rate: float = 10.0  # readings per simulated second, whole fleet
    duration_s: float | None = None
    count: int | None = None
    seed: int = 42
    replay_start: datetime | None = None
    speed: float = 0.0  # x real time; 0 = as fast as possible
    invalid_fraction: float = 0.0
    late_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    anomaly_probability: float = 0.01
    late_delay_s: tuple[float, float] = (30.0, 300.0)
    commit_every: int = 50
    recreate: bool = False

    def check(self) -> None:
        check_table(self.table)
        if self.rate <= 0:
            raise SimulatorError(f"--rate {self.rate} must be positive")
        if self.speed < 0:
            raise SimulatorError(f"--speed {self.speed} must be 0 (unthrottled) or positive")
        for name in ("invalid_fraction", "late_fraction", "duplicate_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise SimulatorError(f"--{name.replace('_', '-')} {value} is outside 0..1")
        if self.invalid_fraction + self.late_fraction > 1:
            raise SimulatorError("--invalid-fraction plus --late-fraction exceeds 1")
        if not 0 <= self.anomaly_probability <= 1:
            raise SimulatorError(
                f"--anomaly-probability {self.anomaly_probability} is outside 0..1"
            )
        if self.count is not None and self.count < 0:
            raise SimulatorError(f"--count {self.count} must not be negative")
        if self.duration_s is not None and self.duration_s < 0:
            raise SimulatorError(f"--duration {self.duration_s} must not be negative")
        low, high = self.late_delay_s
        if not 0 < low <= high:
            raise SimulatorError(f"late delay range {self.late_delay_s} must be 0 < low <= high")
        if self.commit_every < 1:
            raise SimulatorError("--commit-every must be at least 1")


@dataclass
class Manifest:
    """What was written, by row id (JSON for tests and benchmarks)."""

    seed: int
    table: str
    first_id: int | None = None
    last_id: int | None = None
    rows: int = 0
    valid: list[int] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    anomalous: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)
    duplicate: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "table": self.table,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "rows": self.rows,
            "counts": {
                "valid": len(self.valid),
                "invalid": len(self.invalid),
                "anomalous": len(self.anomalous),
                "late": len(self.late),
                "duplicate": len(self.duplicate),
            },
            "valid": self.valid,
            "invalid": self.invalid,
            "anomalous": self.anomalous,
            "late": self.late,
            "duplicate": self.duplicate,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)


@dataclass(order=True)
class _Held:
    release_s: float
    seq: int
    row: Row = field(compare=False)
    notes: dict[str, Any] = field(compare=False)


class Simulation:
    def __init__(self, options: SimulationOptions, stop: threading.Event | None = None) -> None:
        options.check()
        self.options = options
        self.stop = stop or threading.Event()
        seed = options.seed
        # Separate streams: changing a fault fraction does not reshuffle the readings.
        self.fleet = build_fleet(
            random.Random(f"{seed}:fleet"), sensors=options.sensors, locations=options.locations
        )
        self.readings = ReadingGenerator(
            random.Random(f"{seed}:readings"), options.anomaly_probability
        )
        self.faults = FaultInjector(
            random.Random(f"{seed}:faults"),
            invalid_fraction=options.invalid_fraction,
            late_fraction=options.late_fraction,
            duplicate_fraction=options.duplicate_fraction,
            late_delay_s=options.late_delay_s,
        )
        start = options.replay_start or datetime.now(UTC)
        self.start = start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000)
        self.manifest = Manifest(seed=seed, table=options.table)
        self._buffer: list[tuple[Any, ...]] = []
        self._held: list[_Held] = []
        self._created = 0
        self._next_id = 1
        self._newest_event_s = 0.0
        self._last_commit = time.monotonic()

    def run(self) -> Manifest:
        opts = self.options
        if opts.recreate:
            remove_database(opts.db)
        conn = open_database(opts.db, opts.table)
        try:
            self._next_id = next_row_id(conn, opts.table)
            self._loop(conn)
            for held in sorted(self._held):
                self._emit(conn, held.row, held.notes)
            self._held.clear()
            self._commit(conn)
        except sqlite3.Error as exc:
            raise SimulatorError(f"writing {opts.db} failed: {exc}") from exc
        finally:
            conn.close()
        return self.manifest

    def _loop(self, conn: sqlite3.Connection) -> None:
        opts = self.options
        wall_start = time.monotonic()
        index = 0
        while not self.stop.is_set():
            if opts.count is not None and self._created >= opts.count:
                return
            sim_s = index / opts.rate
            if opts.duration_s is not None and sim_s >= opts.duration_s:
                return
            while self._held and self._held[0].release_s <= sim_s:
                held = heapq.heappop(self._held)
                self._emit(conn, held.row, held.notes)
            if opts.speed > 0:
                self._pace(conn, wall_start + sim_s / opts.speed)
            sensor = self.fleet[index % len(self.fleet)]
            self._reading(conn, sensor, self.readings.next(sensor), sim_s)
            index += 1

    def _reading(
        self, conn: sqlite3.Connection, sensor: Sensor, reading: Reading, sim_s: float
    ) -> None:
        event_time = self.start + timedelta(seconds=sim_s)
        row = _row(sensor, reading, event_time)
        notes: dict[str, Any] = {"event_s": sim_s}
        if reading.anomaly is not None:
            notes["anomaly"] = {
                "type": reading.anomaly.type,
                "metrics": list(reading.anomaly.metrics),
            }
        fault = self.faults.choose()
        duplicate = self.faults.duplicate()
        self._created += 1
        if fault == "invalid" and reading.anomaly is None:
            notes["invalid"] = self.faults.break_row(row, event_time).to_dict()
        elif fault == "late":
            delay = self.faults.late_delay()
            notes["late"] = delay
            heapq.heappush(self._held, _Held(sim_s + delay, self._created, row, notes))
            return
        original = self._emit(conn, row, notes)
        if duplicate and "invalid" not in notes and self._room():
            self._created += 1
            self._emit(conn, dict(row), {**notes, "duplicate_of": original})

    def _room(self) -> bool:
        return self.options.count is None or self._created < self.options.count

    def _emit(self, conn: sqlite3.Connection, row: Row, notes: dict[str, Any]) -> int:
        row_id = self._next_id
        self._next_id += 1
        self._buffer.append((row_id, *(row[c] for c in COLUMNS)))
        m = self.manifest
        m.rows += 1
        m.first_id = row_id if m.first_id is None else m.first_id
        m.last_id = row_id
        if "invalid" in notes:
            m.invalid.append({"id": row_id, **notes["invalid"]})
        else:
            m.valid.append(row_id)
        if "anomaly" in notes:
            m.anomalous.append({"id": row_id, **notes["anomaly"]})
        event_s = notes.get("event_s", 0.0)
        if "late" in notes:
            # How far behind the newest row already written it lands (rows held past the
            # end of the run are written then, so this can be less than the planned delay).
            lag = round(self._newest_event_s - event_s, 3)
            m.late.append({"id": row_id, "timestamp": row["timestamp"], "lag_s": lag})
        self._newest_event_s = max(self._newest_event_s, event_s)
        if "duplicate_of" in notes:
            m.duplicate.append({"id": row_id, "duplicate_of": notes["duplicate_of"]})
        if (
            len(self._buffer) >= self.options.commit_every
            or time.monotonic() - self._last_commit >= _MAX_COMMIT_DELAY_S
        ):
            self._commit(conn)
        return row_id

    def _commit(self, conn: sqlite3.Connection) -> None:
        if self._buffer:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert_sql(self.options.table), self._buffer)
            conn.execute("COMMIT")
            self._buffer.clear()
        self._last_commit = time.monotonic()

    def _pace(self, conn: sqlite3.Connection, wall_target: float) -> None:
        wait = wall_target - time.monotonic()
        if wait > 0:
            self._commit(conn)  # readers see what exists before we idle
            self.stop.wait(wait)


def _row(sensor: Sensor, reading: Reading, event_time: datetime) -> Row:
    anomaly = reading.anomaly
    return {
        "timestamp": event_time.isoformat(timespec="milliseconds"),
        "sensor_id": sensor.sensor_id,
        **reading.values,
        "status_code": 1 if anomaly else 0,
        "anomaly_flag": 1 if anomaly else 0,
        "anomaly_type": anomaly.type if anomaly else None,
        "firmware_version": sensor.firmware_version,
        "model": sensor.device.model,
        "manufacturer": sensor.device.manufacturer,
        "location": sensor.location.name,
        "latitude": sensor.latitude,
        "longitude": sensor.longitude,
        "original_timezone": sensor.location.utc_offset,
        "serial_number": sensor.serial_number,
        "deployment_type": sensor.deployment_type,
        "installation_date": sensor.installation_date,
        "height_meters": sensor.height_meters,
        "manufacture_date": sensor.manufacture_date,
        "instance_id": sensor.instance_id,
        "sensor_type": "environmental",
        "orientation_degrees": sensor.orientation_degrees,
    }
