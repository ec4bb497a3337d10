"""Which received messages have reached the handler yet?

The receiver thread polls ahead of the handler: at any moment one batch may sit in the
inbox, another in the receiver's hands waiting for room, and a long poll may be open
with messages SQS already took off the queue. A handler that must know "everything
received before now is folded" (the aggregator's recovery gate, after it saw the queue
empty) asks for a ``mark`` and later whether every poll up to that mark has finished
and every batch it returned has been handed to ``handle``.

Polls are numbered in the order the (single) receiver thread starts them; batches are
handed to the handler in the same order, so a queue of the undelivered poll numbers is
enough.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class DeliveryLog:
    def __init__(self, in_flight: Callable[[], int] = lambda: 0) -> None:
        self._in_flight = in_flight
        self._lock = threading.Lock()
        self._started = 0  # number of the latest poll started
        self._finished = 0  # number of the latest poll that returned (or failed)
        self._undelivered: deque[int] = deque()  # polls whose batch awaits the handler

    # -- the receiver thread -------------------------------------------------------------

    def poll_started(self) -> int:
        with self._lock:
            self._started += 1
            return self._started

    def poll_finished(self, poll: int, *, received: bool) -> None:
        """The poll returned; ``received``: with messages, which will be handed over."""
        with self._lock:
            self._finished = poll
            if received:
                self._undelivered.append(poll)

    # -- the handler's thread ------------------------------------------------------------

    def delivered(self) -> None:
        """The oldest waiting batch is being handed to the handler now."""
        with self._lock:
            if self._undelivered:
                self._undelivered.popleft()

    def in_flight(self) -> int:
        """Messages taken off the queue and not settled yet (held ones included)."""
        return self._in_flight()

    def mark(self) -> int:
        """A point in time: every poll that may have taken messages off the queue before
        now has a number up to this one."""
        with self._lock:
            return self._started

    def delivered_through(self, mark: int) -> bool:
        """Every poll up to ``mark`` has returned and its messages reached the handler."""
        with self._lock:
            if self._finished < mark:
                return False
            return not self._undelivered or self._undelivered[0] > mark
