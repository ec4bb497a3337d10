"""Router test fixtures: an in-memory AWS (moto) with a provisioned pipeline, and
builders for envelopes and received messages."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope, encode
from sensorpipe.objects import read_jsonl
from sensorpipe.provisioning import provision
from sensorpipe.runtime import Message, ServiceContext, ServiceSettings
from services.router.handler import RouterHandler


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
    encoded = encode(env, compress=compress)
    return Message(
        message_id=str(uuid.uuid4()),
        receipt_handle=str(uuid.uuid4()),
        body=encoded.body,
        attributes=dict(encoded.attributes),
    )


@dataclass
class MotoPipeline:
    config: PipelineConfig
    context: ServiceContext

    def handler(self) -> RouterHandler:
        return RouterHandler.from_context(self.context)

    def bucket(self, kind: str) -> str:
        return self.config.buckets.name(kind)

    def objects(self, kind: str) -> dict[str, bytes]:
        s3 = self.context.s3
        listing = s3.list_objects_v2(Bucket=self.bucket(kind)).get("Contents", [])
        return {
            o["Key"]: s3.get_object(Bucket=self.bucket(kind), Key=o["Key"])["Body"].read()
            for o in listing
        }

    def lines(self, kind: str) -> dict[str, list[dict[str, Any]]]:
        return {key: read_jsonl(body) for key, body in self.objects(kind).items()}

    def head(self, kind: str, key: str) -> dict[str, Any]:
        return dict(self.context.s3.head_object(Bucket=self.bucket(kind), Key=key))

    def drain(self, queue: str) -> list[Message]:
        sqs = self.context.sqs
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        out: list[Message] = []
        while True:
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,  # the queues long-poll by default
            ).get("Messages", [])
            if not got:
                return out
            out.extend(Message.from_sqs(dict(m), queue) for m in got)
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )


def make_moto_pipeline(**queues: Any) -> MotoPipeline:
    config = PipelineConfig(
        buckets={"prefix": "unit-router"},
        queues={"prefix": "unit-router", **queues},
    )
    s3, sqs = s3_client(), sqs_client()
    provision(config, s3=s3, sqs=sqs)
    context = ServiceContext("router", config, ServiceSettings(), sqs, s3)
    return MotoPipeline(config, context)


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # An endpoint variable left by the LocalStack fixture would bypass moto.
    for key in list(os.environ):
        if key.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with mock_aws():
        yield


@pytest.fixture
def moto_pipeline(moto_aws: None) -> MotoPipeline:
    return make_moto_pipeline(aggregate_shards=3, notify_shards=2)
