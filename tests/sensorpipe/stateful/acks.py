"""The consumer loop's side of a sequenced handler, recorded: which held messages were
acknowledged or handed back. The sequencer never retries a message (it holds it), so a
retry fails the test."""

from __future__ import annotations

from dataclasses import dataclass, field

from sensorpipe.runtime import Message


@dataclass
class RecordingAcks:
    acked: list[Message] = field(default_factory=list)
    released: list[Message] = field(default_factory=list)

    def ack(self, messages: list[Message]) -> None:
        self.acked.extend(messages)

    def retry(self, messages: list[Message], reason: str) -> None:
        raise AssertionError(f"the sequencer never retries, it holds: {reason}")

    def release(self, messages: list[Message]) -> None:
        self.released.extend(messages)

    def settled(self) -> set[str]:
        """The receipt handles acknowledged so far."""
        return {m.receipt_handle for m in self.acked}
