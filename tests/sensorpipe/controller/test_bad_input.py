"""Bad input through the real console script: a clear one-line error, a non-zero exit,
and the database exactly as it was (file bytes and rows compared before and after)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.sensorpipe.controller.conftest import RunCli, fingerprint


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("pipeline-controller: error: ")
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr


@pytest.mark.parametrize("command", [["get"], ["set", "filtered", "--by", "ops"]])
def test_missing_directory(tmp_path: Path, run_cli: RunCli, command: list[str]) -> None:
    db = tmp_path / "no-such-dir" / "pipeline_config.db"

    done = run_cli(["--db", str(db), *command])

    assert_one_line_error(done, 1, str(db), "does not exist", "mkdir -p")
    assert not db.parent.exists()


@contextmanager
def read_only(path: Path) -> Iterator[str]:
    """Make ``path`` read-only even for root (tests often run as root, where chmod is
    ignored): the immutable attribute when root, plain permissions otherwise."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield "chmod 444"
        finally:
            path.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], check=False).returncode:
        pytest.fail(
            "root without a working `chattr +i` (e2fsprogs): cannot make a file read-only to test"
        )
    try:
        yield "chattr +i"
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_read_only_file(db_with_history: Path, run_cli: RunCli) -> None:
    before = fingerprint(db_with_history)
    with read_only(db_with_history):
        assert not os.access(db_with_history, os.W_OK)

        refused = run_cli(["--db", str(db_with_history), "set", "raw", "--by", "ops"])
        # Reading a read-only database still works: the uploader must not stop.
        read = run_cli(["--db", str(db_with_history), "get", "--format", "json"])

    assert_one_line_error(refused, 1, str(db_with_history), "read-only", "writable")
    assert read.returncode == 0, read.stderr
    assert '"scenario": "aggregated"' in read.stdout
    assert fingerprint(db_with_history) == before


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(8192))


def _truncated_database(path: Path) -> None:
    from sensorpipe.controller import PipelineController

    PipelineController(path).set("filtered", "ops", "x" * 1000)
    data = path.read_bytes()
    path.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))  # page 2+ overwritten


@pytest.mark.parametrize("make_corrupt", [_random_bytes, _truncated_database])
@pytest.mark.parametrize(
    "command", [["get"], ["history"], ["monitor"], ["set", "filtered", "--by", "ops"]]
)
def test_corrupt_file(
    db_path: Path, run_cli: RunCli, make_corrupt: object, command: list[str]
) -> None:
    assert callable(make_corrupt)
    make_corrupt(db_path)
    before = db_path.read_bytes()

    done = run_cli(["--db", str(db_path), *command])

    assert_one_line_error(done, 1, str(db_path))
    assert "not a usable SQLite database" in done.stderr or "malformed" in done.stderr
    assert "restore it from a backup" in done.stderr
    assert db_path.read_bytes() == before


@pytest.mark.parametrize(
    "scenario",
    [
        "raw'; DROP TABLE pipeline_config; --",
        "filtered); DELETE FROM pipeline_config WHERE (1=1",
        'raw" OR 1=1 --',
        "raw\n",
        "RAW",
        "",
    ],
)
def test_scenario_with_sql_in_its_name(
    db_with_history: Path, run_cli: RunCli, scenario: str
) -> None:
    before = fingerprint(db_with_history)

    done = run_cli(["--db", str(db_with_history), "set", scenario, "--by", "ops"])

    assert_one_line_error(done, 2, "is not a valid name", "must match")
    assert fingerprint(db_with_history) == before


def test_unknown_scenario_lists_the_valid_ones(db_with_history: Path, run_cli: RunCli) -> None:
    before = fingerprint(db_with_history)

    done = run_cli(["--db", str(db_with_history), "set", "emergency", "--by", "ops"])

    assert_one_line_error(done, 2, "unknown scenario 'emergency'", "valid scenarios: aggregated")
    assert fingerprint(db_with_history) == before


@pytest.mark.parametrize("by", ["", "   "])
def test_empty_operator(db_with_history: Path, run_cli: RunCli, by: str) -> None:
    before = fingerprint(db_with_history)

    done = run_cli(["--db", str(db_with_history), "set", "raw", "--by", by, "--reason", "why"])

    assert_one_line_error(done, 2, "--by", "is empty")
    assert fingerprint(db_with_history) == before


def test_bad_input_never_creates_a_database(tmp_path: Path, run_cli: RunCli) -> None:
    db = tmp_path / "pipeline_config.db"
    for args in (
        ["set", "x;--", "--by", "a"],
        ["set", "raw", "--by", ""],
        ["set", "nope", "--by", "a"],
    ):
        assert run_cli(["--db", str(db), *args]).returncode == 2
    assert list(tmp_path.iterdir()) == []
