"""Running a command whose reader has gone (``cmd | head -1`` after head quit)."""

from __future__ import annotations

import os
import subprocess


def run_reader_gone(
    command: list[str], env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with stdout a pipe whose read end is closed before it starts, so
    its first write meets a broken pipe; stderr is captured."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            command,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    finally:
        os.close(write_end)
