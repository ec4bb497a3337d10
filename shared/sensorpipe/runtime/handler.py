"""The contract between the consumer loop and a service: a batch handler."""

from __future__ import annotations

from typing import Protocol

from sensorpipe.runtime.message import Message, Outcome


class Acknowledger(Protocol):
    """Lets a handler settle messages it answered with ``Hold`` earlier."""

    def ack(self, messages: list[Message]) -> None: ...

    def retry(self, messages: list[Message], reason: str) -> None: ...

    def release(self, messages: list[Message]) -> None:
        """Hand held messages back for redelivery now (visibility 0)."""
        ...


class BatchHandler:
    """Base class of every service handler.

    ``handle`` gets up to ``max_messages`` messages and returns one outcome per message,
    in order. Time-driven work (window flushes, output batching) goes in ``on_tick``,
    which the loop calls at least every ``tick_interval_s`` seconds, and ``on_shutdown``
    flushes whatever is pending before the process exits.
    """

    name: str = "handler"
    tick_interval_s: float = 1.0
    # Overrides runtime.max_in_flight for a handler that holds messages (the aggregator).
    max_in_flight: int | None = None
    # Seconds each received message is leased (kept invisible, renewed by the heartbeat
    # while held); None: the queue's visibility timeout.
    lease_s: int | None = None

    def __init__(self) -> None:
        self.acknowledger: Acknowledger | None = None

    def bind(self, acknowledger: Acknowledger) -> None:
        """Called by the consumer loop before the first batch."""
        self.acknowledger = acknowledger

    def handle(self, messages: list[Message]) -> list[Outcome]:
        raise NotImplementedError

    def on_tick(self) -> None:
        return None

    def on_shutdown(self) -> None:
        return None
