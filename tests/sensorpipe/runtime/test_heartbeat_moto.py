"""The visibility heartbeat, on moto's in-memory SQS."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from sensorpipe.runtime import Message
from sensorpipe.runtime.heartbeat import Heartbeat
from sensorpipe.runtime.tracker import InFlight
from tests.sensorpipe.runtime.conftest import metric, queue_counts, send_batches, service_name

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def test_heartbeat_keeps_a_held_message_invisible_then_lets_go(
    moto_sqs: SQSClient, work_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real = moto_sqs.change_message_visibility_batch

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(moto_sqs, "change_message_visibility_batch", spy)
    send_batches(moto_sqs, work_queue, ["slow"])
    raw = moto_sqs.receive_message(
        QueueUrl=work_queue, VisibilityTimeout=2, MessageAttributeNames=["All"]
    )["Messages"][0]
    message = Message.from_sqs(dict(raw), "work")
    in_flight = InFlight()
    in_flight.add([message], 2)
    service = service_name()
    heartbeat = Heartbeat(
        moto_sqs, work_queue, in_flight, visibility_s=2, fraction=0.5, service=service
    )
    heartbeat.start()
    try:
        time.sleep(4.5)  # more than twice the visibility timeout
        assert queue_counts(moto_sqs, work_queue) == (0, 1), "the message became visible"
        assert len(calls) >= 2
        assert all(
            c["Entries"][0]["ReceiptHandle"] == message.receipt_handle
            and c["Entries"][0]["VisibilityTimeout"] == 2
            for c in calls
        )

        in_flight.remove([message])  # settled: the heartbeat stops extending it
        extended = len(calls)
        time.sleep(2.6)
        assert len(calls) == extended
        # Counted only once a call returned: compared now that none is in progress.
        assert metric("sensorpipe_visibility_extensions_total", service=service) == len(calls)
        assert queue_counts(moto_sqs, work_queue) == (1, 0)
    finally:
        heartbeat.stop()


def test_due_lists_only_messages_close_to_their_deadline() -> None:
    in_flight = InFlight()
    soon = Message("a", "rh-a", "", {})
    later = Message("b", "rh-b", "", {})
    in_flight.add([soon], 1)
    in_flight.add([later], 100)
    assert in_flight.due(5) == [soon]
    in_flight.extended([soon], 100)
    assert in_flight.due(5) == []
    assert len(in_flight) == 2
