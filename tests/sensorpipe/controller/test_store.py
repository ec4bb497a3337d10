"""The Python API the uploader and the dashboard use: active, set, history, watch."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from sensorpipe.controller import (
    SCHEMA_VERSION,
    Change,
    CorruptConfigRowError,
    DatabaseUnavailableError,
    InvalidLimitError,
    InvalidOperatorError,
    InvalidReasonError,
    InvalidScenarioNameError,
    PipelineController,
    UnknownScenarioError,
)
from sensorpipe.scenarios import BUILTIN_SCENARIOS, DEFAULT_SCENARIO
from tests.sensorpipe.controller.conftest import fingerprint


def test_fresh_database_starts_at_the_documented_default(db_path: Path) -> None:
    active = PipelineController(db_path).active()

    assert (active.scenario, active.config_version, active.updated_by) == (
        DEFAULT_SCENARIO,
        1,
        "system",
    )
    assert active.updated_at.tzinfo is not None
    assert active.updated_at.utcoffset() == timedelta(0)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (stored_at,) = conn.execute("SELECT updated_at FROM pipeline_config").fetchone()
    assert stored_at.endswith("+00:00") and "." in stored_at  # ISO-8601 UTC, microseconds
    conn.close()


def test_set_appends_a_row_and_reports_previous_and_current(db_path: Path) -> None:
    controller = PipelineController(db_path)

    result = controller.set("filtered", "operations", "Enabling anomaly filtering")

    assert result.changed
    assert result.previous is not None and result.previous.scenario == "raw"
    assert result.current.scenario == "filtered"
    assert result.current.config_version == 2
    assert result.current.updated_by == "operations"
    assert result.current.reason == "Enabling anomaly filtering"
    assert controller.active() == result.current


def test_setting_the_active_scenario_again_records_nothing(db_path: Path) -> None:
    controller = PipelineController(db_path)
    first = controller.set("filtered", "operations", "first")

    again = controller.set("filtered", "someone-else", "second")

    assert not again.changed
    assert again.current == again.previous == first.current
    assert len(controller.history(100)) == 2


def test_history_is_newest_first_and_limited(db_path: Path) -> None:
    controller = PipelineController(db_path)
    for scenario in ("filtered", "aggregated", "lineage", "raw"):
        controller.set(scenario, "ops", f"to {scenario}")

    history = controller.history(limit=3)

    assert [row.scenario for row in history] == ["raw", "lineage", "aggregated"]
    assert [row.config_version for row in history] == [5, 4, 3]
    assert [row.scenario for row in controller.history(100)][-1] == "raw"


@pytest.mark.parametrize("limit", [0, -1, 100_001])
def test_history_limit_out_of_range_is_refused(db_path: Path, limit: int) -> None:
    with pytest.raises(InvalidLimitError, match="history limit"):
        PipelineController(db_path).history(limit)


def test_reason_and_extra_metadata_are_stored_as_json(db_path: Path) -> None:
    controller = PipelineController(db_path)
    result = controller.set("lineage", "ops", "audit", {"ticket": "OPS-42", "dry_run": False})

    assert dict(result.current.metadata) == {
        "reason": "audit",
        "ticket": "OPS-42",
        "dry_run": False,
    }
    with pytest.raises(TypeError):
        result.current.metadata["ticket"] = "changed"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "match"),
    [({"reason": "twice"}, "must not contain 'reason'"), ({"when": object()}, "not JSON")],
)
def test_bad_extra_metadata_is_refused(db_path: Path, extra: dict[str, object], match: str) -> None:
    controller = PipelineController(db_path)
    with pytest.raises(InvalidReasonError, match=match):
        controller.set("lineage", "ops", "why", extra)
    assert controller.active().scenario == "raw"


def test_unknown_scenario_is_refused_with_the_valid_ones(db_path: Path) -> None:
    controller = PipelineController(db_path)
    before = fingerprint(db_path)

    with pytest.raises(UnknownScenarioError) as caught:
        controller.set("emergency", "ops", "not a scenario any more")

    assert caught.value.valid == sorted(BUILTIN_SCENARIOS)
    assert "valid scenarios: aggregated, filtered" in str(caught.value)
    assert fingerprint(db_path) == before


def test_scenarios_from_the_pipeline_config_are_allowed(db_path: Path) -> None:
    controller = PipelineController(db_path, valid_scenarios={"cold-archive"})

    assert controller.set("cold-archive", "ops", "new scenario from YAML").changed
    assert "cold-archive" in controller.allowed_scenarios
    with pytest.raises(UnknownScenarioError):
        PipelineController(db_path).set("cold-archive", "ops", "not configured here")


def test_configured_scenario_names_are_validated_too(db_path: Path) -> None:
    with pytest.raises(InvalidScenarioNameError):
        PipelineController(db_path, valid_scenarios={"x); DROP TABLE pipeline_config; --"})
    assert not db_path.exists()


@pytest.mark.parametrize("by", ["", "   ", "\t", "a\nb", "x" * 201])
def test_operator_must_be_given_and_printable(db_path: Path, by: str) -> None:
    controller = PipelineController(db_path)
    with pytest.raises(InvalidOperatorError, match="--by"):
        controller.set("filtered", by, "why")
    assert len(controller.history(10)) == 1


def test_rows_are_append_only_at_the_database_level(db_with_history: Path) -> None:
    conn = sqlite3.connect(db_with_history)
    try:
        for statement in (
            "UPDATE pipeline_config SET pipeline_type = 'raw'",
            "DELETE FROM pipeline_config",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()
    assert len(PipelineController(db_with_history).history(10)) == 3


def test_a_row_edited_by_hand_gives_a_clear_error(db_path: Path) -> None:
    PipelineController(db_path)
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata)"
            " VALUES ('raw', 'yesterday', 'dba', '{}')"
        )
    conn.close()
    with pytest.raises(CorruptConfigRowError, match="row 2"):
        PipelineController(db_path).active()


def test_shares_a_file_with_other_tables(tmp_path: Path) -> None:
    sensor_db = tmp_path / "sensor_data.db"
    with sqlite3.connect(sensor_db) as conn:
        conn.execute("CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, temperature REAL)")
        conn.executemany("INSERT INTO sensor_readings (temperature) VALUES (?)", [(1.5,), (2.5,)])
    conn.close()

    PipelineController(sensor_db).set("filtered", "ops", "shared file")

    with sqlite3.connect(sensor_db) as conn:
        assert conn.execute("SELECT count(*) FROM sensor_readings").fetchone() == (2,)
    conn.close()


def test_a_database_deleted_under_a_controller_is_not_silently_recreated(db_path: Path) -> None:
    controller = PipelineController(db_path)
    db_path.unlink()
    for suffix in ("-wal", "-shm"):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)

    with pytest.raises(DatabaseUnavailableError, match="cannot open the database"):
        controller.active()
    assert not db_path.exists()


def _collect(changes: list[Change], controller: PipelineController, stop: threading.Event) -> None:
    changes.extend(controller.watch(poll_interval_s=0.02, stop_event=stop))


def test_watch_reports_two_changes_within_one_second(db_path: Path) -> None:
    controller = PipelineController(db_path)
    stop = threading.Event()
    changes: list[Change] = []
    stream = controller.watch(poll_interval_s=0.02, stop_event=stop)  # starting point: now
    first = controller.set("filtered", "alice", "first")
    second = controller.set("aggregated", "bob", "second")
    consumer = threading.Thread(target=lambda: changes.extend(stream))
    consumer.start()
    try:
        deadline = time.monotonic() + 5
        while len(changes) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        consumer.join(timeout=5)

    assert second.current.updated_at - first.current.updated_at < timedelta(seconds=1)
    assert [(c.from_scenario, c.to_scenario, c.who, c.why) for c in changes] == [
        ("raw", "filtered", "alice", "first"),
        ("filtered", "aggregated", "bob", "second"),
    ]
    assert changes[1].when == second.current.updated_at
    assert changes[1].when.tzinfo == UTC or changes[1].when.utcoffset() == timedelta(0)
    assert changes[1].to_dict()["from"] == "filtered"
    assert not consumer.is_alive()


def test_watch_stops_promptly_when_asked(db_path: Path) -> None:
    controller = PipelineController(db_path)
    stop = threading.Event()
    changes: list[Change] = []
    consumer = threading.Thread(target=_collect, args=(changes, controller, stop))
    consumer.start()
    stop.set()
    consumer.join(timeout=2)
    assert not consumer.is_alive()
    assert changes == []


def test_watch_rejects_absurd_poll_intervals(db_path: Path) -> None:
    with pytest.raises(InvalidLimitError):
        PipelineController(db_path).watch(poll_interval_s=0)
