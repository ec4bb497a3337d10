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
    """Base class of every service handler: the contract with the consumer loop.

    ``handle(messages)`` gets up to ``max_messages`` received messages and returns one
    outcome per message, in order:

    - ``ACK``: done, the message is deleted;
    - ``Retry(reason)``: a transient failure; it comes back after a back-off, and once
      it was received the queue's ``maxReceiveCount`` times, the consumer moves it to
      the DLQ with "gave up after N receives: <reason>";
    - ``Reject(reason)``: poison (it can never succeed): to the DLQ at once with the
      reason as ``failure-reason``;
    - ``HOLD``: kept in flight (the heartbeat keeps it invisible) until the handler
      settles it through the :class:`Acknowledger` given to ``bind``.

    A handler should not raise for one bad message: that message is a ``Reject``. If
    ``handle`` raises anyway, a transient AWS error (botocore's ``BotoCoreError`` or
    ``ClientError``, or tenacity's ``RetryError`` around one) retries every message with
    back-off; any other exception is a bug, and the consumer calls ``handle([message])``
    for each message alone (when ``isolate_errors``): a message that raises alone goes to
    the DLQ with "handler error: <type>: <message>", the others get their outcomes.
    ``handle`` must therefore be safe to call again for messages of a call that raised,
    or set ``isolate_errors = False`` and never raise for a message it holds (the
    stateful stages reject a bad message themselves).

    Time-driven work (window flushes, output batching) goes in ``on_tick``, which the
    loop calls at least every ``tick_interval_s`` seconds, and ``on_shutdown`` flushes
    whatever is pending before the process exits; an exception in either is logged and
    does not stop the loop.

    Parameters (class attributes a handler may override):
        name: the handler's name in logs.
        tick_interval_s: the longest time between two ``on_tick`` calls.
        max_in_flight: overrides ``runtime.max_in_flight`` (held messages count).
        isolate_errors: whether the consumer may re-run ``handle`` on each message alone
            after it raised.
        lease_s: seconds each received message is leased (None: the queue's visibility
            timeout), renewed by the heartbeat while it is held.
    """

    name: str = "handler"
    tick_interval_s: float = 1.0
    # Overrides runtime.max_in_flight for a handler that holds messages (the aggregator).
    max_in_flight: int | None = None
    # After handle(batch) raised (not a transient AWS error), the consumer may call
    # handle([message]) for each message alone to find the culprit. False for a handler
    # whose handle() keeps messages across calls (it rejects a bad message itself).
    isolate_errors: bool = True
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
