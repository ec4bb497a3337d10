"""A pipeline in LocalStack with something to show, each object written by the code
that writes it in production: the controller's log, windows by the aggregator's store,
rejected records by the validator, a notification by the notifier's ledger, and a
message in a dead-letter queue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import default_file, load_validation_spec
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.controller.store import PipelineController
from sensorpipe.devstack.processes import ServiceProcess, free_port
from sensorpipe.envelope import Envelope
from sensorpipe.stateful import Batch
from sensorpipe.store import S3ObjectStore
from services.aggregator.config import AggregatorSettings
from services.aggregator.handler import build_stage
from services.notifier.dedupe import NotificationLedger
from services.validator.batch import BatchValidator, error_objects
from tests.conftest import Pipeline, make_pipeline

SENSORS = ("DASH_A", "DASH_B")
MINUTES = 3


@dataclass
class Seeded:
    pipeline: Pipeline
    windows: int  # written window documents


def _row(sensor: str, minute: int, second: int, **values: Any) -> dict[str, Any]:
    at = datetime(2026, 11, 21, 10, minute, second, tzinfo=UTC)
    return {
        "id": minute * 100 + second,
        "sensor_id": sensor,
        "timestamp": at.isoformat(timespec="milliseconds"),
        "location": "plant-a" if sensor == "DASH_A" else "plant-b",
        "temperature": 20.0 + minute + second / 100,
        "humidity": 40.0,
        "status_code": 0,
        "anomaly_flag": 0,
        **values,
    }


def _seed(pipeline: Pipeline) -> Seeded:
    config, s3 = pipeline.config, s3_client()
    controller = PipelineController(config.pipeline.controller_db)
    controller.set("raw", by="alice", reason="bring-up")
    controller.set("aggregated", by="bob", reason="windows for the plant report")

    records = [
        {"sensor_data": _row(sensor, minute, second)}
        for sensor in SENSORS
        for minute in range(MINUTES)
        for second in (5, 35)
    ]
    aggregated = S3ObjectStore(s3, pipeline.bucket("aggregated"), service="test")
    errors = S3ObjectStore(s3, pipeline.bucket("error"), service="test")
    stage = build_stage(config, aggregated, errors, AggregatorSettings())
    batch = Batch([Envelope("dash-1", "aggregated", 2, records)], "dash-1")
    stage.prepare(batch)
    stage.apply(batch)
    windows = len(stage.open)
    stage.advance(2**62)  # every window closes
    stage.flush()

    spec = load_validation_spec(default_file("sensor_validation_spec_v2.yaml"))
    bad = Envelope(
        "dash-bad", "aggregated", 2, [{"sensor_data": _row("DASH_A", 5, 0, temperature=900.0)}]
    )
    result = BatchValidator(spec).validate_envelope(bad, apply_filters=False)
    for obj in error_objects(result):
        s3.put_object(
            Bucket=pipeline.bucket("error"), Key=obj.key, Body=obj.body, Metadata=obj.metadata
        )

    ledger = NotificationLedger(
        S3ObjectStore(s3, pipeline.bucket("archival"), service="test"), "notifications"
    )
    body = {
        "burst_id": "burst-1",
        "location": "plant-b",
        "window": {
            "start": "2026-11-21T10:01:00.000+00:00",
            "end": "2026-11-21T10:01:40.000+00:00",
        },
        "anomaly_count": 3,
        "sensor_ids": ["DASH_B"],
    }
    ledger.record("plant-b", "burst-1", orjson.dumps(body), {"kind": "notification"})

    dlq = QueueSettings.dlq_name(config.queues.validated)
    sqs_client().send_message(QueueUrl=pipeline.queue_url(dlq), MessageBody="poison")
    return Seeded(pipeline, windows=windows)


@pytest.fixture
def seeded(localstack: str, tmp_path: Path) -> Seeded:
    return _seed(make_pipeline(tmp_path, localstack))


@pytest.fixture
def dashboard(seeded: Seeded, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The dashboard as a real process on a free loopback port."""
    port = free_port()
    env = {**seeded.pipeline.env, "SENSORPIPE_DASHBOARD_PORT": str(port)}
    process = ServiceProcess("services.dashboard", env, tmp_path / "logs", port=port).start()
    yield process
    assert process.terminate() == 0
