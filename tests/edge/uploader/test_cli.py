"""``python -m edge.uploader`` as a process: help, bad flags and settings, a closed pipe,
and starting with a corrupt or missing controller (issue 11). No queue is needed: every
run here is ``--dry-run`` or stops before sending."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.uploader import last_known_path
from tests.edge.uploader.conftest import simulate


def clean_env(**extra: str) -> dict[str, str]:
    """The test environment (PYTHONPATH included: the child runs this tree) without
    variables that would choose another config, port or database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORPIPE")}
    env.update(extra)
    return env


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.uploader", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=clean_env(**env),
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_help_prints_usage_and_exits_0(tmp_path: Path) -> None:
    done = run(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m edge.uploader")
    assert "--controller-db" in done.stdout and done.stderr == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--batch-size", "0"), "--batch-size"),
        (("--batch-size", "many"), "--batch-size"),
        (("--metrics-port", "70000"), "--metrics-port"),
        (("--table", "users; DROP"), "--table"),
        (("--no-such-flag",), "--no-such-flag"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    line = one_line_error(run(tmp_path, *args))
    assert line.startswith("uploader: error:") and named in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SENSORPIPE_METRICS_PORT", "eighty"), ("SENSORPIPE__UPLOADER__BATCH_SIZE", "0")],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    line = one_line_error(run(tmp_path, "--once", **{variable: value}))
    assert variable in line


def dry_run_args(tmp_path: Path, controller: Path, *more: str) -> list[str]:
    return [
        "--db",
        str(tmp_path / "sensors.db"),
        "--checkpoint",
        str(tmp_path / "state" / "ckpt.json"),
        "--controller-db",
        str(controller),
        "--once",
        "--dry-run",
        *more,
    ]


def test_piping_into_head_ends_quietly(tmp_path: Path) -> None:
    simulate(tmp_path / "sensors.db", 400)
    controller = tmp_path / "pipeline.db"
    last_known_path(tmp_path / "state" / "ckpt.json").parent.mkdir()
    last_known_path(tmp_path / "state" / "ckpt.json").write_text(
        json.dumps({"version": 1, "scenario": "raw", "config_version": 1})
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.uploader",
            *dry_run_args(tmp_path, controller, "--batch-size", "1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert process.stdout is not None and process.stderr is not None
    first = json.loads(process.stdout.readline())  # `head -1`: one line, then gone
    process.stdout.close()
    code = process.wait(timeout=60)
    stderr = process.stderr.read().decode()
    assert first["records"] == 1
    assert code == 141, stderr  # 128 + SIGPIPE, as every command of the project
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_a_start_with_a_corrupt_controller_and_a_known_scenario_uploads(tmp_path: Path) -> None:
    simulate(tmp_path / "sensors.db", 30)
    controller = tmp_path / "pipeline.db"
    controller.write_bytes(b"this is not a database" * 50)
    known = last_known_path(tmp_path / "state" / "ckpt.json")
    known.parent.mkdir()
    known.write_text(json.dumps({"version": 1, "scenario": "lineage", "config_version": 7}))
    done = run(tmp_path, *dry_run_args(tmp_path, controller, "--batch-size", "10"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(x["scenario"], x["config_version"], x["records"]) for x in lines] == [
        ("lineage", 7, 10)
    ] * 3
    assert "last known scenario 'lineage'" in done.stderr
    assert controller.read_bytes() == b"this is not a database" * 50


def test_the_first_start_without_a_controller_exits_1_and_creates_nothing(
    tmp_path: Path,
) -> None:
    simulate(tmp_path / "sensors.db", 5)
    controller = tmp_path / "pipeline.db"
    done = run(tmp_path, *dry_run_args(tmp_path, controller))
    assert done.returncode == 1, done.stderr
    assert "no scenario known yet" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not controller.exists()
