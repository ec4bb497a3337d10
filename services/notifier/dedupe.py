"""One burst, one notification: a durable ledger in S3 plus FIFO de-duplication.

Publishing a burst is: look up ``notifications/<location>/<burst_id>.json`` in the
archival bucket (present: it was sent, stop); send to the FIFO queue with
MessageDeduplicationId = burst id and MessageGroupId = location; then write the ledger
object with a conditional put (first writer wins). The burst id is a function of
(location, first reading) only, so redeliveries, restarts, replicas and replays all
produce the same id. SQS drops a repeat within its 5-minute de-duplication interval; the
ledger stops repeats after that. The one gap left: a crash between the send and the
ledger write, recovered more than 5 minutes later, can send twice (never zero times).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.store import Expect, ObjectStore, StoreConflict, StoreError
from services.notifier.bursts import Burst
from services.notifier.errors import PublishError
from services.notifier.message import encode_body, fit_message, group_id, location_slug

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class Published(StrEnum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"


class NotificationLedger:
    """The durable record of sent notifications (archival bucket)."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self._store = store
        self.prefix = prefix

    def key(self, location: str, burst_id: str) -> str:
        return f"{self.prefix}/{location_slug(location)}/{burst_id}.json"

    def uri(self, location: str, burst_id: str) -> str:
        return self._store.uri(self.key(location, burst_id))

    def sent(self, location: str, burst_id: str) -> bool:
        return self._store.exists(self.key(location, burst_id))

    def record(self, location: str, burst_id: str, body: bytes, metadata: dict[str, str]) -> None:
        # Losing the conditional put means another process recorded the same burst.
        try:
            self._store.put(
                self.key(location, burst_id), body, metadata=metadata, expect=Expect.ABSENT
            )
        except StoreConflict:
            return


class NotificationSender:
    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        ledger: NotificationLedger,
        *,
        max_body_bytes: int,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self.ledger = ledger
        self._max_body_bytes = max_body_bytes

    def publish(self, burst: Burst, body: dict[str, Any]) -> Published:
        burst_id = str(body["burst_id"])
        location = burst.location
        try:
            if self.ledger.sent(location, burst_id):
                return Published.ALREADY_SENT
            notified_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            attributes = {
                "burst-id": burst_id,
                "location": location,
                "anomaly-count": str(body["anomaly_count"]),
                "window-start": str(body["window"]["start"]),
                "window-end": str(body["window"]["end"]),
                "notified-at": notified_at,
            }
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=fit_message(body, self._max_body_bytes).decode("utf-8"),
                MessageGroupId=group_id(location),
                MessageDeduplicationId=burst_id,
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                },
            )
            # S3 metadata must be ASCII: the location goes in percent-encoded.
            metadata = {**attributes, "location": location_slug(location)}
            self.ledger.record(location, burst_id, encode_body(body), metadata)
        except (ClientError, BotoCoreError, StoreError) as exc:
            raise PublishError(burst_id, location, str(exc)) from exc
        return Published.SENT
