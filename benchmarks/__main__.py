"""``make bench``: run every benchmark in turn, each in its own process.

Figures are only comparable within one run (this machine is shared and noisy); every
benchmark therefore measures its own baseline beside the project's figure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "bench_stages",
    "bench_aggregator",
    "bench_uploader",
    "bench_notifier",
    "bench_window_latency",  # a live feed in real time: about 3.5 minutes
    "bench_e2e",  # the whole pipeline, its baselines and a live latency phase
)


def main() -> int:
    here = Path(__file__).parent
    failures = 0
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(here / f"{name}.py")], check=False)
        print(f"--- {name}: exit {result.returncode} in {time.monotonic() - started:.0f} s")
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
