"""Every command line outside the services, as a process: usage, flag errors, a closed pipe.

A reader that goes away (``| head -1``, ``| grep -q``) ends each command quietly with
exit 141 (128 + SIGPIPE); ``--help`` prints usage and does nothing else; a bad flag is
exit 2. None of this talks to AWS: the endpoint given here is unusable on purpose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipes import run_reader_gone

ENTRY_POINTS = {
    "pipeline-controller": ["sensorpipe.controller"],
    "sensorpipe-replay": ["sensorpipe.replay"],
    "sensorpipe-provision": ["sensorpipe.provisioning.cli"],
    "sensorpipe-localstack": ["sensorpipe.devstack.localstack"],
    "python -m sensorpipe.devstack.demo": ["sensorpipe.devstack.demo"],
    "python -m edge.simulator": ["edge.simulator"],
}
OFFLINE = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}


def _env() -> dict[str, str]:
    # Inherit PYTHONPATH (this tree); buffered stdout, as when run from a shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENSORPIPE", "AWS_"))}
    env.pop("PYTHONUNBUFFERED", None)
    return {**env, **OFFLINE}


def run(module: str, *args: str, reader_gone: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", module, *args]
    if not reader_gone:
        return subprocess.run(
            command, env=_env(), capture_output=True, text=True, timeout=120, check=False
        )
    return run_reader_gone(command, _env())


def assert_quiet_broken_pipe(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 128 + signal.SIGPIPE, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize(("prog", "module"), [(p, m[0]) for p, m in ENTRY_POINTS.items()])
def test_help_prints_usage_and_exits_0(prog: str, module: str) -> None:
    done = run(module, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {prog}")
    assert done.stderr == ""


@pytest.mark.parametrize("module", [m[0] for m in ENTRY_POINTS.values()])
def test_help_into_a_closed_pipe_ends_quietly(module: str) -> None:
    assert_quiet_broken_pipe(run(module, "--help", reader_gone=True))


def test_controller_history_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    db = str(tmp_path / "pipeline_config.db")
    for scenario in ("filtered", "raw", "lineage"):
        changed = run("sensorpipe.controller", "--db", db, "set", scenario, "--by", "test")
        assert changed.returncode == 0, changed.stderr
    shown = run("sensorpipe.controller", "--db", db, "history")
    assert shown.returncode == 0 and "lineage" in shown.stdout  # there is output to lose
    assert_quiet_broken_pipe(run("sensorpipe.controller", "--db", db, "history", reader_gone=True))


def test_provision_dry_run_into_a_closed_pipe_ends_quietly() -> None:
    planned = run("sensorpipe.provisioning.cli", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "[would run]" in planned.stdout
    assert_quiet_broken_pipe(run("sensorpipe.provisioning.cli", "--dry-run", reader_gone=True))


def assert_flag_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert ": error: " in last
    for needle in needles:
        assert needle in last, (needle, last)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--rate", "-1"], ["--rate", "must be positive"]),
        (["--invalid-fraction", "2"], ["--invalid-fraction", "outside 0..1"]),
        (["--sensors", "0"], ["--sensors 0", "at least 1"]),
    ],
)
def test_a_bad_simulator_option_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    db = tmp_path / "sensor_data.db"
    done = run("edge.simulator", "--db", str(db), "--count", "5", *args)
    assert_flag_error(done, *needles)
    assert len(done.stderr.splitlines()) == 1
    assert not db.exists()


@pytest.mark.parametrize(
    ("module", "args", "needles"),
    [
        ("sensorpipe.devstack.demo", ["--dashboard-port", "70000"], ["--dashboard-port", "70000"]),
        ("sensorpipe.devstack.demo", ["--rows", "0"], ["--rows", "0"]),
        ("sensorpipe.devstack.localstack", ["status", "--port", "0"], ["--port", "0"]),
        ("sensorpipe.devstack.localstack", ["status", "--port", "x"], ["--port", "'x'"]),
    ],
)
def test_a_number_out_of_range_is_a_usage_error(
    module: str, args: list[str], needles: list[str]
) -> None:
    assert_flag_error(run(module, *args), *needles)
