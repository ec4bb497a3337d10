"""LocalStackHost without touching the shared LocalStack on 4566: ports nothing listens
on, a missing lock file, pid-file handling."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.devstack.localstack import (
    DEFAULT_PORT,
    LocalStackError,
    LocalStackHost,
    aws_environment,
)
from sensorpipe.devstack.processes import free_port


def _idle_host(tmp_path: Path, **changes: Any) -> LocalStackHost:
    port = free_port()
    assert port != DEFAULT_PORT
    return LocalStackHost(port=port, home=tmp_path / "home", **changes)


def test_health_is_none_when_nothing_listens(tmp_path: Path) -> None:
    host = _idle_host(tmp_path)
    assert host.health() is None
    assert host.is_ready() is False


def test_start_without_the_lock_file_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "no-such" / "requirements.lock"
    host = _idle_host(tmp_path, lock_file=missing)
    with pytest.raises(LocalStackError) as info:
        host.start(timeout_s=5)
    assert str(missing) in str(info.value)
    assert "missing" in str(info.value)
    # Nothing was started, so nothing is recorded as ours.
    assert not host.pid_file.exists()


def test_stop_without_a_pid_file_is_a_no_op(tmp_path: Path) -> None:
    host = _idle_host(tmp_path)
    host.stop(timeout_s=1)
    assert not host.pid_file.exists()


def test_stop_with_a_stale_pid_file_removes_it(tmp_path: Path) -> None:
    host = _idle_host(tmp_path)
    host.home.mkdir(parents=True)
    # A pid above the kernel's maximum can belong to no process (never signal a guess).
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    host.pid_file.write_text(str(pid_max + 1))
    host.stop(timeout_s=1)
    assert not host.pid_file.exists()


def test_stop_terminates_only_the_process_named_in_its_pid_file(tmp_path: Path) -> None:
    host = _idle_host(tmp_path)
    host.home.mkdir(parents=True)
    ours = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    # Reap ours as soon as it exits, as init would for a LocalStack started by another
    # command (stop() checks liveness by pid, and a zombie still has one).
    reaper = threading.Thread(target=ours.wait, daemon=True)
    reaper.start()
    try:
        host.pid_file.write_text(str(ours.pid))
        host.stop(timeout_s=5)
        reaper.join(timeout=5)
        assert ours.returncode == -signal.SIGTERM
        assert bystander.poll() is None
        assert not host.pid_file.exists()
    finally:
        for process in (ours, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()


class _FakeHealth(BaseHTTPRequestHandler):
    payload: dict[str, Any] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.payload).encode()
        self.send_response(200 if self.path == "/_localstack/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def fake_health() -> Iterator[tuple[int, type[_FakeHealth]]]:
    handler = type("Handler", (_FakeHealth,), {"payload": {}})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, handler
    server.shutdown()
    server.server_close()


def test_health_parsing_and_readiness(
    tmp_path: Path, fake_health: tuple[int, type[_FakeHealth]]
) -> None:
    port, handler = fake_health
    host = LocalStackHost(port=port, home=tmp_path)
    handler.payload = {"services": {"s3": "running", "sqs": "available", "kms": "disabled"}}
    assert host.health() == {"s3": "running", "sqs": "available", "kms": "disabled"}
    assert host.is_ready()
    handler.payload = {"services": {"s3": "running", "sqs": "starting"}}
    assert not host.is_ready()
    handler.payload = {"edition": "community"}
    assert host.health() == {}
    assert not host.is_ready()


def test_start_reuses_a_ready_instance_without_owning_it(
    tmp_path: Path, fake_health: tuple[int, type[_FakeHealth]]
) -> None:
    port, handler = fake_health
    handler.payload = {"services": {"s3": "running", "sqs": "running"}}
    host = LocalStackHost(port=port, home=tmp_path, lock_file=tmp_path / "absent.lock")
    assert host.start(timeout_s=5) is False  # already running: not ours to stop
    assert not host.pid_file.exists()


def test_aws_environment_points_boto3_at_the_endpoint() -> None:
    env = aws_environment("http://127.0.0.1:4599", region="eu-west-1")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4599"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
