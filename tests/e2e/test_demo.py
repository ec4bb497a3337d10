"""The README's first command, `make demo`, runs the whole pipeline and accounts for every row."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LOCALSTACK_PORT

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


def test_demo_runs_every_stage_and_accounts_for_every_row(localstack: str) -> None:
    env = {**os.environ, "LOCALSTACK_PORT": str(LOCALSTACK_PORT)}
    result = subprocess.run(
        [sys.executable, "-m", "sensorpipe.devstack.demo", "--rows", "2400"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "DEMO OK" in output
    summary = re.search(r"in = out: (\d+) rows .*?; (\d+) accounted for", output)
    assert summary is not None, output[-2000:]
    assert summary.group(1) == summary.group(2) == "2400"
    windows = re.search(r"(\d+) one-minute windows", output)
    assert windows is not None and int(windows.group(1)) > 0
    assert re.search(r"0 message\(s\) in DLQs", output)
