"""The "Pipeline Manager" README examples, run as written with the console script name.

``uv run -s pipeline_controller.py`` / ``python pipeline_controller.py`` become
``pipeline-controller``; the working directory is laid out so the README's relative path
``../sample-sensor/data/sensor_data.db`` exists. The container examples use ``/data``,
mapped to a temporary directory.
"""

from __future__ import annotations

import json
import queue
import shlex
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import IO

import pytest

from sensorpipe.controller import PipelineController
from tests.sensorpipe.controller.conftest import CLI, RunCli, clean_env, run_cli_process

LOCAL_PREFIX = "uv run -s pipeline_controller.py "
CONTAINER_PREFIX = "python pipeline_controller.py "
SENSOR_DB = "../sample-sensor/data/sensor_data.db"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """``pipeline-manager/`` next to ``sample-sensor/data/sensor_data.db`` (a sensor DB)."""
    data = tmp_path / "sample-sensor" / "data"
    data.mkdir(parents=True)
    conn = sqlite3.connect(data / "sensor_data.db")
    conn.execute("CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, temperature REAL)")
    conn.execute("INSERT INTO sensor_readings (temperature) VALUES (21.5)")
    conn.commit()
    conn.close()
    manager = tmp_path / "pipeline-manager"
    manager.mkdir()
    return manager


def readme(line: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run one README command line with the console script in place of the script."""
    for prefix in (LOCAL_PREFIX, CONTAINER_PREFIX):
        if line.startswith(prefix):
            line = line.removeprefix(prefix)
            break
    else:
        raise AssertionError(f"not a README command: {line}")
    container_data = f"{workdir.parent}/sample-sensor/data/"
    args = [
        container_data + arg.removeprefix("/data/") if arg.startswith("/data/") else arg
        for arg in shlex.split(line)
    ]
    return run_cli_process(args, cwd=workdir)


def test_local_development_examples(workdir: Path, run_cli: RunCli) -> None:
    view = readme(f"{LOCAL_PREFIX}--db {SENSOR_DB} get", workdir)
    assert view.returncode == 0, view.stderr
    assert view.stdout.splitlines()[0].split() == ["scenario", "raw"]

    change = readme(
        f"{LOCAL_PREFIX}--db {SENSOR_DB} set filtered "
        '--by "operations" --reason "Enabling anomaly filtering"',
        workdir,
    )
    assert change.returncode == 0, change.stderr
    assert "raw -> filtered" in change.stdout and "by operations" in change.stdout

    history = readme(f"{LOCAL_PREFIX}--db {SENSOR_DB} history --limit 20", workdir)
    assert history.returncode == 0, history.stderr
    rows = history.stdout.splitlines()[1:3]
    assert rows[0].split()[:3] == ["*", "2", "filtered"]
    assert "operations" in rows[0] and "Enabling anomaly filtering" in rows[0]
    assert rows[1].split()[:2] == ["1", "raw"]

    # The sensor data in the same file is untouched.
    conn = sqlite3.connect(workdir.parent / "sample-sensor" / "data" / "sensor_data.db")
    assert conn.execute("SELECT count(*) FROM sensor_readings").fetchone() == (1,)
    conn.close()


def test_container_examples(workdir: Path, run_cli: RunCli) -> None:
    db = "/data/sensor_data.db"
    assert readme(f"{CONTAINER_PREFIX}--db {db} get", workdir).returncode == 0

    first = readme(f'{CONTAINER_PREFIX}--db {db} set filtered --by "docker_user"', workdir)
    again = readme(f'{CONTAINER_PREFIX}--db {db} set filtered --by "docker_user"', workdir)
    k8s = readme(
        f"{CONTAINER_PREFIX}--db {db} set aggregated "
        '--by "k8s_admin" --reason "Enable aggregation pipeline"',
        workdir,
    )
    history = readme(f"{CONTAINER_PREFIX}--db {db} history", workdir)

    assert "raw -> filtered" in first.stdout
    assert "nothing recorded" in again.stdout
    assert "filtered -> aggregated" in k8s.stdout
    assert [line.split()[-3:] for line in history.stdout.splitlines()[1:2]] == [
        ["Enable", "aggregation", "pipeline"]
    ]
    assert all(p.returncode == 0 for p in (first, again, k8s, history))


def _lines(stream: IO[str], sink: queue.Queue[str]) -> None:
    for line in stream:
        sink.put(line)


def _next_line(lines: queue.Queue[str], timeout_s: float = 10) -> str:
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"no output within {timeout_s} s") from None


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_monitor_prints_two_changes_within_one_second(
    workdir: Path, stop_signal: signal.Signals
) -> None:
    monitor = subprocess.Popen(
        [str(CLI), "--db", SENSOR_DB, "monitor", "--interval", "0.1"],
        cwd=workdir,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout: queue.Queue[str] = queue.Queue()
    stderr: queue.Queue[str] = queue.Queue()
    for stream, sink in ((monitor.stdout, stdout), (monitor.stderr, stderr)):
        assert stream is not None
        threading.Thread(target=_lines, args=(stream, sink), daemon=True).start()
    try:
        assert _next_line(stderr).startswith("Watching ")  # its starting point is fixed
        controller = PipelineController(workdir / SENSOR_DB)
        first = controller.set("filtered", "operations", "Enabling anomaly filtering")
        second = controller.set("aggregated", "k8s_admin", "Enable aggregation pipeline")
        assert second.current.updated_at - first.current.updated_at < timedelta(seconds=1)

        printed = [_next_line(stdout), _next_line(stdout)]
        time.sleep(0.3)
        monitor.send_signal(stop_signal)
        assert monitor.wait(timeout=10) == 0
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()

    assert "raw -> filtered  by operations" in printed[0]
    assert "reason: Enabling anomaly filtering" in printed[0]
    assert "filtered -> aggregated  by k8s_admin" in printed[1]
    assert second.current.updated_at.isoformat(timespec="microseconds") in printed[1]
    assert stdout.empty()
    assert stderr.empty() or "Traceback" not in stderr.get_nowait()


def test_monitor_json_lines(workdir: Path) -> None:
    monitor = subprocess.Popen(
        [str(CLI), "--db", SENSOR_DB, "monitor", "--format", "json", "--interval", "0.05"],
        cwd=workdir,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert monitor.stderr is not None and monitor.stdout is not None
    try:
        assert monitor.stderr.readline().startswith("Watching ")
        PipelineController(workdir / SENSOR_DB).set("lineage", "ops", "json")
        change = json.loads(monitor.stdout.readline())
        monitor.send_signal(signal.SIGINT)
        assert monitor.wait(timeout=10) == 0
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
        monitor.stdout.close()
        monitor.stderr.close()

    assert (change["from"], change["to"], change["updated_by"], change["reason"]) == (
        "raw",
        "lineage",
        "ops",
        "json",
    )
    assert change["config_version"] == 2
