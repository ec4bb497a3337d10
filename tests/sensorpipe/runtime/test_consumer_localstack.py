"""The consumer loop against the running LocalStack: a message retried until its last
receive goes to the DLQ with the reason, a handler exception sends its culprit alone to
the DLQ at once, a slow handler is kept invisible by the heartbeat."""

from __future__ import annotations

import collections
import functools
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sensorpipe.aws import sqs_client
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.envelope import Envelope
from sensorpipe.runtime import (
    ACK,
    BatchHandler,
    Consumer,
    EnvelopeProducer,
    Message,
    Outcome,
    Retry,
)
from tests.conftest import Pipeline, make_pipeline
from tests.sensorpipe.runtime.conftest import LoopRunner, metric, service_name

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.integration

FAST_QUEUES = {"visibility_timeout_seconds": 5, "max_receive_count": 3}
FAST_RUNTIME = {
    "wait_time_seconds": 1,
    "retry_base_seconds": 0,
    "shutdown_timeout_seconds": 3,
    "heartbeat_fraction": 0.5,
}


def _pipeline(tmp_path: Path, endpoint: str, **runtime: Any) -> Pipeline:
    return make_pipeline(
        tmp_path, endpoint, {"queues": FAST_QUEUES, "runtime": {**FAST_RUNTIME, **runtime}}
    )


def _send(pipeline: Pipeline, batch_ids: list[str]) -> None:
    queue = pipeline.config.queues.ingest
    producer = EnvelopeProducer(sqs_client(), pipeline.queue_url(queue), queue, service="test")
    producer.send(
        [
            Envelope(batch_id=b, scenario="raw", config_version=1, records=[{"b": b}])
            for b in batch_ids
        ]
    )


@functools.cache
def _queue_url(name: str) -> str:
    return _sqs().get_queue_url(QueueName=name)["QueueUrl"]


@functools.cache
def _sqs() -> SQSClient:
    # One client for the polling loops (creating one costs ~0.1 s of a shared CPU).
    return sqs_client()


