"""Helpers for the replay tests: put messages where the runtime would, read queues back."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import pytest

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.envelope import Envelope, decode, encode


def sqs() -> Any:
    """One client per endpoint for the whole session (creating one costs ~0.5 s on a
    busy host); keyed by endpoint so a client made before LocalStack's variables were
    set is never reused after."""
    return _client("sqs", os.environ.get("AWS_ENDPOINT_URL"))


def s3() -> Any:
    return _client("s3", os.environ.get("AWS_ENDPOINT_URL"))


@cache
def _client(service: str, _endpoint: str | None) -> Any:
    return sqs_client() if service == "sqs" else s3_client()


@cache
def url_of(name: str) -> str:
    return str(sqs().get_queue_url(QueueName=name)["QueueUrl"])


def reading(row_id: int, sensor: str, timestamp: str, location: str = "plant-a") -> dict[str, Any]:
    return {
        "id": row_id,
        "sensor_id": sensor,
        "timestamp": timestamp,
        "location": location,
        "temperature": 20.0 + row_id,
    }


def dead_letter(
    queue: str,
    batch_id: str,
    reason: str | None,
    *,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Send an envelope to ``queue``'s DLQ the way the consumer runtime rejects one
    (envelope attributes plus failure-*); ``reason=None`` mimics the RedrivePolicy.
    Returns the attributes the message had before it failed."""
    envelope = Envelope(
        batch_id=batch_id,
        scenario="raw",
        config_version=1,
        records=[{"sensor_data": reading(1, "s-1", "2026-11-21T10:00:00Z")}],
    )
    encoded = encode(envelope, compress=True)
    original = {**encoded.attributes, **(extra or {})}
    attributes = dict(original)
    if reason is not None:
        attributes |= {
            "failure-reason": reason,
            "source-queue": queue,
            "failed-service": "validator",
        }
    sqs().send_message(
        QueueUrl=url_of(QueueSettings.dlq_name(queue)),
        MessageBody=encoded.body,
        MessageAttributes={
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        },
    )
    return original


def drain(queue: str) -> list[dict[str, Any]]:
    """Receive (and delete) every message of ``queue``: body, attributes, envelope."""
    url = url_of(queue)
    out: list[dict[str, Any]] = []
    while True:
        got = (
            sqs()
            .receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            )
            .get("Messages", [])
        )
        if not got:
            return out
        for message in got:
            attributes = {
                k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()
            }
            out.append(
                {
                    "body": message["Body"],
                    "attributes": attributes,
                    "envelope": decode(message["Body"], attributes),
                }
            )
            sqs().delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture(autouse=True)
def shared_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI under test reuses the session's clients instead of building new ones per
    call (the console-script test still runs the real thing end to end)."""
    monkeypatch.setattr("sensorpipe.replay.cli.sqs_client", sqs)
    monkeypatch.setattr("sensorpipe.replay.cli.s3_client", s3)
