"""Throughput and lag on the dashboard come from a real Prometheus scraping a real
service process (the enricher) while batches flow through it."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.aws import sqs_client
from sensorpipe.devstack.processes import ServiceProcess, free_port
from sensorpipe.envelope import Envelope
from sensorpipe.runtime.producer import EnvelopeProducer
from tests.prometheus_server import prometheus_scraping
from tests.services.dashboard.conftest import Seeded

pytestmark = pytest.mark.integration


def test_records_per_second_and_lag_per_service(seeded: Seeded, tmp_path: Path) -> None:
    pipeline = seeded.pipeline
    logs = tmp_path / "logs"
    enricher = ServiceProcess("services.enricher", pipeline.env, logs).start()
    try:
        with prometheus_scraping([enricher.port], tmp_path) as prometheus:
            port = free_port()
            env = {
                **pipeline.env,
                "SENSORPIPE_DASHBOARD_PORT": str(port),
                "SENSORPIPE_DASHBOARD_PROMETHEUS_URL": prometheus.url,
            }
            dashboard = ServiceProcess("services.dashboard", env, logs, port=port).start()
            try:
                prometheus.wait_for("up", lambda r: r[0]["value"][1] == "1")
                throughput = _flow_until_measured(pipeline.config.queues.ingest, dashboard)
            finally:
                assert dashboard.terminate() == 0
    finally:
        assert enricher.terminate() == 0

    rates = [r for r in throughput["records_per_second"] if r["service"] == "enricher"]
    assert rates and all(r["value"] is None or r["value"] >= 0 for r in rates)
    assert any((r["value"] or 0) > 0 for r in rates)
    assert [r["service"] for r in throughput["lag_p95_seconds"]] == ["enricher"]


def _flow_until_measured(queue: str, dashboard: ServiceProcess) -> dict[str, Any]:
    """Send a batch every second (a rate needs an increase between two scrapes) until
    the dashboard shows the enricher's rate and lag."""
    sqs = sqs_client()
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    producer = EnvelopeProducer(sqs, url, queue, service="test")
    deadline = time.monotonic() + 60
    throughput: dict[str, Any] = {}
    n = 0
    while time.monotonic() < deadline:
        n += 1
        rows = [
            {"id": i, "sensor_id": "RATE_1", "timestamp": f"2026-11-21T10:00:{i:02d}.000+00:00"}
            for i in range(20)
        ]
        producer.send([Envelope(f"rate-{n}", "lineage", 1, [{"sensor_data": r} for r in rows])])
        with urllib.request.urlopen(f"http://127.0.0.1:{dashboard.port}/api/overview") as r:
            throughput = json.loads(r.read())["throughput"]
        assert throughput.get("configured") is True, throughput
        measured = any(
            r["service"] == "enricher" and (r["value"] or 0) > 0
            for r in throughput["records_per_second"]
        )
        if measured and throughput["lag_p95_seconds"]:
            return throughput
        time.sleep(1)
    raise AssertionError(f"the dashboard never showed the enricher's rate: {throughput}")
