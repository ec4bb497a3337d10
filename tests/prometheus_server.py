"""A real Prometheus server (Debian's package) for the tests that scrape services."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.devstack.processes import free_port


@dataclass
class Prometheus:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?query={urllib.parse.quote(expr)}"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            payload = json.loads(response.read())
        assert payload["status"] == "success", payload
        return list(payload["data"]["result"])

    def wait_for(
        self, expr: str, predicate: Callable[[list[Any]], bool], timeout_s: float = 40.0
    ) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        result: list[Any] = []
        while time.monotonic() < deadline:
            try:
                result = self.query(expr)
            except OSError:
                result = []
            if result and predicate(result):
                return result
            time.sleep(0.5)
        raise AssertionError(f"Prometheus query {expr!r} never satisfied; last result {result}")


@contextmanager
def prometheus_scraping(ports: list[int], workdir: Path) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port scraping ``ports`` every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "the prometheus binary is not installed; run deploy/install-system-packages.sh "
            "(make test does) to install Debian's prometheus package"
        )
    port = free_port()
    config = workdir / "prometheus.yml"
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: sensorpipe\n"
        f"    static_configs: [{{targets: [{targets}]}}]\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "prometheus.log").open("wb"),
    )
    try:
        yield Prometheus(port)
    finally:
        process.terminate()
        process.wait(timeout=20)
