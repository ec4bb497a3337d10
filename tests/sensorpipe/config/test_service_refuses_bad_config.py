"""A real service process given a bad config exits 2 and names the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.sensorpipe.config.conftest import Mutation

REPO_ROOT = Path(__file__).resolve().parents[3]


def _run_sample_service(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORPIPE")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "tests.sensorpipe.runtime.sample_service", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_value_exits_2_naming_file_and_key(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["queues"]["visibility_timeout_seconds"] = 2

    path = write_pipeline_config(mutate)
    result = _run_sample_service("--config", str(path))
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    assert str(path) in result.stderr
    assert "'queues.visibility_timeout_seconds'" in result.stderr
    assert "greater than or equal to 5" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_exits_2_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = _run_sample_service("--config", str(path))
    assert result.returncode == 2, result.stderr
    assert f"{path}: file not found" in result.stderr
    assert "Traceback" not in result.stderr
