"""The live-feed window latency benchmark runs end to end (``--smoke``) against the test
session's LocalStack: every row is printed with its numbers, windows were measured, none
was revised and no reading went to late/. No timing is asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_window_latency import ABSENT, ADDED, BEHIND, FLOOR, MODIFIED, SEEN, TAIL

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_window_latency.py"
NUMBER = r"-?[0-9][0-9,]*(?:\.[0-9]+)?"


def test_smoke_run_measures_windows_of_a_live_feed(localstack: str) -> None:
    # The session's LocalStack (AWS_* point at it); no inherited config overrides.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORPIPE__")}
    assert env["AWS_ENDPOINT_URL"] == localstack
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-3000:]}"
    for label in (FLOOR, SEEN, ABSENT, MODIFIED, ADDED, TAIL, BEHIND):
        line = rf"^  {re.escape(label)} +([0-9]+) +({NUMBER}) +({NUMBER}) +({NUMBER})$"
        found = re.search(line, out, re.MULTILINE)
        assert found, f"no figures for {label!r}:\n{out}"
        assert int(found.group(1)) >= 1, f"nothing measured for {label!r}:\n{out}"
    assert re.search(rf"^grace: {NUMBER} s", out, re.MULTILINE), out
    windows = re.search(
        r"^windows: ([0-9]+) written in [0-9]+ page\(s\) \(([0-9]+) page\(s\) closed by the "
        r"watermark .*\), ([0-9]+) revised",
        out,
        re.MULTILINE,
    )
    assert windows, out
    assert int(windows.group(1)) >= 1 and int(windows.group(2)) >= 1, out
    assert windows.group(3) == "0" and "0 revised" in out, out
    readings = re.search(r"^readings: .*; ([0-9]+) late \(", out, re.MULTILINE)
    assert readings, out
    assert readings.group(1) == "0" and "0 late" in out, out
    assert "FAIL" not in out, out
