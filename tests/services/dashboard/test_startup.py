"""Bad settings stop the dashboard at start-up with the setting or file named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.dashboard"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_setting_exits_2_naming_it() -> None:
    result = start({"SENSORPIPE_DASHBOARD_PORT": "eighty"})
    assert result.returncode == 2
    assert "bad setting" in result.stderr and "port" in result.stderr


def test_a_bad_config_file_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("windowing:\n  window_seconds: -5\n")
    result = start({"SENSORPIPE_PIPELINE_CONFIG": str(config)})
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert str(config) in result.stderr and "window_seconds" in result.stderr
