"""Run pipeline services as real processes (the demo, the end-to-end tests, benchmarks).

Each service is ``python -m services.<name>`` with its own metrics port; this module
starts it, waits until ``/healthz`` answers, and stops it with SIGTERM (graceful) or
SIGKILL (crash tests).

A service may run under a *launcher*, a command it is started by (a profiler:
``py-spy record ... --``). The launcher is the process started here and the service its
child; signals go to the service itself (``service_pid``), because a launcher need not
forward them (py-spy does not, and dies without writing its profile), while it does
end once its child has. Whoever reads a service's CPU or memory from ``/proc`` reads
``service_pid`` too.
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
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from sensorpipe.errors import SensorPipeError


class ServiceStartError(SensorPipeError):
    """A service process exited or never became healthy."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    """The children of ``pid``, of all its threads (``/proc/<pid>/task/*/children``);
    empty when it has none or is gone."""
    out: list[int] = []
    with suppress(OSError):
        for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
            with suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


@dataclass
class ServiceProcess:
    """One service process; ``module`` is e.g. ``services.enricher``. With a
    ``launcher`` (a command prefix, e.g. a profiler's), ``process`` is the launcher and
    ``service_pid`` its child, the service."""

    module: str
    env: dict[str, str]
    log_dir: Path
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    launcher: list[str] = field(default_factory=list)
    _service_pid: int | None = field(default=None, init=False, repr=False)

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

    @property
    def service_pid(self) -> int:
        """The service's own pid: the process started, or the launcher's child (known
        once the service answered ``/healthz``)."""
        assert self.process is not None
        if not self.launcher:
            return self.process.pid
        if self._service_pid is None:
            self._service_pid = self._launched()
        return self._service_pid

    def _launched(self) -> int:
        assert self.process is not None
        children = child_pids(self.process.pid)
        if not children:
            raise ServiceStartError(f"{self.name}: its launcher has no child (yet)")
        return children[0]

    def start(self, timeout_s: float = 30.0) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "SENSORPIPE_METRICS_PORT": str(self.port)}
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", self.module, *self.args],
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
                if self.launcher:  # known from now on, also once it has exited
                    self._service_pid = self._launched()
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

    def send_signal(self, signum: int) -> None:
        """Signal the service itself (not its launcher), if it still runs."""
        assert self.process is not None
        if self.process.poll() is not None:
            return
        if not self.launcher:
            self.process.send_signal(signum)  # Popen knows when its pid was reaped
            return
        with suppress(ProcessLookupError):  # the service ended, its launcher not yet
            os.kill(self.service_pid, signum)

    def terminate(self, timeout_s: float = 45.0) -> int:
        """SIGTERM and wait; returns the exit code (the launcher's, with one; raises if
        it does not exit)."""
        assert self.process is not None
        self.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServiceStartError(
                f"{self.name} ignored SIGTERM for {timeout_s} s:\n{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to clean up (a launcher still ends with it)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.send_signal(signal.SIGKILL)
        except ServiceStartError:  # a launcher that has not started its child
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
