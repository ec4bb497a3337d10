"""What the forwarding stages share: a producer for the next queue, and the rule that
a received batch goes on in ONE producer call, acknowledged only once it is sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from sensorpipe.envelope import Encoded
from sensorpipe.runtime.errors import SendError
from sensorpipe.runtime.message import ACK, Message, Outcome, Reject, Retry
from sensorpipe.runtime.metrics import RECORDS_PROCESSED
from sensorpipe.runtime.producer import EnvelopeProducer
from sensorpipe.runtime.service import ServiceContext


def queue_producer(context: ServiceContext, queue: str, *, service: str) -> EnvelopeProducer:
    """A producer for one pipeline queue with the pipeline's body limit and compression;
    the queue URL is looked up once, here (at start-up)."""
    config = context.config
    return EnvelopeProducer(
        context.sqs,
        context.sqs.get_queue_url(QueueName=queue)["QueueUrl"],
        queue,
        max_body_bytes=config.queues.max_body_bytes,
        compress=config.runtime.compress,
        columnar=config.runtime.columnar,
        service=service,
    )


class Prepared(Protocol):
    """One received message made ready to go on: its place in the batch, its bodies."""

    @property
    def index(self) -> int: ...

    @property
    def encoded(self) -> list[Encoded]: ...


PreparedT = TypeVar("PreparedT", bound=Prepared)


def forward_together(
    producer: EnvelopeProducer,
    messages: list[Message],
    prepare: Callable[[int, Message], PreparedT | Reject | Retry],
    *,
    service: str,
) -> tuple[list[Outcome], list[PreparedT]]:
    """Prepare every message, then send everything that goes on in one producer call.

    Returns the outcomes in message order (what ``prepare`` decided, Retry for every
    prepared message when the send fails, ACK otherwise) and the prepared messages that
    went out, for the caller to count; none when the send failed. The records of a
    rejected message are counted here as ``rejected``, from the announced count.
    """
    outcomes: list[Outcome] = [ACK] * len(messages)
    prepared: list[PreparedT] = []
    for index, message in enumerate(messages):
        result = prepare(index, message)
        if isinstance(result, (Reject, Retry)):
            outcomes[index] = result
            if isinstance(result, Reject):
                RECORDS_PROCESSED.labels(service, "rejected").inc(message.announced_records())
        else:
            prepared.append(result)
    if not prepared:
        return outcomes, []
    try:
        producer.send_encoded([e for p in prepared for e in p.encoded])
    except SendError as exc:
        for p in prepared:
            outcomes[p.index] = Retry(str(exc))
        return outcomes, []
    return outcomes, prepared
