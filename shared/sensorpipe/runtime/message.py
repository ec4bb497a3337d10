"""A received SQS message and the outcomes a handler can give it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sensorpipe.envelope import Envelope, decode


@dataclass(slots=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]
    receive_count: int = 1
    sent_timestamp_ms: int = 0
    queue: str = ""
    _envelope: Envelope | None = field(default=None, repr=False)

    @classmethod
    def from_sqs(cls, raw: dict[str, Any], queue: str) -> Message:
        system = raw.get("Attributes", {})
        attributes = {
            name: value.get("StringValue", "")
            for name, value in raw.get("MessageAttributes", {}).items()
        }
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            attributes=attributes,
            receive_count=int(system.get("ApproximateReceiveCount", 1)),
            sent_timestamp_ms=int(system.get("SentTimestamp", 0)),
            queue=queue,
        )

    def envelope(self) -> Envelope:
        """Decode the body once (raises EnvelopeError for poison)."""
        if self._envelope is None:
            self._envelope = decode(self.body, self.attributes)
        return self._envelope


@dataclass(frozen=True, slots=True)
class Ack:
    """Done: delete the message."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Transient failure: make the message visible again after a back-off."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Poison: it can never succeed. Move it to the DLQ now, with the reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the message in flight (heartbeat continues); the handler acks it later."""


Outcome = Ack | Retry | Reject | Hold
ACK = Ack()
HOLD = Hold()
