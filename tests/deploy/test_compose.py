"""docker-compose.yml parses, interpolates and validates (no Docker engine needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]


def _compose_config(*extra_env: tuple[str, str]) -> dict[str, object]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed; run deploy/install-system-packages.sh "
            "(make test does) to install Debian's docker-compose package"
        )
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **dict(extra_env)},
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_compose_file_is_valid_and_complete() -> None:
    config = _compose_config()
    services = config["services"]
    assert isinstance(services, dict)
    for name in (
        "localstack",
        "provision",
        "enricher",
        "validator",
        "router",
        "aggregator-0",
        "notifier-0",
        "uploader",
        "simulator",
        "pipeline-manager",
        "prometheus",
        "dashboard",
    ):
        assert name in services, f"service {name} missing from docker-compose.yml"
    for name in ("enricher", "validator", "router"):
        # Stateless stages must be scalable: no fixed host port, no container_name.
        assert "ports" not in services[name]
        assert "container_name" not in services[name]
    for name, service in services.items():
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else str(port.get("host_ip", ""))
            assert "127.0.0.1" in published, f"{name} publishes a port beyond loopback: {port}"


def test_compose_points_at_real_aws_through_the_environment() -> None:
    config = _compose_config(
        ("AWS_ENDPOINT_URL", "https://sqs.eu-west-1.amazonaws.com"), ("AWS_REGION", "eu-west-1")
    )
    for name in ("router", "dashboard"):
        env = config["services"][name]["environment"]  # type: ignore[index]
        assert env["AWS_ENDPOINT_URL"] == "https://sqs.eu-west-1.amazonaws.com"
        assert env["AWS_REGION"] == "eu-west-1"
