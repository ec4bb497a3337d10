"""An unreadable controller (issue 11): the last known scenario, never an invented one.

The controller file is deleted, replaced by garbage bytes and locked while the uploader
runs, then restored; on the first start ever there is no controller at all.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from edge.uploader import ControllerReader, StampError, last_known_path
from sensorpipe.controller import PipelineController
from sensorpipe.scenarios import BUILTIN_SCENARIOS
from tests.edge.uploader.conftest import Env, received, simulate


def available() -> float | None:
    return REGISTRY.get_sample_value("sensorpipe_uploader_controller_available")


def remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def more_rows(env: Env, count: int, seed: int) -> None:
    simulate(env.db, count, seed=seed)


def stamps(env: Env) -> list[tuple[str, int]]:
    return [(e.scenario, e.config_version) for e in received(env).envelopes]


def missing_warnings(caplog: pytest.LogCaptureFixture, kind: str) -> int:
    return sum(f"is {kind} (" in r.getMessage() for r in caplog.records)


def test_deleted_garbage_and_locked_controller_use_the_last_known_scenario(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    path = env.tmp / "pipeline.db"
    switch = PipelineController(path).set("schematized", by="test", reason="before the loss")
    known = ("schematized", switch.current.config_version)
    uploader = env.uploader(controller=ControllerReader(path, BUILTIN_SCENARIOS), batch_size=10)
    simulate(env.db, 10)
    uploader.drain()
    assert stamps(env) == [known]
    saved = json.loads(last_known_path(env.tmp / "state" / "ckpt.json").read_text())
    assert (saved["scenario"], saved["config_version"]) == known
    assert uploader.health()["status"] == "ok" and available() == 1

    remove(path)
    with caplog.at_level(logging.WARNING, logger="edge.uploader"):
        more_rows(env, 20, seed=2)
        uploader.drain()  # two batches: one warning
    assert stamps(env) == [known, known]
    assert not path.exists(), "the controller database is never created"
    health = uploader.health()
    assert health["status"] == "degraded" and "missing" in str(health["reason"])
    assert "schematized" in str(health["reason"])
    assert available() == 0
    assert missing_warnings(caplog, "missing") == 1

    path.write_bytes(b"\x00garbage, not SQLite\xff" * 64)
    with caplog.at_level(logging.WARNING, logger="edge.uploader"):
        more_rows(env, 10, seed=3)
        uploader.drain()
    assert stamps(env) == [known]
    health = uploader.health()
    assert health["status"] == "degraded" and "unreadable" in str(health["reason"])
    assert missing_warnings(caplog, "unreadable") == 1
    assert path.read_bytes().startswith(b"\x00garbage"), "the file is left as it is"

    remove(path)
    restored = PipelineController(path)  # restored: a new file, seeded by its operator
    restored.set("lineage", by="operator")
    lineage = ("lineage", restored.active().config_version)
    with caplog.at_level(logging.WARNING, logger="edge.uploader"):
        more_rows(env, 10, seed=4)
        uploader.drain()
    assert stamps(env) == [lineage]
    assert "readable again" in caplog.text
    assert uploader.health()["status"] == "ok" and available() == 1

    with sqlite3.connect(path) as conn:  # rollback journal: a writer then blocks readers
        conn.execute("PRAGMA journal_mode=DELETE")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        more_rows(env, 10, seed=5)
        uploader.drain()
        assert stamps(env) == [lineage]
        health = uploader.health()
        assert health["status"] == "degraded" and "locked" in str(health["reason"])
        assert available() == 0
    finally:
        holder.close()
    restored.set("raw", by="operator")
    more_rows(env, 10, seed=6)
    uploader.drain()
    assert stamps(env) == [("raw", restored.active().config_version)]
    assert uploader.health()["status"] == "ok"


def test_a_restart_with_a_corrupt_controller_uploads_under_the_last_known(env: Env) -> None:
    path = env.tmp / "pipeline.db"
    PipelineController(path).set("filtered", by="test")
    simulate(env.db, 10)
    env.uploader(controller=ControllerReader(path, BUILTIN_SCENARIOS)).drain()
    received(env)
    path.write_bytes(b"corrupt" * 100)
    simulate(env.db, 5, seed=2)
    restarted = env.uploader(controller=ControllerReader(path, BUILTIN_SCENARIOS))
    assert restarted.drain().records == 5
    assert stamps(env) == [("filtered", 2)]


def test_the_first_start_without_a_controller_sends_nothing_and_waits(env: Env) -> None:
    path = env.tmp / "never-created.db"
    simulate(env.db, 10)
    uploader = env.uploader(controller=ControllerReader(path, BUILTIN_SCENARIOS))
    with pytest.raises(StampError, match="no scenario known yet"):
        uploader.step()
    assert received(env).envelopes == []
    assert not path.exists(), "no controller is invented"
    health = uploader.health()
    assert health["status"] == "unhealthy" and "not sending" in str(health["reason"])
    assert uploader.state.last_id == 0 and uploader.state.pending is None
    PipelineController(path).set("lineage", by="operator")
    assert uploader.drain().records == 10
    assert stamps(env) == [("lineage", 2)]
    assert uploader.health()["status"] == "ok"
