"""The aggregator benchmark runs end to end (``--smoke``) and prints every row: no timing
is asserted, only that each figure is there and is a number."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_aggregator.py"
NUMBER = r"[0-9][0-9,]*(?:\.[0-9]+)?"
MEASURED = (
    "baseline: plain-Python Welford loop",
    "baseline: envelope decode alone",
    "aggregator: fold + close (decoded Batch)",
    "aggregator: decode + SequencedHandler",
)
PEERS = (
    "peer: bytewax fold_window, 1-min tumbling",
    "peer: polars group_by (sensor, minute)",
)


def test_smoke_run_prints_every_row_with_a_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in MEASURED:
        row = rf"^  {re.escape(label)} +({NUMBER}) +({NUMBER}) +({NUMBER})x$"
        assert re.search(row, out, re.MULTILINE), f"no figures for {label!r}:\n{out}"
    for label in PEERS:  # measured, or said not to be run
        row = rf"^  {re.escape(label)} +(?:{NUMBER} +{NUMBER} +{NUMBER}x|not run: .+)$"
        assert re.search(row, out, re.MULTILINE), f"no line for {label!r}:\n{out}"
    target = re.search(
        rf"^target: aggregator fold\+close / Welford loop = ({NUMBER})x \(project target",
        out,
        re.MULTILINE,
    )
    assert target, out
    assert float(target.group(1)) > 0
    # Both aggregator paths wrote the windows the Welford loop computed.
    for path in ("fold + close", "SequencedHandler"):
        assert re.search(rf"^  check: {re.escape(path)}: all {NUMBER} windows agree", out, re.M)
    # The memory table: five runs, each with a peak; the comparison line has its ratios.
    memory = re.findall(
        rf"^ +[0-9]+ +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +({NUMBER})$", out, re.M
    )
    assert len(memory) == 5, out
    assert re.search(rf"2x readings, same sensors -> peak x{NUMBER}", out), out
