"""Run pipeline services as real processes (the demo and the end-to-end tests).

Each service is ``python -m services.<name>`` with its own metrics port; this module
starts it, waits until ``/healthz`` answers, and stops it with SIGTERM (graceful) or
SIGKILL (crash tests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sensorpipe.errors import SensorPipeError


class ServiceStartError(SensorPipeError):
    """A service process exited or never became healthy."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """One service process; ``module`` is e.g. ``services.enricher``."""

    module: str
    env: dict[str, str]
    log_dir: Path
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        # Flag values may be paths: keep only what is safe in a file name.
        suffix = "-".join(Path(a.lstrip("-")).name for a in self.args)
        base = self.module.rsplit(".", 1)[-1]
        return f"{base}-{suffix}" if suffix else base

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self, timeout_s: float = 30.0) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "SENSORPIPE_METRICS_PORT": str(self.port)}
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with {self.process.returncode} during start-up:\n"
                    f"{self.log_tail()}"
                )
            if self.health() is not None:
                return self
            time.sleep(0.2)
        self.kill()
        raise ServiceStartError(f"{self.name} never answered /healthz:\n{self.log_tail()}")

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/healthz", timeout=1
            ) as response:
                return dict(json.loads(response.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=2) as response:  # noqa: S310
            return str(response.read().decode())

    def terminate(self, timeout_s: float = 45.0) -> int:
        """SIGTERM and wait; returns the exit code (raises if it does not exit)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise ServiceStartError(
                f"{self.name} ignored SIGTERM for {timeout_s} s:\n{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
