"""Router test fixtures: the shared in-memory AWS (tests/moto_stack.py) with the
router's pipeline provisioned, and builders for envelopes and received messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope
from sensorpipe.runtime import Message
from services.router.handler import RouterHandler
from tests.moto_stack import MotoStack, message_of, mocked_aws, provisioned


def reading(row_id: int, timestamp: Any, **fields: Any) -> dict[str, Any]:
    """A source row like the sensor_readings table's."""
    row: dict[str, Any] = {
        "id": row_id,
        "timestamp": timestamp,
        "sensor_id": f"SENSOR_{row_id % 7:03d}",
        "temperature": 61.5,
        "location": ["Chicago", "Denver", "Austin"][row_id % 3],
        "status_code": 0,
        "anomaly_flag": 0,
    }
    row.update(fields)
    return row


def record(
    row: dict[str, Any], *, anomalous: bool = False, lineage: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sensor_data": row,
        "quality": {"spec_version": "2.0.0", "anomalous": anomalous, "anomaly_reasons": []},
    }
    if lineage:
        out["lineage"] = {"node_id": "node-1", "source_row_id": row["id"], "hops": []}
    return out


def envelope(scenario: str, records: list[dict[str, Any]], batch_id: str = "edge-b1") -> Envelope:
    return Envelope(
        batch_id=batch_id,
        scenario=scenario,
        config_version=7,
        records=records,
        source="edge",
        created_at="2025-08-18T00:00:01.000+00:00",
        hops=[
            {"stage": "uploader", "at": "2025-08-18T00:00:01.000+00:00"},
            {"stage": "enricher", "at": "2025-08-18T00:00:01.100+00:00"},
            {"stage": "validator", "at": "2025-08-18T00:00:01.200+00:00"},
        ],
    )


def message(env: Envelope, *, compress: bool = True) -> Message:
    return message_of(env, compress=compress)


@dataclass
class MotoPipeline(MotoStack):
    def handler(self) -> RouterHandler:
        return RouterHandler.from_context(self.context)

    def head(self, kind: str, key: str) -> dict[str, Any]:
        return dict(self.context.s3.head_object(Bucket=self.bucket(kind), Key=key))


def make_moto_pipeline(**queues: Any) -> MotoPipeline:
    config = PipelineConfig(
        buckets={"prefix": "unit-router"},
        queues={"prefix": "unit-router", **queues},
    )
    stack = provisioned(config, service="router")
    return MotoPipeline(stack.config, stack.context)


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with mocked_aws(monkeypatch):
        yield


@pytest.fixture
def moto_pipeline(moto_aws: None) -> MotoPipeline:
    return make_moto_pipeline(aggregate_shards=3, notify_shards=2)
