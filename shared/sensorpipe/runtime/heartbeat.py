"""Keeps in-flight messages invisible while they are being worked on.

A background thread extends the visibility of every message whose remaining time drops
below (1 - fraction) of the queue's visibility timeout, ten per
ChangeMessageVisibilityBatch call, unless the consumer says it is stalled (a handler
call that never returns must not keep its messages leased forever).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.runtime.message import Message
from sensorpipe.runtime.metrics import AWS_ERRORS, VISIBILITY_EXTENSIONS
from sensorpipe.runtime.tracker import InFlight

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        in_flight: InFlight,
        *,
        visibility_s: int,
        fraction: float,
        service: str,
        stalled: Callable[[], bool] = lambda: False,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._in_flight = in_flight
        self._visibility_s = visibility_s
        self._threshold_s = visibility_s * (1 - fraction)
        self._interval_s = max(0.2, min(1.0, visibility_s / 5))
        self._service = service
        self._stalled = stalled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            if self._stalled():
                continue
            due = self._in_flight.due(self._threshold_s)
            for start in range(0, len(due), 10):
                self._extend(due[start : start + 10])

    def _extend(self, messages: list[Message]) -> None:
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {
                "Id": f"h{i}",
                "ReceiptHandle": m.receipt_handle,
                "VisibilityTimeout": self._visibility_s,
            }
            for i, m in enumerate(messages)
        ]
        try:
            response = self._sqs.change_message_visibility_batch(
                QueueUrl=self._queue_url, Entries=entries
            )
        except (BotoCoreError, ClientError) as exc:
            AWS_ERRORS.labels(self._service, "ChangeMessageVisibilityBatch").inc()
            log.warning("visibility heartbeat failed: %s", exc)
            return
        failed = {f["Id"] for f in response.get("Failed", [])}
        ok = [m for i, m in enumerate(messages) if f"h{i}" not in failed]
        self._in_flight.extended(ok, self._visibility_s)
        VISIBILITY_EXTENSIONS.labels(self._service).inc(len(ok))
        if failed:
            log.warning("visibility heartbeat refused for %d message(s)", len(failed))
