"""Against LocalStack's real FIFO queue (issue 11): what SendMessage refuses, and that
the notifier's sender gets every burst through whatever its location holds, or, for a
burst SQS still refuses, says so with :class:`UnsendableError` instead of failing the
commit for every other burst.

The first test is the reproduction: a NUL in a message attribute is refused
(``InvalidParameterValue``: invalid characters), as is a raw NUL in the body
(``InvalidMessageContents``), while the ``\\u0000`` escape orjson writes in the body is
taken. The notifier's NUL location reached SQS raw in the ``location`` attribute."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from botocore.exceptions import ClientError

from sensorpipe.aws import sqs_client
from sensorpipe.store import MemoryObjectStore
from services.notifier.dedupe import NotificationLedger, NotificationSender, Published
from services.notifier.errors import UnsendableError
from services.notifier.message import build_body, burst_id
from tests.services.notifier.harness import ODD_LOCATIONS
from tests.services.notifier.test_dedupe import RULES, burst

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.integration


@pytest.fixture
def fifo(localstack: str) -> Iterator[tuple[SQSClient, str]]:
    sqs = sqs_client()
    name = f"t-{uuid.uuid4().hex[:10]}-notifications.fifo"
    url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def _send(sqs: SQSClient, url: str, **changes: Any) -> None:
    sqs.send_message(
        **{
            "QueueUrl": url,
            "MessageBody": "{}",
            "MessageGroupId": "g",
            "MessageDeduplicationId": uuid.uuid4().hex,
            **changes,
        }
    )


def test_sqs_refuses_a_nul_in_an_attribute_and_a_raw_one_in_the_body(
    fifo: tuple[SQSClient, str],
) -> None:
    sqs, url = fifo
    nul = {"location": {"DataType": "String", "StringValue": "Plant\x00North"}}
    with pytest.raises(ClientError) as refused:
        _send(sqs, url, MessageAttributes=nul)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "Invalid characters" in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as raw:
        _send(sqs, url, MessageBody='{"location": "Plant\x00North"}')
    assert raw.value.response["Error"]["Code"] == "InvalidMessageContents"
    _send(sqs, url, MessageBody=orjson.dumps({"location": "Plant\x00North"}).decode())
    with pytest.raises(ClientError):
        _send(sqs, url, MessageGroupId="Plant\x00North")


def _receive_all(sqs: SQSClient, url: str, count: int, rounds: int = 20) -> list[Any]:
    got: list[Any] = []
    for _ in range(rounds):
        if len(got) >= count:
            break
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        for message in answer.get("Messages", []):
            got.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return got


def test_a_burst_at_any_location_reaches_the_real_fifo_queue(
    fifo: tuple[SQSClient, str],
) -> None:
    sqs, url = fifo
    sender = NotificationSender(
        sqs,
        url,
        NotificationLedger(MemoryObjectStore("archival"), "notifications"),
        max_body_bytes=256 * 1024,
    )
    locations = ["Chicago", *ODD_LOCATIONS]
    for location in locations:
        found = burst(location)
        body = build_body(
            found, RULES, sender.ledger.uri(location, burst_id(location, found.start.key))
        )
        assert sender.publish(found, body) is Published.SENT
    received = _receive_all(sqs, url, len(locations))
    notes = {orjson.loads(m["Body"])["location"]: m for m in received}
    assert sorted(notes) == sorted(locations)
    plain = notes["Chicago"]["MessageAttributes"]
    assert plain["location"]["StringValue"] == "Chicago" and "percent-encoded" not in plain
    odd = notes["Plant\x00North"]["MessageAttributes"]
    assert odd["location"]["StringValue"] == "Plant%00North"
    assert odd["percent-encoded"]["StringValue"] == "location"


def test_a_message_sqs_refuses_is_unsendable_not_a_failed_commit(
    fifo: tuple[SQSClient, str],
) -> None:
    """Allowed more than SQS takes, a burst's body is refused: that is its content's
    fault, reported as UnsendableError with SQS's reason, and nothing was sent."""
    sqs, url = fifo
    ledger = NotificationLedger(MemoryObjectStore("archival"), "notifications")
    sender = NotificationSender(sqs, url, ledger, max_body_bytes=8 * 1024 * 1024)
    found = burst("Chicago")
    body = build_body(found, RULES, "s3://archival/x.json")
    body["readings"] = body["readings"] * 3000  # about 3 MB: beyond SQS's 1 MiB
    with pytest.raises(UnsendableError) as refused:
        sender.publish(found, body)
    assert refused.value.burst_id == body["burst_id"]
    assert refused.value.cause
    assert not ledger.sent("Chicago", body["burst_id"])
    assert _receive_all(sqs, url, 1, rounds=2) == []
