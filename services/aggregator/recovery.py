"""When may windows start closing after a (re)start?

Messages a crashed or stopped process held come back: every one is visible again within
one visibility timeout, but they are received only as fast as this process gets through
its queue, behind newer messages. A window written before they are folded would miss
their readings (and first-writer-wins makes that final), so after a start no window
closes until:

1. ``recovery_s`` has passed (every held message is visible again), and
2. the shard queue was seen caught up: no visible message, and no more invisible ones
   than this process has in flight (so none is still held by the dead process, nor
   backing off after a retry): everything has been taken off the queue, and
3. everything taken off the queue before that check has reached the handler (and so is
   folded): the consumer's receiver thread polls ahead, so at the check one batch may
   sit in its inbox, one in the receiver's hands and a long poll may still be open
   (``DeliveryLog``). Without a delivery log (a handler driven directly, as in unit
   tests) whatever was handed to ``handle`` is already folded.

If the queue is never seen empty (input faster than this process), closing starts
anyway after four times ``recovery_s``: late readings may then be classified by a
younger watermark, but nothing is lost or counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.runtime.deliveries import DeliveryLog

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)


class Backlog(NamedTuple):
    visible: int
    invisible: int  # in flight anywhere: ours, a stopped process's, or backing off


# The shard queue's messages, or None when they cannot be told.
BacklogProbe = Callable[[], Backlog | None]

_PROBE_INTERVAL_S = 1.0


class RecoveryGate:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        recovery_s: float,
        backlog: BacklogProbe | None,
    ) -> None:
        self._clock = clock
        self._started = clock()
        self._recovery_s = recovery_s
        self._backlog = backlog
        self._recovering = recovery_s > 0
        # The delivery mark taken right after the queue was seen empty.
        self._caught_up: int | None = None
        self._last_probe = -1e18

    @property
    def recovering(self) -> bool:
        return self._recovering

    def open(self, now: float, deliveries: DeliveryLog | None = None) -> bool:
        """True once windows may close (and from then on)."""
        if not self._recovering:
            return True
        elapsed = now - self._started
        if elapsed < self._recovery_s:
            return False
        if self._backlog is not None and elapsed < 4 * self._recovery_s:
            if self._caught_up is None:
                self._probe(now, deliveries)
                if self._caught_up is None:
                    return False
            if deliveries is not None and not deliveries.delivered_through(self._caught_up):
                return False
        elif self._backlog is not None:
            log.warning("queue never seen empty during recovery: closing windows anyway")
        self._recovering = False
        log.info("recovery over after %.1f s", elapsed)
        return True

    def _probe(self, now: float, deliveries: DeliveryLog | None) -> None:
        if now - self._last_probe < _PROBE_INTERVAL_S:
            return
        self._last_probe = now
        assert self._backlog is not None
        backlog = self._backlog()
        if backlog is None or backlog.visible > 0:
            return
        # Both read after the answer: a poll that took messages off the queue before
        # the probe looked had started by then (its number is within the mark), and
        # what we held then we still hold (nothing is acked while recovering).
        if deliveries is None:
            self._caught_up = 0
        elif backlog.invisible <= deliveries.in_flight():
            self._caught_up = deliveries.mark()


def queue_backlog(sqs: SQSClient, queue_url: str) -> BacklogProbe:
    """A probe of the visible messages of one queue (None when SQS cannot answer)."""

    def probe() -> Backlog | None:
        try:
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            return Backlog(
                int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            )
        except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
            log.warning("cannot read the queue backlog: %s", exc)
            return None

    return probe
