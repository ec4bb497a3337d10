"""Fixtures shared by every test directory.

Integration tests use a real LocalStack over HTTP, started on the host once per test
session (or reused when one already answers on the port). If it cannot start, every
test that needs it fails with LocalStack's own log lines; nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import PipelineConfig, load_pipeline_config
from sensorpipe.devstack.localstack import LocalStackError, LocalStackHost, aws_environment
from sensorpipe.provisioning import provision

LOCALSTACK_PORT = int(os.environ.get("SENSORPIPE_TEST_LOCALSTACK_PORT", "4566"))


@pytest.fixture(scope="session")
def localstack() -> Iterator[str]:
    """The endpoint of a running LocalStack; AWS_* variables point at it."""
    host = LocalStackHost(port=LOCALSTACK_PORT)
    try:
        started = host.start()
    except LocalStackError as exc:
        pytest.fail(f"LocalStack could not start, integration tests cannot run: {exc}")
    saved = {k: os.environ.get(k) for k in aws_environment(host.endpoint)}
    os.environ.update(aws_environment(host.endpoint))
    yield host.endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if started:
        host.stop()


@dataclass
class Pipeline:
    """A provisioned pipeline with its own bucket and queue prefix (tests never collide)."""

    config: PipelineConfig
    config_path: Path
    env: dict[str, str]

    def bucket(self, kind: str) -> str:
        return self.config.buckets.name(kind)

    def queue_url(self, name: str) -> str:
        return str(sqs_client().get_queue_url(QueueName=name)["QueueUrl"])


def make_pipeline(
    tmp_path: Path, endpoint: str, overrides: dict[str, Any] | None = None
) -> Pipeline:
    """Write a config with a unique prefix (plus ``overrides``, merged per section)
    and provision it in LocalStack."""
    import yaml

    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = yaml.safe_load(
        (
            Path(__file__).parents[1] / "shared/sensorpipe/config/defaults/pipeline-config-v2.yaml"
        ).read_text()
    )
    base["buckets"]["prefix"] = prefix
    base["queues"]["prefix"] = prefix
    base["pipeline"]["controller_db"] = str(tmp_path / "pipeline_config.db")
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(base.get(section), dict):
            base[section].update(values)
        else:
            base[section] = values
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "pipeline-config-v2.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORPIPE__")}
    config = load_pipeline_config(path, env=env)
    provision(config, s3=s3_client(), sqs=sqs_client())
    env = {**env, **aws_environment(endpoint), "SENSORPIPE_PIPELINE_CONFIG": str(path)}
    return Pipeline(config=config, config_path=path, env=env)


@pytest.fixture
def pipeline(localstack: str, tmp_path: Path) -> Pipeline:
    """A freshly provisioned pipeline with default settings."""
    return make_pipeline(tmp_path, localstack)
