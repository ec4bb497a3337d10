"""``deploy/create-s3-buckets-v2.sh``: usage, clear errors, an exact dry run, a real run."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import default_file, load_pipeline_config
from tests.sensorpipe.provisioning.test_provision_localstack import snapshot

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "deploy" / "create-s3-buckets-v2.sh"


def run_script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORPIPE")}
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_config(tmp_path: Path, **section_changes: dict[str, object]) -> tuple[Path, str]:
    """A copy of the default config with a fresh bucket and queue prefix."""
    prefix = f"sh{uuid.uuid4().hex[:10]}"
    data = yaml.safe_load(default_file("pipeline-config-v2.yaml").read_text())
    data["buckets"]["prefix"] = prefix
    data["queues"]["prefix"] = prefix
    for section, changes in section_changes.items():
        data[section].update(changes)
    path = tmp_path / "pipeline-config-v2.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, prefix


def test_help() -> None:
    result = run_script("--help")
    assert result.returncode == 0
    assert "Usage: create-s3-buckets-v2.sh [--dry-run] [--config FILE]" in result.stdout
    assert result.stderr == ""


def test_unknown_argument_is_a_usage_error() -> None:
    result = run_script("--force")
    assert result.returncode == 2
    assert "unknown argument '--force'" in result.stderr
    assert "--help" in result.stderr


def test_config_flag_without_a_file() -> None:
    result = run_script("--dry-run", "--config")
    assert result.returncode == 2
    assert "--config needs a file argument" in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_script("--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert f"{tmp_path / 'absent.yaml'}: file not found" in result.stderr


def test_bad_config_names_the_file_and_key(tmp_path: Path) -> None:
    path, _ = write_config(tmp_path, queues={"max_receive_count": 0})
    result = run_script("--dry-run", "--config", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "'queues.max_receive_count'" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_venv_it_uses_python3_and_says_what_is_missing(tmp_path: Path) -> None:
    # A checkout with no .venv: the script falls back to python3 (here one without the
    # project installed) and explains instead of failing with a traceback.
    (tmp_path / "deploy").mkdir()
    copy = tmp_path / "deploy" / SCRIPT.name
    copy.write_bytes(SCRIPT.read_bytes())
    copy.chmod(0o755)
    result = subprocess.run(
        [str(copy), "--dry-run"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert (
        "python3 cannot import sensorpipe: install the project first" in result.stderr
        or "no Python found" in result.stderr  # a machine without a system python3
    )
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_dry_run_prints_the_exact_plan_and_creates_nothing_then_a_real_run_applies_it(
    localstack: str, tmp_path: Path
) -> None:
    path, prefix = write_config(tmp_path)
    config = load_pipeline_config(path, env={})

    dry = run_script("--dry-run", f"--config={path}")
    assert dry.returncode == 0, dry.stderr
    planned = dry.stdout.splitlines()
    assert planned[-1] == "37 step(s) planned (dry run, nothing changed)"
    assert all(line.startswith("[would run] ") for line in planned[:-1])
    for name in config.buckets.all_names().values():
        assert f"[would run] s3: create bucket {name} " in dry.stdout
        with pytest.raises(ClientError):
            s3_client().head_bucket(Bucket=name)
    for queue in [*config.queues.consumer_queues(), config.queues.notifications]:
        assert f"[would run] sqs: queue {queue} " in dry.stdout
    assert sqs_client().list_queues(QueueNamePrefix=prefix).get("QueueUrls", []) == []

    real = run_script("--config", str(path), cwd=tmp_path)
    assert real.returncode == 0, real.stderr
    applied = real.stdout.splitlines()
    assert applied[-1] == "37 step(s) applied"
    # The dry run printed exactly the steps the real run then performed.
    assert [line.removeprefix("[done] ") for line in applied[:-1]] == [
        line.removeprefix("[would run] ") for line in planned[:-1]
    ]
    state = snapshot(config)
    assert all(b["versioning"] == "Enabled" for b in state["buckets"].values())
    assert len(state["queues"]) == 12

    again = run_script("--config", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stdout == real.stdout
    assert snapshot(config) == state
