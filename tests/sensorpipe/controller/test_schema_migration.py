"""In-place migration of the two older public layouts (notes/origin.md section 8)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.controller import SCHEMA_VERSION, PipelineController, UnsupportedSchemaError

# 46c2f087: CHECK-constrained types, updated_at DEFAULT CURRENT_TIMESTAMP, nullable by.
SEED_V1_DDL = """
CREATE TABLE pipeline_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_type TEXT NOT NULL CHECK(pipeline_type IN
        ('raw', 'schematized', 'aggregated', 'emergency', 'regional')),
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_by TEXT,
    metadata TEXT
);
CREATE INDEX idx_pipeline_config_updated ON pipeline_config(updated_at DESC);
"""
# a140e6d0 and later: created_at / created_by / is_active, newest active row wins.
ACTIVE_FLAG_DDL = """
CREATE TABLE pipeline_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_type TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now')),
    created_by TEXT DEFAULT 'pipeline-manager',
    is_active INTEGER DEFAULT 1
);
CREATE INDEX idx_pipeline_created ON pipeline_config(created_at DESC);
"""
SENSOR_DDL = "CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, temperature REAL);"


def _build(path: Path, ddl: str, inserts: list[tuple[str, tuple[object, ...]]]) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(ddl + SENSOR_DDL)
        conn.executemany("INSERT INTO sensor_readings (temperature) VALUES (?)", [(20.5,), (21.0,)])
        for sql, params in inserts:
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def _seed_v1_db(path: Path) -> None:
    insert = "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
    _build(
        path,
        SEED_V1_DDL,
        [
            (insert + "VALUES ('raw', '2025-08-06 10:00:00', 'system', ?)", ('{"init": true}',)),
            (insert + "VALUES ('schematized', '2025-08-06 10:05:00', NULL, NULL)", ()),
            # two changes within the same second: the old code could not tell them apart
            (insert + "VALUES ('emergency', '2025-08-06 10:05:07', 'ops', 'not json')", ()),
            (insert + "VALUES ('aggregated', '2025-08-06 10:05:07', 'ops', '[1, 2]')", ()),
        ],
    )


def _active_flag_db(path: Path, active_ids: tuple[int, ...] = (3,)) -> None:
    insert = "INSERT INTO pipeline_config (pipeline_type, created_at, created_by, is_active) "
    rows = [("raw", "2025-08-12 09:00:00", "pipeline-manager"), ("schematized", "2025-08-12 "
            "09:30:00", None), ("anomaly", "2025-08-12 09:30:00", "ops")]  # fmt: skip
    _build(
        path,
        ACTIVE_FLAG_DDL,
        [
            (insert + "VALUES (?, ?, ?, ?)", (t, at, by, int(i + 1 in active_ids)))
            for i, (t, at, by) in enumerate(rows)
        ],
    )


def _sensor_rows_digest(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT * FROM sensor_readings ORDER BY id").fetchall()
    finally:
        conn.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def _raw_rows(path: Path) -> list[tuple[int, str, str, str, dict[str, Any]]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT * FROM pipeline_config ORDER BY id").fetchall()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    return [(i, t, at, by, json.loads(meta)) for i, t, at, by, meta in rows]


def test_seed_v1_layout_is_migrated_without_losing_a_row(tmp_path: Path) -> None:
    db = tmp_path / "sensor_data.db"
    _seed_v1_db(db)
    sensor_digest = _sensor_rows_digest(db)

    controller = PipelineController(db)

    rows = _raw_rows(db)
    assert [(i, t, by) for i, t, _, by, _ in rows] == [
        (1, "raw", "system"),
        (2, "schematized", "unknown"),
        (3, "emergency", "ops"),
        (4, "aggregated", "ops"),
    ]
    assert [at for _, _, at, _, _ in rows] == [
        "2025-08-06T10:00:00.000000+00:00",
        "2025-08-06T10:05:00.000000+00:00",
        "2025-08-06T10:05:07.000000+00:00",
        "2025-08-06T10:05:07.000000+00:00",
    ]
    metadata = [meta for *_, meta in rows]
    assert metadata[0]["init"] is True
    assert metadata[2]["legacy_metadata"] == "not json"
    assert metadata[3]["legacy_metadata"] == [1, 2]
    assert [m["migrated_from"]["was_active"] for m in metadata] == [False, False, False, True]
    assert {m["migrated_from"]["layout"] for m in metadata} == {"seed-v1-check-constrained"}
    assert controller.active().scenario == "aggregated"
    assert controller.active().config_version == 4
    assert _sensor_rows_digest(db) == sensor_digest


def test_the_check_constraint_is_gone_after_migration(tmp_path: Path) -> None:
    db = tmp_path / "sensor_data.db"
    _seed_v1_db(db)
    controller = PipelineController(db)

    result = controller.set("filtered", "operations", "Enabling anomaly filtering")

    assert result.changed and result.current.config_version == 5


def test_active_flag_layout_is_migrated_without_losing_a_row(tmp_path: Path) -> None:
    db = tmp_path / "pipeline_config.db"
    _active_flag_db(db)
    sensor_digest = _sensor_rows_digest(db)

    controller = PipelineController(db)

    rows = _raw_rows(db)
    assert [(i, t, by) for i, t, _, by, _ in rows] == [
        (1, "raw", "pipeline-manager"),
        (2, "schematized", "unknown"),
        (3, "anomaly", "ops"),
    ]
    assert [m["migrated_from"]["was_active"] for *_, m in rows] == [False, False, True]
    assert [m["migrated_from"]["is_active"] for *_, m in rows] == [False, False, True]
    # 'anomaly' is no longer a scenario, but it was active and stays readable as such.
    assert controller.active().scenario == "anomaly"
    assert controller.set("raw", "ops", "back to a known scenario").current.config_version == 4
    assert _sensor_rows_digest(db) == sensor_digest


def test_an_active_row_that_is_not_the_newest_stays_active(tmp_path: Path) -> None:
    db = tmp_path / "pipeline_config.db"
    _active_flag_db(db, active_ids=(2,))  # edited by hand: the newest row is inactive

    controller = PipelineController(db)

    history = controller.history(10)
    assert [row.scenario for row in history] == ["schematized", "anomaly", "schematized", "raw"]
    assert history[0].updated_by == "migration"
    assert history[0].reason is not None and "keep the scenario" in history[0].reason


def test_ids_used_before_migration_are_never_reused(tmp_path: Path) -> None:
    db = tmp_path / "pipeline_config.db"
    _active_flag_db(db)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO pipeline_config (pipeline_type, is_active) VALUES ('raw', 0)")
    conn.execute("DELETE FROM pipeline_config WHERE id = 4")  # config version 4 was used
    conn.commit()
    conn.close()

    controller = PipelineController(db)

    assert controller.set("filtered", "ops", "after migration").current.config_version == 5


def test_migration_runs_once(tmp_path: Path) -> None:
    db = tmp_path / "sensor_data.db"
    _seed_v1_db(db)
    PipelineController(db)
    migrated = _raw_rows(db)

    PipelineController(db).active()

    assert _raw_rows(db) == migrated


def _open_and_read(path: str) -> None:
    PipelineController(path, lock_timeout_s=30).active()


def test_concurrent_first_use_migrates_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "sensor_data.db"
    _seed_v1_db(db)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_open_and_read, args=(str(db),)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    rows = _raw_rows(db)
    assert [i for i, *_ in rows] == [1, 2, 3, 4]
    assert all("migrated_from" in meta and "init" not in meta["migrated_from"] for *_, meta in rows)


def test_an_unknown_layout_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE pipeline_config (id INTEGER CHECK (id = 1), config_json TEXT)")
    conn.execute("INSERT INTO pipeline_config VALUES (1, '{}')")
    conn.commit()
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    with pytest.raises(UnsupportedSchemaError, match="unknown layout"):
        PipelineController(db)

    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
