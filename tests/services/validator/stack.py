"""An in-memory AWS (moto) with a provisioned pipeline, for handler tests of the
enricher and the validator, plus builders of envelopes and received messages."""

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


def envelope_of(
    scenario: str, rows: list[dict[str, Any]], batch_id: str = "edge-1-000001"
) -> Envelope:
    return Envelope(
        batch_id=batch_id,
        scenario=scenario,
        config_version=3,
        records=[{"sensor_data": row} for row in rows],
        source="edge-1",
        created_at="2025-08-18T10:20:00.000+00:00",
        hops=[{"stage": "uploader", "at": "2025-08-18T10:20:00.000+00:00"}],
    )


def message_of(envelope: Envelope, *, compress: bool = True) -> Message:
    encoded = encode(envelope, compress=compress)
    return Message(
        message_id=str(uuid.uuid4()),
        receipt_handle=str(uuid.uuid4()),
        body=encoded.body,
        attributes=dict(encoded.attributes),
    )


@dataclass
class MotoStack:
    config: PipelineConfig
    context: ServiceContext

    def objects(self, kind: str) -> dict[str, bytes]:
        s3, bucket = self.context.s3, self.config.buckets.name(kind)
        listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {
            o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing
        }

    def lines(self, kind: str) -> dict[str, list[dict[str, Any]]]:
        return {key: read_jsonl(body) for key, body in self.objects(kind).items()}

    def drain(self, queue: str) -> list[Message]:
        sqs = self.context.sqs
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        out: list[Message] = []
        while True:
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
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


@pytest.fixture
def moto_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoStack]:
    # An endpoint variable left by the LocalStack fixture would bypass moto.
    for key in list(os.environ):
        if key.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with mock_aws():
        config = PipelineConfig(
            buckets={"prefix": "unit-stages"},
            queues={"prefix": "unit-stages"},
            filters=[
                {"name": "drop_anomalous_status", "field": "status_code", "op": "eq", "value": 1}
            ],
        )
        s3, sqs = s3_client(), sqs_client()
        provision(config, s3=s3, sqs=sqs)
        yield MotoStack(config, ServiceContext("test", config, ServiceSettings(), sqs, s3))