def _depth(queue: str) -> int:
    attrs = _sqs().get_queue_attributes(
        QueueUrl=_queue_url(queue),
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


class CountingHandler(BatchHandler):
    """Acks everything except ``poison``, which always fails with Retry."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison
        self.acked: collections.Counter[str] = collections.Counter()
        self.poison_receives: list[int] = []

    def handle(self, messages: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for m in messages:
            batch_id = m.envelope().batch_id
            if batch_id == self.poison:
                self.poison_receives.append(m.receive_count)
                outcomes.append(Retry("this one always fails"))
            else:
                self.acked[batch_id] += 1
                outcomes.append(ACK)
        return outcomes


def _consumer(pipeline: Pipeline, queue: str, handler: BatchHandler) -> Consumer:
    """The consumer a service would run over ``queue``: the pipeline's runtime settings,
    its DLQ and its give-up count."""
    return Consumer(
        sqs_client(),
        queue,
        handler,
        pipeline.config.runtime,
        service=service_name(),
        dlq_name=QueueSettings.dlq_name(queue),
        max_receives=pipeline.config.queues.max_receive_count,
    )


def test_poison_reaches_the_dlq_after_max_receives_and_nothing_else_is_lost(
    localstack: str, tmp_path: Path
) -> None:
    pipeline = _pipeline(tmp_path, localstack, max_messages=10)
    queue = pipeline.config.queues.ingest
    dlq = QueueSettings.dlq_name(queue)
    good = [f"good-{i:02d}" for i in range(25)]
    _send(pipeline, [*good[:12], "poison", *good[12:]])

    handler = CountingHandler("poison")
    consumer = _consumer(pipeline, queue, handler)
    runner = LoopRunner(consumer)
    try:
        runner.wait_for(lambda: _depth(dlq) == 1, timeout_s=40)
        runner.wait_for(lambda: sum(handler.acked.values()) >= len(good), timeout_s=10)
    finally:
        runner.stop()

    # The poison was tried exactly maxReceiveCount times, then the consumer moved it,
    # saying why (SQS's redrive would have said nothing).
    assert handler.poison_receives == [1, 2, 3]
    moved = sqs_client().receive_message(
        QueueUrl=pipeline.queue_url(dlq), MessageAttributeNames=["All"]
    )["Messages"]
    assert moved[0]["MessageAttributes"]["batch-id"]["StringValue"] == "poison"
    assert (
        moved[0]["MessageAttributes"]["failure-reason"]["StringValue"]
        == "gave up after 3 receives: this one always fails"
    )
    # Every other message was processed exactly once, and the queue is empty.
    assert handler.acked == collections.Counter(good)
    assert _depth(queue) == 0
    assert (
        metric(
            "sensorpipe_messages_processed_total",
            service=consumer.service,
            queue=queue,
            outcome="retry",
        )
        == 2
    )


class RaisesOnPoison(BatchHandler):
    """Raises whenever its batch holds ``poison``; acks everything else."""

    def __init__(self) -> None:
        super().__init__()
        self.acked: collections.Counter[str] = collections.Counter()

    def handle(self, messages: list[Message]) -> list[Outcome]:
        ids = [m.envelope().batch_id for m in messages]
        if "poison" in ids:
            raise ValueError("poison row: no sensor_id")
        self.acked.update(ids)
        return [ACK] * len(messages)


def test_a_handler_exception_sends_its_culprit_alone_to_the_dlq_at_once(
    localstack: str, tmp_path: Path
) -> None:
    pipeline = _pipeline(tmp_path, localstack, max_messages=10)
    queue = pipeline.config.queues.ingest
    dlq = QueueSettings.dlq_name(queue)
    good = [f"fine-{i}" for i in range(9)]
    _send(pipeline, [*good[:4], "poison", *good[4:]])
    handler = RaisesOnPoison()
    consumer = _consumer(pipeline, queue, handler)
    runner = LoopRunner(consumer)
    try:
        runner.wait_for(lambda: _depth(dlq) == 1, timeout_s=30)
        runner.wait_for(lambda: sum(handler.acked.values()) >= len(good), timeout_s=10)
    finally:
        runner.stop()

    moved = sqs_client().receive_message(
        QueueUrl=pipeline.queue_url(dlq),
        MessageAttributeNames=["All"],
        AttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    attributes = {k: v["StringValue"] for k, v in moved[0]["MessageAttributes"].items()}
    assert attributes["batch-id"] == "poison"
    assert attributes["failure-reason"] == "handler error: ValueError: poison row: no sensor_id"
    assert attributes["source-queue"] == queue
    assert moved[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    assert handler.acked == collections.Counter(good)  # each neighbour once, no retries
    assert _depth(queue) == 0
    processed = "sensorpipe_messages_processed_total"
    assert metric(processed, service=consumer.service, queue=queue, outcome="retry") == 0
    assert metric(processed, service=consumer.service, queue=queue, outcome="handler_error") == 1


class SlowHandler(BatchHandler):
    """Works on the "slow" batch for ``seconds`` before acking it; acks others at once."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.seen: list[tuple[str, int]] = []
        self.started = threading.Event()

    def handle(self, messages: list[Message]) -> list[Outcome]:
        self.seen.extend((m.envelope().batch_id, m.receive_count) for m in messages)
        if any(m.envelope().batch_id == "slow" for m in messages):
            self.started.set()
            time.sleep(self.seconds)
        return [ACK] * len(messages)


def test_slow_handler_keeps_its_message_invisible(localstack: str, tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, localstack, max_messages=1, max_in_flight=1)
    queue = pipeline.config.queues.ingest
    queue_url = pipeline.queue_url(queue)
    _send(pipeline, ["slow"])
    handler = SlowHandler(seconds=11.0)  # more than twice the 5 s visibility timeout
    consumer = _consumer(pipeline, queue, handler)
    runner = LoopRunner(consumer)
    try:
        assert handler.started.wait(15), "the consumer never received the message"
        # Control: a message received without a heartbeat comes back after 5 s.
        _send(pipeline, ["control"])
        spy = sqs_client()
        seen_by_spy: list[str] = []
        last_control = ""
        deadline = time.monotonic() + 10.5
        while time.monotonic() < deadline:
            for raw in spy.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            ).get("Messages", []):
                seen_by_spy.append(raw["MessageAttributes"]["batch-id"]["StringValue"])
                last_control = raw["ReceiptHandle"]
        # Done once the slow message is acked. (Not "nothing in flight": the consumer may
        # take the control message the moment the slow one is settled.)
        runner.wait_for(
            lambda: (
                metric(
                    "sensorpipe_messages_processed_total",
                    service=consumer.service,
                    queue=queue,
                    outcome="ok",
                )
                >= 1
            ),
            timeout_s=10,
        )
    finally:
        runner.stop()

    assert "slow" not in seen_by_spy, "the slow message became visible while being worked on"
    assert seen_by_spy.count("control") >= 2, "control: visibility should have run out"
    assert handler.seen[0] == ("slow", 1)  # received once: never redelivered
    assert all(batch == "control" for batch, _ in handler.seen[1:])
    assert metric("sensorpipe_visibility_extensions_total", service=consumer.service) >= 2
    assert last_control
    sqs_client().purge_queue(QueueUrl=queue_url)
