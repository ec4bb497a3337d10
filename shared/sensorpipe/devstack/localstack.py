"""Run LocalStack on the host: its own pinned virtual environment, health-checked,
logging to a file, stopped by its own process id.

LocalStack's runtime is a Python program, so no Docker engine is needed. It lives in a
separate virtual environment because its boto3/botocore pins must not fight ours;
``deploy/localstack/requirements.lock`` holds versions known to work on Python 3.11.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sensorpipe.cli import bounded_int, command
from sensorpipe.errors import SensorPipeError

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_LOCK = REPO_ROOT / "deploy" / "localstack" / "requirements.lock"
DEFAULT_HOME = REPO_ROOT / ".localstack"
DEFAULT_PORT = 4566
REQUIRED_SERVICES = ("s3", "sqs")


class LocalStackError(SensorPipeError):
    """LocalStack could not be installed, started or stopped."""


@dataclass
class LocalStackHost:
    """One LocalStack process on 127.0.0.1:port, owned through a pid file."""

    port: int = DEFAULT_PORT
    home: Path = DEFAULT_HOME
    lock_file: Path = DEFAULT_LOCK
    python: str = sys.executable
    services: tuple[str, ...] = REQUIRED_SERVICES
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def log_file(self) -> Path:
        return self.home / f"localstack-{self.port}.log"

    @property
    def pid_file(self) -> Path:
        return self.home / f"localstack-{self.port}.pid"

    # -- installation ---------------------------------------------------------------

    def ensure_installed(self) -> None:
        """Create the venv from the lock file unless an identical install exists."""
        if not self.lock_file.is_file():
            raise LocalStackError(f"lock file {self.lock_file} is missing")
        digest = hashlib.sha256(self.lock_file.read_bytes()).hexdigest()
        marker = self.venv / ".sensorpipe-lock-sha256"
        if marker.is_file() and marker.read_text().strip() == digest:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        steps = [
            [self.python, "-m", "venv", "--clear", str(self.venv)],
            [
                str(self.venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "-r",
                str(self.lock_file),
            ],
        ]
        for cmd in steps:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise LocalStackError(
                    f"installing LocalStack failed: {' '.join(cmd[:4])} ... exited "
                    f"{result.returncode}: {result.stderr.strip()[-800:]}",
                    hint="check network access to the package registry",
                )
        marker.write_text(digest)

    # -- health ---------------------------------------------------------------------

    def health(self) -> dict[str, str] | None:
        """The service states LocalStack reports, or None when it does not answer."""
        try:
            with urllib.request.urlopen(  # noqa: S310 - fixed loopback URL
                f"{self.endpoint}/_localstack/health", timeout=2
            ) as response:
                payload = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
        services = payload.get("services", {})
        return {str(k): str(v) for k, v in services.items()}

    def is_ready(self) -> bool:
        states = self.health()
        if states is None:
            return False
        return all(states.get(s) in ("available", "running") for s in self.services)

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout_s: float = 90.0) -> bool:
        """Start LocalStack unless one already answers on the port.

        Returns True when this call started the process (and so should stop it).
        """
        if self.is_ready():
            return False
        self.ensure_installed()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "SERVICES": ",".join(self.services),
            "LOCALSTACK_HOST": f"127.0.0.1:{self.port}",
            "SQS_ENDPOINT_STRATEGY": "path",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "FILESYSTEM_ROOT": str(self.home / f"fs-{self.port}"),
        }
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            [str(self.venv / "bin" / "python"), "-m", "localstack.runtime.main"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.pid_file.write_text(str(self._process.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalStackError(
                    f"LocalStack exited with code {self._process.returncode} during start-up; "
                    f"last log lines:\n{self._log_tail()}"
                )
            if self.is_ready():
                return True
            time.sleep(0.5)
        self.stop()
        raise LocalStackError(
            f"LocalStack did not become healthy on {self.endpoint} within {timeout_s:.0f} s; "
            f"last log lines:\n{self._log_tail()}"
        )

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM our own process (by pid file), SIGKILL if it lingers."""
        pid = self._read_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid, self._process):
            time.sleep(0.2)
        if _alive(pid, self._process):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None and process.pid == pid:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def aws_environment(endpoint: str, region: str = "us-east-1") -> dict[str, str]:
    """The standard AWS variables that point any boto3 client at ``endpoint``."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # LocalStack accepts any credentials; these are its documented test values.
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sensorpipe-localstack", description="Run LocalStack on this host (no Docker)."
    )
    parser.add_argument("command", choices=["install", "start", "stop", "status", "env"])
    parser.add_argument(
        "--port",
        type=bounded_int(1, 65535),
        default=int(os.environ.get("LOCALSTACK_PORT", DEFAULT_PORT)),
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    args = parser.parse_args(argv)
    host = LocalStackHost(port=args.port, home=args.home)
    try:
        if args.command == "install":
            host.ensure_installed()
        elif args.command == "start":
            started = host.start()
            print(
                f"LocalStack {'started' if started else 'already running'} at {host.endpoint}"
                f" (log: {host.log_file})"
            )
        elif args.command == "stop":
            host.stop()
            print("LocalStack stopped")
        elif args.command == "status":
            states = host.health()
            print(json.dumps({"endpoint": host.endpoint, "services": states}))
            return 0 if host.is_ready() else 1
        else:
            for key, value in aws_environment(host.endpoint).items():
                print(f"export {key}={value}")
    except LocalStackError as exc:
        print(f"sensorpipe-localstack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
