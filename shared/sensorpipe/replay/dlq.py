"""Filtered, rate-limited redrive from a dead-letter queue back to its source queue.

SQS's own StartMessageMoveTask moves everything; this moves only the messages whose
``failure-reason`` or batch id match, at a chosen rate. A message is deleted from the
DLQ only after SQS accepted the copy, so a crash between the two leaves a duplicate
(harmless: outputs are idempotent), never a loss. Messages that do not match are held
invisible while the scan runs (so the scan ends) and released at the end.

FIFO DLQs: SQS delivers a message group in order and holds back the rest of a group
while one of its messages is in flight, so a scan sees a group only up to its first
message that stays behind; run again after moving (or with another filter) for more.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.config.pipeline import PipelineConfig, QueueSettings
from sensorpipe.envelope import ATTR_BATCH_ID
from sensorpipe.replay.errors import (
    InvalidArgumentError,
    ReplaySendError,
    UnknownQueueError,
    aws_failure,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# Attributes the runtime adds when it rejects a message to the DLQ (consumer._reject);
# they describe the failure, not the message, so a replayed copy does not carry them.
ATTR_FAILURE_REASON = "failure-reason"
FAILURE_ATTRIBUTES = frozenset({ATTR_FAILURE_REASON, "source-queue", "failed-service"})
NO_REASON = "(none: moved by the redrive policy after maxReceiveCount)"
_REASON_WIDTH = 100
_BATCH = 10


def resolve_queue(config: PipelineConfig, name: str) -> str:
    """The full name of a pipeline queue given as full name or stage (``ingest``)."""
    q = config.queues
    known = [*q.consumer_queues(), q.notifications]
    for candidate in (name, q.name(name), q.name(name) + ".fifo"):
        if candidate in known:
            return candidate
    if name.removesuffix(".fifo").endswith("-dlq"):
        raise UnknownQueueError(
            name, valid=known, hint="name the source queue; its DLQ is found from it"
        )
    raise UnknownQueueError(name, valid=known)


def parse_rate(text: str) -> float:
    """``--rate``: messages per second, written ``N/s`` or ``N``."""
    number = text.strip().removesuffix("/s")
    try:
        rate = float(number)
    except ValueError:
        raise InvalidArgumentError(
            "--rate", text, "not a number of messages per second", hint="write it like 5/s or 0.5/s"
        ) from None
    if not rate > 0 or rate == float("inf"):
        raise InvalidArgumentError("--rate", text, "must be a positive finite rate")
    return rate


class Pacer:
    """Spaces sends so that on average no more than ``rate`` messages leave per second."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    @property
    def batch_size(self) -> int:
        """Messages per send call: small batches at low rates keep the flow smooth."""
        if self.rate is None:
            return _BATCH
        return max(1, min(_BATCH, int(self.rate)))

    def acquire(self, count: int) -> None:
        if self.rate is None:
            return
        now = self._clock()
        start = max(now, self._next)
        if start > now:
            self._sleep(start - now)
        self._next = start + count / self.rate


@dataclass(frozen=True, slots=True)
class DlqSelection:
    """Which DLQ messages move. No criterion means every message."""

    reason_contains: str | None = None
    batch_id: str | None = None

    def matches(self, attributes: dict[str, str]) -> bool:
        if self.reason_contains is not None:
            reason = attributes.get(ATTR_FAILURE_REASON, "")
            if self.reason_contains.casefold() not in reason.casefold():
                return False
        return self.batch_id is None or attributes.get(ATTR_BATCH_ID) == self.batch_id


@dataclass
class DlqReplayResult:
    queue: str
    dlq: str
    dry_run: bool
    scanned: int = 0
    moved: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    kept_reasons: Counter[str] = field(default_factory=Counter)
    delete_failures: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.scanned - self.moved

    def lines(self) -> list[str]:
        verb = "would move" if self.dry_run else "moved"
        out = [
            f"{self.dlq}: scanned {self.scanned} message(s); {verb} {self.moved} to "
            f"{self.queue}; {self.kept} stay in the DLQ"
            + ("  (dry run: nothing was changed)" if self.dry_run else "")
        ]
        for title, counts in (
            (f"{verb}, by failure reason:", self.reasons),
            ("staying, by failure reason:", self.kept_reasons),
        ):
            if counts:
                out.append(title)
                out.extend(f"  {n:>6}  {reason}" for reason, n in counts.most_common())
        for failure in self.delete_failures:
            out.append(f"warning: {failure} (a copy was sent; it will replay again next time)")
        return out


