"""An in-memory AWS (moto) with a provisioned pipeline, for the services' handler tests:
the mock itself, a builder of received messages, and a view of the provisioned stack.

A test directory keeps its own config and handler factories and gets the rest here:

    @pytest.fixture
    def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoStack]:
        with moto_stack(monkeypatch, PipelineConfig(...), service="router") as built:
            yield built
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def mocked_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in place of AWS, with fake credentials and region, for the ``with`` block."""
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


def message_of(
    envelope: Envelope, *, compress: bool = True, receive_count: int = 1, columnar: bool = False
) -> Message:
    """``envelope`` as a consumer receives it from SQS (fresh message id and handle)."""
    encoded = encode(envelope, compress=compress, columnar=columnar)
    return Message(
        message_id=str(uuid.uuid4()),
        receipt_handle=str(uuid.uuid4()),
        body=encoded.body,
        attributes=dict(encoded.attributes),
        receive_count=receive_count,
    )


@dataclass
class MotoStack:
    """A provisioned pipeline in moto and the service context its handlers are built from."""

    config: PipelineConfig
    context: ServiceContext

    def bucket(self, kind: str) -> str:
        return self.config.buckets.name(kind)

    def objects(self, kind: str) -> dict[str, bytes]:
        """Every object of a bucket kind, by key."""
        s3, bucket = self.context.s3, self.bucket(kind)
        listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {
            o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing
        }

    def lines(self, kind: str) -> dict[str, list[dict[str, Any]]]:
        """The JSON lines of every object of a bucket kind, by key."""
        return {key: read_jsonl(body) for key, body in self.objects(kind).items()}

    def drain(self, queue: str) -> list[Message]:
        """Receive and delete everything on ``queue``."""
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


def provisioned(config: PipelineConfig, service: str = "test") -> MotoStack:
    """Provision ``config`` (inside :func:`mocked_aws`) and build ``service``'s context."""
    s3, sqs = s3_client(), sqs_client()
    provision(config, s3=s3, sqs=sqs)
    return MotoStack(config, ServiceContext(service, config, ServiceSettings(), sqs, s3))


@contextmanager
def moto_stack(
    monkeypatch: pytest.MonkeyPatch, config: PipelineConfig, service: str = "test"
) -> Iterator[MotoStack]:
    """:func:`mocked_aws` with ``config`` provisioned in it, for the ``with`` block."""
    with mocked_aws(monkeypatch):
        yield provisioned(config, service)
