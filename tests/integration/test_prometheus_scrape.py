"""A real Prometheus server scrapes a real service process's /metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorpipe.aws import sqs_client
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Envelope
from sensorpipe.runtime.producer import EnvelopeProducer
from tests.conftest import Pipeline
from tests.prometheus_server import prometheus_scraping

pytestmark = pytest.mark.integration


def test_prometheus_scrapes_a_running_service(pipeline: Pipeline, tmp_path: Path) -> None:
    service = ServiceProcess("services.enricher", pipeline.env, tmp_path / "logs").start()
    try:
        with prometheus_scraping([service.port], tmp_path) as prometheus:
            sqs = sqs_client()
            queue = pipeline.config.queues.ingest
            producer = EnvelopeProducer(sqs, pipeline.queue_url(queue), queue, service="test")
            row = {
                "id": 1,
                "sensor_id": "TEST_000001",
                "timestamp": "2026-01-01T00:00:00.000+00:00",
            }
            producer.send([Envelope("prom-1", "raw", 1, [{"sensor_data": row}])])

            up = prometheus.wait_for("up", lambda r: r[0]["value"][1] == "1")
            assert up[0]["metric"]["job"] == "sensorpipe"
            received = prometheus.wait_for(
                'sensorpipe_messages_received_total{service="enricher"}',
                lambda r: float(r[0]["value"][1]) >= 1,
            )
            assert received[0]["metric"]["queue"] == queue

            names = {
                r["metric"]["__name__"] for r in prometheus.query('{__name__=~"sensorpipe_.+"}')
            }
            assert "sensorpipe_messages_processed_total" in names
            for name in names:
                # Conventions: one prefix; counters end in _total; no sensor ids as labels.
                assert name.startswith("sensorpipe_")
            labels = {
                key for r in prometheus.query('{__name__=~"sensorpipe_.+"}') for key in r["metric"]
            }
            assert "sensor_id" not in labels
    finally:
        assert service.terminate() == 0
