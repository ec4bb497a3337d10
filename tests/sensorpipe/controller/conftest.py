"""Fixtures shared by the controller tests: database files, fingerprints, the real CLI."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from sensorpipe.controller import PipelineController

# The console script installed next to the interpreter running the tests (.venv/bin).
CLI = Path(sys.executable).with_name("pipeline-controller")
_ISOLATED_ENV = ("PIPELINE_CONTROLLER_DB", "UPLOADER_STATE_DIR", "SENSORPIPE_PIPELINE_CONFIG")

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def clean_env() -> dict[str, str]:
    """The test process environment without variables that choose a database or config."""
    return {k: v for k, v in os.environ.items() if k not in _ISOLATED_ENV}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "pipeline_config.db"


@pytest.fixture
def db_with_history(db_path: Path) -> Path:
    """A database with three rows (raw, filtered, aggregated), WAL folded into the file."""
    controller = PipelineController(db_path)
    controller.set("filtered", "operations", "Enabling anomaly filtering")
    controller.set("aggregated", "k8s_admin", "Enable aggregation pipeline")
    return db_path


def fingerprint(path: Path) -> tuple[str, list[tuple[object, ...]]]:
    """SHA-256 of the file and its pipeline_config rows, read without writing anything."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT * FROM pipeline_config ORDER BY id").fetchall()
    conn.close()
    return digest, rows


def run_cli_process(
    args: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def run_cli() -> Iterator[RunCli]:
    assert CLI.exists(), f"console script missing: {CLI} (pip install -e .)"
    yield run_cli_process
