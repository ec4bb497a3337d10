"""A real Prometheus server scrapes a real service process's /metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.aws import sqs_client
from sensorpipe.devstack.processes import ServiceProcess, free_port
from sensorpipe.envelope import Envelope
from sensorpipe.runtime.producer import EnvelopeProducer
from tests.conftest import Pipeline

pytestmark = pytest.mark.integration


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        payload = json.loads(response.read())
    assert payload["status"] == "success", payload
    return list(payload["data"]["result"])


def _wait_for(port: int, expr: str, predicate: Any, timeout_s: float = 40.0) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    result: list[Any] = []
    while time.monotonic() < deadline:
        try:
            result = _query(port, expr)
        except OSError:
            result = []
        if result and predicate(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"Prometheus query {expr!r} never satisfied; last result {result}")


def test_prometheus_scrapes_a_running_service(pipeline: Pipeline, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "the prometheus binary is not installed; run deploy/install-system-packages.sh "
            "(make test does) to install Debian's prometheus package"
        )
    service = ServiceProcess("services.enricher", pipeline.env, tmp_path / "logs").start()
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: sensorpipe\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{service.port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        sqs = sqs_client()
        queue = pipeline.config.queues.ingest
        producer = EnvelopeProducer(sqs, pipeline.queue_url(queue), queue, service="test")
        row = {"id": 1, "sensor_id": "TEST_000001", "timestamp": "2026-01-01T00:00:00.000+00:00"}
        producer.send([Envelope("prom-1", "raw", 1, [{"sensor_data": row}])])

        up = _wait_for(prom_port, "up", lambda r: r[0]["value"][1] == "1")
        assert up[0]["metric"]["job"] == "sensorpipe"
        received = _wait_for(
            prom_port,
            'sensorpipe_messages_received_total{service="enricher"}',
            lambda r: float(r[0]["value"][1]) >= 1,
        )
        assert received[0]["metric"]["queue"] == queue

        names = {r["metric"]["__name__"] for r in _query(prom_port, '{__name__=~"sensorpipe_.+"}')}
        assert "sensorpipe_messages_processed_total" in names
        for name in names:
            # Conventions: one prefix; counters end in _total; no sensor ids as labels.
            assert name.startswith("sensorpipe_")
        labels = {
            key for r in _query(prom_port, '{__name__=~"sensorpipe_.+"}') for key in r["metric"]
        }
        assert "sensor_id" not in labels
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=20)
        assert service.terminate() == 0
