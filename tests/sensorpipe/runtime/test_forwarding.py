"""A forwarding stage sends a received batch on in one call and acks only what went out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sensorpipe.envelope import ATTR_RECORD_COUNT, Encoded
from sensorpipe.runtime import ACK, EnvelopeProducer, Message, Reject, Retry
from sensorpipe.runtime.errors import SendError
from sensorpipe.runtime.forwarding import forward_together


@dataclass
class RecordingProducer(EnvelopeProducer):
    fail: bool = False
    calls: list[list[Encoded]] = field(default_factory=list)

    def send_encoded(
        self, encoded: list[Encoded], fifo_ids: list[dict[str, str]] | None = None
    ) -> None:
        self.calls.append(encoded)
        if self.fail:
            raise SendError(self.queue_name, ["throttled"])


@dataclass
class Ready:
    index: int
    encoded: list[Encoded]


def producer(*, fail: bool = False) -> RecordingProducer:
    return RecordingProducer(cast(Any, None), "url", "next", fail=fail)


def message(body: str) -> Message:
    return Message(body, body, body, {ATTR_RECORD_COUNT: "4"})


def prepare(index: int, msg: Message) -> Ready | Reject | Retry:
    if msg.body == "poison":
        return Reject("poison")
    if msg.body == "later":
        return Retry("later")
    return Ready(index, [msg.passed_through()])


def test_everything_prepared_goes_in_one_call_and_is_acked() -> None:
    sender = producer()
    messages = [message("a"), message("poison"), message("b"), message("later")]
    outcomes, sent = forward_together(sender, messages, prepare, service="test")
    assert outcomes == [ACK, Reject("poison"), ACK, Retry("later")]
    assert [item.index for item in sent] == [0, 2]
    assert [[e.body for e in call] for call in sender.calls] == [["a", "b"]]


def test_a_failed_send_retries_every_prepared_message_and_reports_none_sent() -> None:
    sender = producer(fail=True)
    messages = [message("a"), message("poison"), message("b")]
    outcomes, sent = forward_together(sender, messages, prepare, service="test")
    assert isinstance(outcomes[0], Retry) and "throttled" in outcomes[0].reason
    assert outcomes[1] == Reject("poison")
    assert isinstance(outcomes[2], Retry)
    assert sent == []


def test_nothing_to_send_makes_no_call() -> None:
    sender = producer()
    outcomes, sent = forward_together(sender, [message("poison")], prepare, service="test")
    assert outcomes == [Reject("poison")] and sent == [] and sender.calls == []
