"""Helpers for the runtime tests: an in-memory SQS (moto), handlers, a loop runner."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from moto import mock_aws
from prometheus_client import REGISTRY

from sensorpipe.aws import sqs_client
from sensorpipe.config.pipeline import RuntimeSettings
from sensorpipe.envelope import Envelope
from sensorpipe.runtime import ACK, BatchHandler, Consumer, EnvelopeProducer, Message, Outcome

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

WORK_QUEUE = "work"
WORK_DLQ = "work-dlq"


@pytest.fixture
def moto_sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[SQSClient]:
    """An SQS client on moto's in-memory backend (never the shared LocalStack)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with mock_aws():
        yield sqs_client()


@pytest.fixture
def work_queue(moto_sqs: SQSClient) -> str:
    """A queue with a DLQ after 3 receives; returns its URL."""
    dlq_url = moto_sqs.create_queue(QueueName=WORK_DLQ)["QueueUrl"]
    dlq_arn = moto_sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    return moto_sqs.create_queue(
        QueueName=WORK_QUEUE,
        Attributes={"VisibilityTimeout": "30", "RedrivePolicy": redrive},
    )["QueueUrl"]


def unit_settings(**changes: Any) -> RuntimeSettings:
    base: dict[str, Any] = {
        "wait_time_seconds": 1,
        "retry_base_seconds": 5,
        "retry_max_seconds": 300,
        "shutdown_timeout_seconds": 2,
    }
    return RuntimeSettings(**{**base, **changes})


def service_name() -> str:
    """A unique service label, so metric values start from zero in every test."""
    return f"svc-{uuid.uuid4().hex[:8]}"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def send_batches(sqs: SQSClient, queue_url: str, batch_ids: list[str]) -> None:
    producer = EnvelopeProducer(sqs, queue_url, WORK_QUEUE, compress=True, service="test")
    producer.send(
        [
            Envelope(batch_id=b, scenario="raw", config_version=1, records=[{"n": i}])
            for i, b in enumerate(batch_ids)
        ]
    )


def queue_counts(sqs: SQSClient, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
    )


class ScriptedHandler(BatchHandler):
    """Answers each message with ``decide(message)`` and remembers what it saw."""

    def __init__(
        self,
        decide: Callable[[Message], Outcome] = lambda m: ACK,
        raise_error: Exception | None = None,
    ) -> None:
        super().__init__()
        self.decide = decide
        self.raise_error = raise_error
        self.seen: list[Message] = []
        self.lock = threading.Lock()

    def handle(self, messages: list[Message]) -> list[Outcome]:
        with self.lock:
            self.seen.extend(messages)
        if self.raise_error is not None:
            raise self.raise_error
        return [self.decide(m) for m in messages]

    def seen_batch_ids(self) -> list[str]:
        with self.lock:
            return [m.attributes["batch-id"] for m in self.seen]


class LoopRunner:
    """Runs ``consumer.run()`` in a thread; ``stop()`` ends it and waits."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        self.consumer.stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the consumer loop did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def run_loop() -> Iterator[Callable[[Consumer], LoopRunner]]:
    runners: list[LoopRunner] = []

    def start(consumer: Consumer) -> LoopRunner:
        runner = LoopRunner(consumer)
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        if runner.thread.is_alive():
            runner.stop()
