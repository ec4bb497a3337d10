"""The uploader CPU benchmark runs on a small database and prints every row: no timing
is asserted, only that each figure is there and is a number (it needs no queue)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_uploader_cpu.py"
NUMBER = r"[0-9]+\.[0-9]+"
LABELS = (
    "baseline: bare SQLite read",
    "bare SQLite read, TEXT undecoded",
    "uploader, json (gzip) bodies",
    "uploader, arrow bodies",
    "uploader row by row, json (gzip) bodies",
    "uploader row by row, arrow bodies",
)


def test_small_run_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--rows", "300", "--batch-size", "70", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for label in LABELS:
        line = rf"^{re.escape(label)}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x$"
        assert re.search(line, result.stdout, re.MULTILINE), (label, result.stdout)
    assert "300 rows, batch 70, best of 1" in result.stdout
