"""A received SQS message and the outcomes a handler can give it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sensorpipe.config import PipelineConfig, ScenarioRoute
from sensorpipe.envelope import (
    ATTR_BATCH_ID,
    ATTR_RECORD_COUNT,
    ATTR_SCENARIO,
    AttributeMismatchError,
    Encoded,
    Envelope,
    EnvelopeError,
    decode,
)


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

    def announced_records(self) -> int:
        """The record count the sender put in the attributes (0 when absent or garbled)."""
        count = self.attributes.get(ATTR_RECORD_COUNT, "")
        return int(count) if count.isdigit() else 0

    def passed_through(self) -> Encoded:
        """The message as received, to send on: body and attributes untouched, never
        decoded (a stage the scenario skips costs no decode and changes no byte)."""
        return Encoded(
            body=self.body,
            attributes=dict(self.attributes),
            batch_id=self.attributes.get(ATTR_BATCH_ID, ""),
            record_count=self.announced_records(),
        )

    def route(self, config: PipelineConfig) -> ScenarioRoute | Reject:
        """The route of the scenario the message names, read from the attributes (the
        body is decoded only for a message without them); Reject for poison or a
        scenario the routing table lacks."""
        scenario = self.attributes.get(ATTR_SCENARIO)
        if scenario is None:
            try:
                scenario = self.envelope().scenario
            except EnvelopeError as exc:
                return Reject(f"not a batch envelope: {exc}")
        route = config.route(scenario)
        if route is None:
            return Reject(
                f"batch {self.attributes.get(ATTR_BATCH_ID, '?')}: scenario {scenario!r} "
                f"has no route (routing table: {', '.join(config.scenario_names())})"
            )
        return route

    def stamped_envelope(self) -> Envelope | Reject:
        """The decoded batch, or Reject with the reason: poison, or a body its
        attributes contradict (scenario, batch id, config version, record count).

        Every stage that decodes a body goes through this one check, so the body is the
        single source of truth: a message stamped ``raw`` whose body says
        ``notification`` cannot skip validation in one stage and be routed by its body
        in the next.
        """
        try:
            return self.envelope()
        except AttributeMismatchError as exc:
            return Reject(str(exc))
        except EnvelopeError as exc:
            return Reject(f"not a batch envelope: {exc}")


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
