"""The README's first command, `make demo`, runs the whole pipeline and accounts for every
row; with ``--dashboard`` it then serves the dashboard over what the run produced."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.devstack.processes import free_port
from tests.conftest import LOCALSTACK_PORT

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


def test_demo_runs_every_stage_and_accounts_for_every_row(localstack: str) -> None:
    env = {**os.environ, "LOCALSTACK_PORT": str(LOCALSTACK_PORT)}
    port = free_port()
    args = ["--rows", "2400", "--dashboard", "--dashboard-port", str(port)]
    demo = subprocess.Popen(
        [sys.executable, "-m", "sensorpipe.devstack.demo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 400
        while not any(line.startswith("Dashboard: ") for line in lines):
            assert demo.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.5)
        overview = _get(port, "/api/overview")
        windows = _get(port, "/api/windows")["windows"]
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
        reader.join(timeout=10)
    output = "".join(lines)
    assert code == 0, output[-3000:]
    assert "DEMO OK" in output
    summary = re.search(r"in = out: (\d+) rows .*?; (\d+) accounted for", output)
    assert summary is not None, output[-2000:]
    assert summary.group(1) == summary.group(2) == "2400"
    count = re.search(r"(\d+) one-minute windows", output)
    assert count is not None and int(count.group(1)) > 0
    # The demo's rows are written in order: every window is written once, nothing late.
    written = re.search(r"windows: (\d+) written, (\d+) revised .*?; (\d+) reading", output)
    assert written is not None, output[-2000:]
    assert written.group(1) == count.group(1)
    assert (written.group(2), written.group(3)) == ("0", "0")
    assert re.search(r"0 message\(s\) in DLQs", output)
    rejected = re.search(r"rejected (\d+)", output)
    assert rejected is not None

    # The dashboard shows that same run.
    assert overview["scenario"]["active"]["scenario"] == "notification"
    assert overview["queues"]["dlq_messages"] == 0
    assert len(overview["rejected"]["records"]) == min(25, int(rejected.group(1)))
    assert windows and all(w["record_count"] > 0 for w in windows)


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.loads(response.read())
