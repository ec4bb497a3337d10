"""When may windows start closing after a (re)start?

Messages a crashed or stopped process held come back: every one is visible again within
one visibility timeout, but they are received only as fast as this process gets through
its queue, behind newer messages. A window written before they are folded would miss
their readings (and first-writer-wins makes that final), so after a start no window
closes until:

1. ``recovery_s`` has passed (every held message is visible again), and
2. the shard queue was seen empty of visible messages (everything, redeliveries
   included, has been received), and
3. a batch taken after that check has been folded, or the loop has been idle for two
   ticks since (nothing received is still waiting to be folded).

If the queue is never seen empty (input faster than this process), closing starts
anyway after four times ``recovery_s``: late readings may then be classified by a
younger watermark, but nothing is lost or counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

# Visible messages in the shard queue, or None when it cannot be told.
BacklogProbe = Callable[[], int | None]

_PROBE_INTERVAL_S = 1.0


class RecoveryGate:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        recovery_s: float,
        tick_s: float,
        backlog: BacklogProbe | None,
    ) -> None:
        self._clock = clock
        self._started = clock()
        self._recovery_s = recovery_s
        self._tick_s = tick_s
        self._backlog = backlog
        self._recovering = recovery_s > 0
        self._caught_up_at: float | None = None
        self._last_probe = -1e18
        self._last_handle = -1e18

    @property
    def recovering(self) -> bool:
        return self._recovering

    def handle_started(self, now: float) -> None:
        self._last_handle = now

    def open(self, now: float) -> bool:
        """True once windows may close (and from then on)."""
        if not self._recovering:
            return True
        elapsed = now - self._started
        if elapsed < self._recovery_s:
            return False
        if self._backlog is not None and elapsed < 4 * self._recovery_s:
            if self._caught_up_at is None:
                self._probe(now)
                return False
            folded_since = self._last_handle > self._caught_up_at
            idle_since = now - max(self._caught_up_at, self._last_handle) >= 2 * self._tick_s
            if not (folded_since or idle_since):
                return False
        elif self._backlog is not None:
            log.warning("queue never seen empty during recovery: closing windows anyway")
        self._recovering = False
        log.info("recovery over after %.1f s", elapsed)
        return True

    def _probe(self, now: float) -> None:
        if now - self._last_probe < _PROBE_INTERVAL_S:
            return
        self._last_probe = now
        assert self._backlog is not None
        if self._backlog() == 0:
            # The probe's own time: whatever was received before it is folded by the
            # next batch (or is already).
            self._caught_up_at = self._clock()


def queue_backlog(sqs: SQSClient, queue_url: str) -> BacklogProbe:
    """A probe of the visible messages of one queue (None when SQS cannot answer)."""

    def probe() -> int | None:
        try:
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
        except (BotoCoreError, ClientError) as exc:
            log.warning("cannot read the queue backlog: %s", exc)
            return None
        return int(attributes.get("ApproximateNumberOfMessages", -1))

    return probe
