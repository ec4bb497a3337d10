"""Opening an existing controller read-only: it reads, and it never creates or changes."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from sensorpipe.controller import (
    DatabaseLockedError,
    DatabaseUnavailableError,
    EmptyConfigError,
    PipelineController,
)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reads_the_active_scenario_without_writing(db_path: Path) -> None:
    writer = PipelineController(db_path)
    writer.set("lineage", by="test", reason="r")
    before = digest(db_path)
    reader = PipelineController.open_existing(db_path)
    active = reader.active()
    assert (active.scenario, active.config_version) == ("lineage", 2)
    assert digest(db_path) == before
    with pytest.raises(DatabaseUnavailableError, match="read-only"):
        reader.set("raw", by="test")
    assert writer.active().scenario == "lineage"


def test_a_missing_file_is_an_error_and_is_not_created(db_path: Path) -> None:
    with pytest.raises(DatabaseUnavailableError, match="does not exist"):
        PipelineController.open_existing(db_path)
    assert not db_path.exists()


def test_a_file_deleted_under_a_reader_is_not_recreated(db_path: Path) -> None:
    PipelineController(db_path)
    reader = PipelineController.open_existing(db_path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(DatabaseUnavailableError):
        reader.active()
    assert not db_path.exists()


def test_garbage_bytes_are_not_a_database(db_path: Path) -> None:
    db_path.write_bytes(b"not sqlite at all " * 100)
    with pytest.raises(DatabaseUnavailableError, match="not a usable SQLite database"):
        PipelineController.open_existing(db_path)
    assert db_path.read_bytes() == b"not sqlite at all " * 100


def test_an_empty_database_is_neither_seeded_nor_migrated(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(DatabaseUnavailableError, match="absent"):
        PipelineController.open_existing(empty)
    with sqlite3.connect(empty) as conn:
        conn.execute(
            "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "pipeline_type TEXT NOT NULL, updated_at TEXT NOT NULL, updated_by TEXT NOT NULL, "
            "metadata TEXT NOT NULL DEFAULT '{}')"
        )
    with pytest.raises(EmptyConfigError):
        PipelineController.open_existing(empty)
    with sqlite3.connect(empty) as conn:
        assert conn.execute("SELECT count(*) FROM pipeline_config").fetchone() == (0,)


def test_an_exclusive_lock_beyond_the_budget_is_a_lock_error(db_path: Path) -> None:
    PipelineController(db_path)
    with sqlite3.connect(db_path) as conn:  # rollback journal: a writer then blocks readers
        conn.execute("PRAGMA journal_mode=DELETE")
    reader = PipelineController.open_existing(db_path, lock_timeout_s=0.3)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DatabaseLockedError):
            reader.active()
        holder.execute("ROLLBACK")
        assert reader.active().scenario == "raw"
    finally:
        holder.close()