def _reason_label(attributes: dict[str, str]) -> str:
    reason = attributes.get(ATTR_FAILURE_REASON) or NO_REASON
    return reason if len(reason) <= _REASON_WIDTH else reason[: _REASON_WIDTH - 1] + "…"


def _string_attributes(message: MessageTypeDef) -> dict[str, str]:
    return {
        name: value.get("StringValue", "")
        for name, value in message.get("MessageAttributes", {}).items()
    }


def replay_attributes(message: MessageTypeDef) -> dict[str, Any]:
    """The message's attributes as they were before it failed (failure-* removed)."""
    out: dict[str, Any] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        if name in FAILURE_ATTRIBUTES:
            continue
        item: dict[str, Any] = {"DataType": value["DataType"]}
        if "StringValue" in value:
            item["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["BinaryValue"] = value["BinaryValue"]
        out[name] = item
    return out


class DlqReplayer:
    """One scan of a DLQ: select, move (or count), release the rest."""

    def __init__(
        self,
        sqs: SQSClient,
        *,
        queue: str,
        selection: DlqSelection,
        max_messages: int | None = None,
        pacer: Pacer | None = None,
        dry_run: bool = False,
        hold_seconds: int = 300,
        poll_wait_seconds: int = 1,
    ) -> None:
        self._sqs = sqs
        self.queue = queue
        self.dlq = QueueSettings.dlq_name(queue)
        self._fifo = queue.endswith(".fifo")
        self._selection = selection
        self._max = max_messages
        self._pacer = pacer or Pacer(None)
        self._dry_run = dry_run
        self._hold = hold_seconds
        self._wait = poll_wait_seconds
        self._queue_url = self._url(queue)
        self._dlq_url = self._url(self.dlq)
        # message id -> latest receipt handle of messages we hold and must release.
        self._held: dict[str, str] = {}
        self._send_failures: list[str] = []

    def _url(self, name: str) -> str:
        try:
            return self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except (BotoCoreError, ClientError) as exc:
            raise aws_failure("GetQueueUrl", "queue", name, exc) from exc

    def run(self) -> DlqReplayResult:
        result = DlqReplayResult(self.queue, self.dlq, self._dry_run)
        seen: set[str] = set()
        try:
            while self._max is None or result.moved < self._max:
                batch = self._receive()
                if not batch:
                    break
                fresh = [m for m in batch if m["MessageId"] not in seen]
                for message in batch:
                    if message["MessageId"] in seen:
                        # Our hold ran out and it came round again: keep holding it.
                        self._held[message["MessageId"]] = message["ReceiptHandle"]
                if not fresh:
                    break  # every visible message has been looked at
                seen.update(m["MessageId"] for m in fresh)
                self._select(fresh, result)
        finally:
            self._release()
        if self._send_failures:
            raise ReplaySendError(self.queue, self._send_failures, summary=result.lines())
        return result

    def _select(self, fresh: list[MessageTypeDef], result: DlqReplayResult) -> None:
        chosen: list[MessageTypeDef] = []
        for message in fresh:
            result.scanned += 1
            attributes = _string_attributes(message)
            room = self._max is None or result.moved + len(chosen) < self._max
            # Every message starts held: only a confirmed move takes it off the list,
            # so whatever goes wrong, the rest is released at the end of the scan.
            self._held[message["MessageId"]] = message["ReceiptHandle"]
            if room and self._selection.matches(attributes):
                chosen.append(message)
            else:
                result.kept_reasons[_reason_label(attributes)] += 1
        if self._dry_run:
            result.moved += len(chosen)
            result.reasons.update(_reason_label(_string_attributes(m)) for m in chosen)
            return
        size = self._pacer.batch_size
        for start in range(0, len(chosen), size):
            result.moved += self._move(chosen[start : start + size], result)

    def _receive(self) -> list[MessageTypeDef]:
        try:
            response = self._sqs.receive_message(
                QueueUrl=self._dlq_url,
                MaxNumberOfMessages=_BATCH,
                WaitTimeSeconds=self._wait,
                VisibilityTimeout=self._hold,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["MessageGroupId"],
            )
        except (BotoCoreError, ClientError) as exc:
            raise aws_failure("ReceiveMessage", "queue", self.dlq, exc) from exc
        return list(response.get("Messages", []))

    def _move(self, chunk: list[MessageTypeDef], result: DlqReplayResult) -> int:
        """Send the chunk to the source queue; delete from the DLQ what was accepted."""
        self._pacer.acquire(len(chunk))
        entries = [self._entry(str(i), m) for i, m in enumerate(chunk)]
        try:
            response = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            raise aws_failure("SendMessageBatch", "queue", self.queue, exc) from exc
        refused = {
            f["Id"]: f.get("Message") or f.get("Code", "") for f in response.get("Failed", [])
        }
        sent: list[MessageTypeDef] = []
        for index, message in enumerate(chunk):
            if str(index) in refused:
                self._send_failures.append(f"{message['MessageId']}: {refused[str(index)]}")
                result.kept_reasons[_reason_label(_string_attributes(message))] += 1
            else:
                sent.append(message)
                self._held.pop(message["MessageId"], None)
                result.reasons[_reason_label(_string_attributes(message))] += 1
        self._delete(sent, result)
        return len(sent)

    def _entry(self, entry_id: str, message: MessageTypeDef) -> Any:
        entry: dict[str, Any] = {
            "Id": entry_id,
            "MessageBody": message["Body"],
            "MessageAttributes": replay_attributes(message),
        }
        if self._fifo:
            group = message.get("Attributes", {}).get("MessageGroupId", "default")
            entry["MessageGroupId"] = group
            # Stable per DLQ message: a copy resent after a failed delete is deduplicated.
            entry["MessageDeduplicationId"] = f"replay-{message['MessageId']}"[:128]
        return entry

    def _delete(self, messages: list[MessageTypeDef], result: DlqReplayResult) -> None:
        if not messages:
            return
        entries: list[Any] = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        try:
            response = self._sqs.delete_message_batch(QueueUrl=self._dlq_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            result.delete_failures.extend(
                f"could not delete {m['MessageId']} from {self.dlq}: {exc}" for m in messages
            )
            return
        for failure in response.get("Failed", []):
            message = messages[int(failure["Id"])]
            result.delete_failures.append(
                f"could not delete {message['MessageId']} from {self.dlq}: "
                f"{failure.get('Message') or failure.get('Code')}"
            )

    def _release(self) -> None:
        """Make every held message visible again right away."""
        handles = list(self._held.values())
        self._held.clear()
        for start in range(0, len(handles), _BATCH):
            entries: list[Any] = [
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(handles[start : start + _BATCH])
            ]
            try:
                self._sqs.change_message_visibility_batch(QueueUrl=self._dlq_url, Entries=entries)
            except (BotoCoreError, ClientError):
                # They become visible by themselves when the hold expires.
                continue


def replay_dlq(
    sqs: SQSClient,
    config: PipelineConfig,
    queue: str,
    *,
    selection: DlqSelection,
    max_messages: int | None = None,
    rate: float | None = None,
    dry_run: bool = False,
    poll_wait_seconds: int = 1,
) -> DlqReplayResult:
    """Replay the DLQ of ``queue`` (full name or stage) into ``queue``."""
    if max_messages is not None and max_messages < 1:
        raise InvalidArgumentError("--max", str(max_messages), "must be at least 1")
    replayer = DlqReplayer(
        sqs,
        queue=resolve_queue(config, queue),
        selection=selection,
        max_messages=max_messages,
        pacer=Pacer(rate),
        dry_run=dry_run,
        hold_seconds=max(60, config.queues.visibility_timeout_seconds),
        poll_wait_seconds=poll_wait_seconds,
    )
    return replayer.run()
