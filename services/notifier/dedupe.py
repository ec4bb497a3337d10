"""One burst, one notification: a durable ledger in S3 plus FIFO de-duplication.

Publishing a burst is: look up ``notifications/<location>/<burst_id>.json`` in the
archival bucket (present: it was sent, stop); send to the FIFO queue with
MessageDeduplicationId = burst id and MessageGroupId = location; then write the ledger
object with a conditional put (first writer wins). The burst id is a function of
(location, first reading) only, so redeliveries, restarts, replicas and replays all
produce the same id. SQS drops a repeat within its 5-minute de-duplication interval; the
ledger stops repeats after that. The one gap left: a crash between the send and the
ledger write, recovered more than 5 minutes later, can send twice (never zero times).

Each burst is sent on its own, and a burst SQS refuses for what it holds (a sender fault
such as ``InvalidMessageContents`` or ``InvalidParameterValue``: retrying cannot help)
raises :class:`UnsendableError`, which the stage records in the error bucket and goes on
from; it never takes the other bursts of the commit down, and it is never acknowledged
silently. Any other failure (throttling, 5xx, the network) is :class:`PublishError`: the
commit fails and is retried, nothing acknowledged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from sensorpipe.store import Expect, ObjectStore, StoreConflict, StoreError
from services.notifier.bursts import Burst
from services.notifier.errors import PublishError, UnsendableError
from services.notifier.message import (
    attributes_size,
    encode_body,
    fit_message,
    group_id,
    location_slug,
    sqs_attributes,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class Published(StrEnum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"
    UNSENDABLE = "unsendable"  # refused by SQS for its content: in the error bucket


# SQS error codes that say the message itself is refused (a retry gets the same answer).
_REFUSED = frozenset(
    {
        "InvalidMessageContents",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidAttributeName",
        "InvalidAttributeValue",
        "MessageTooLong",
        "InvalidParameterCombination",
    }
)


def _refusal(exc: Exception) -> str | None:
    """Why SQS (or botocore, before sending) refused the message for its content; None
    for a failure a retry may cure."""
    if isinstance(exc, ParamValidationError | UnicodeError):
        return str(exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        if error.get("Code") in _REFUSED:
            return f"{error.get('Code')}: {error.get('Message')}"
    return None


def _metadata(values: dict[str, str]) -> dict[str, str]:
    """S3 user metadata must be printable ASCII: other characters percent-encoded."""
    return {k: quote(v, safe=" -_.:+%") for k, v in values.items()}


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
            sent = sqs_attributes(attributes)
            room = self._max_body_bytes - attributes_size(sent)
            self._send(burst_id, location, fit_message(body, room).decode("utf-8"), sent)
            # S3 metadata must be ASCII: the location goes in percent-encoded.
            metadata = _metadata({**attributes, "location": location_slug(location)})
            self.ledger.record(location, burst_id, encode_body(body), metadata)
        except (ClientError, BotoCoreError, StoreError) as exc:
            raise PublishError(burst_id, location, str(exc)) from exc
        return Published.SENT

    def _send(
        self, burst_id: str, location: str, body: str, attributes: dict[str, dict[str, str]]
    ) -> None:
        try:
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body,
                MessageGroupId=group_id(location),
                MessageDeduplicationId=burst_id,
                MessageAttributes=attributes,  # type: ignore[arg-type]
            )
        except (ClientError, BotoCoreError, UnicodeError) as exc:
            refused = _refusal(exc)
            if refused is None:
                raise
            raise UnsendableError(burst_id, location, refused) from exc
