"""The notifier benchmark runs end to end (``--smoke``) against the test session's
LocalStack and prints every row: no timing is asserted, only that each figure is there
and is a number, and that every burst it sent arrived exactly once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sensorpipe.devstack.localstack import aws_environment

pytestmark = [pytest.mark.integration, pytest.mark.e2e]  # a notifier process on LocalStack

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_notifier.py"
NUMBER = r"[0-9][0-9,]*(?:\.[0-9]+)?"
BASELINES = (
    "baseline: SQS send + receive, standard queue",
    "baseline: SQS send + receive, FIFO queue",
)
SETTINGS = (
    "notifier: grace 0 s, idle flush 30 s",
    "notifier: grace 1 s, idle flush 1 s",
    "notifier: grace 10 s, idle flush 30 s (defaults)",
)


def test_smoke_run_prints_every_row_and_receives_every_burst_once(localstack: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENSORPIPE_NOTIFIER_")},
        **aws_environment(localstack),
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"endpoint: {localstack}," in out, out
    for label in BASELINES:  # n, p50, p99, max
        line = rf"^  {re.escape(label)} +([0-9]+)/\1 +{NUMBER} +{NUMBER} +{NUMBER}$"
        assert re.search(line, out, re.MULTILINE), f"no figures for {label!r}:\n{out}"
    for label in SETTINGS:  # n, p50, p99, max, accepted p50, accepted p99
        figures = " +".join([NUMBER] * 5)
        line = rf"^  {re.escape(label)} +([0-9]+)/\1 +{figures}$"
        assert re.search(line, out, re.MULTILINE), f"no figures for {label!r}:\n{out}"
        check = re.search(
            rf"^  check: {re.escape(label)}: ([0-9]+) bursts sent, ([0-9]+) received exactly "
            r"once, ([0-9]+) duplicated, ([0-9]+) missing, ([0-9]+) wrong; notifier counted "
            rf"({NUMBER}) late",
            out,
            re.MULTILINE,
        )
        assert check, f"no check line for {label!r}:\n{out}"
        sent, received, duplicated, missing, wrong, late = check.groups()
        assert int(sent) > 0
        assert int(received) == int(sent), check.group(0)
        assert (int(duplicated), int(missing), int(wrong)) == (0, 0, 0), check.group(0)
        assert float(late) == 0, check.group(0)
