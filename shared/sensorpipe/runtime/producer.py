"""Send envelopes to a queue: size-aware, batched ten to a call, retried.

Batches are split (deterministically) so every body stays under the queue's limit,
then packed into SendMessageBatch calls that stay under SQS's per-call payload limit.
Entries SQS refuses are retried with back-off (tenacity); what still fails raises
SendError so the caller does not acknowledge its input.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    RetryError,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from sensorpipe.envelope import Encoded, Envelope, encode_to_fit, encoded_size
from sensorpipe.runtime.errors import SendError
from sensorpipe.runtime.metrics import MESSAGES_SENT

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_MAX_ENTRIES = 10


class _PartialFailure(Exception):
    def __init__(self, remaining: list[tuple[str, Encoded, dict[str, str]]], reasons: list[str]):
        self.remaining = remaining
        self.reasons = reasons


@dataclass
class EnvelopeProducer:
    sqs: SQSClient
    queue_url: str
    queue_name: str
    max_body_bytes: int = 256 * 1024
    compress: bool = True
    columnar: bool = False  # Arrow bodies (sensorpipe.envelope.encode)
    service: str = "unknown"
    fifo: bool = False

    def send(self, envelopes: list[Envelope]) -> list[Encoded]:
        """Encode, split and send every envelope; returns what was sent."""
        encoded = list(
            itertools.chain.from_iterable(
                encode_to_fit(
                    e,
                    max_bytes=self.max_body_bytes,
                    compress=self.compress,
                    columnar=self.columnar,
                )
                for e in envelopes
            )
        )
        self.send_encoded(encoded)
        return encoded

    def send_encoded(
        self, encoded: list[Encoded], fifo_ids: list[dict[str, str]] | None = None
    ) -> None:
        entries = [
            (f"m{i}", item, (fifo_ids[i] if fifo_ids else {})) for i, item in enumerate(encoded)
        ]
        for chunk in _chunks(entries, self.max_body_bytes):
            try:
                self._send_chunk(chunk)
            except RetryError as exc:
                failure = exc.last_attempt.exception()
                reasons = (
                    failure.reasons if isinstance(failure, _PartialFailure) else [str(failure)]
                )
                raise SendError(self.queue_name, reasons) from failure
        MESSAGES_SENT.labels(self.service, self.queue_name).inc(len(encoded))

    @retry(
        retry=retry_if_exception_type((_PartialFailure, BotoCoreError, ClientError)),
        wait=wait_exponential(multiplier=0.2, max=5) + wait_random(0, 0.2),
        stop=stop_after_attempt(6),
        reraise=False,
    )
    def _send_chunk(self, chunk: list[tuple[str, Encoded, dict[str, str]]]) -> None:
        # On a partial failure only the refused entries are retried: tenacity calls us
        # again with the same list object, which we shrink in place.
        response = self.sqs.send_message_batch(
            QueueUrl=self.queue_url, Entries=[self._entry(*item) for item in chunk]
        )
        failed = {f["Id"]: f.get("Message", f.get("Code", "")) for f in response.get("Failed", [])}
        if failed:
            remaining = [item for item in chunk if item[0] in failed]
            chunk[:] = remaining
            raise _PartialFailure(remaining, [f"{k}: {v}" for k, v in failed.items()])

    def _entry(self, entry_id: str, item: Encoded, fifo_ids: dict[str, str]) -> Any:
        entry: dict[str, Any] = {
            "Id": entry_id,
            "MessageBody": item.body,
            "MessageAttributes": {
                k: {"DataType": "String", "StringValue": v} for k, v in item.attributes.items()
            },
        }
        if self.fifo:
            entry["MessageGroupId"] = fifo_ids.get("group", "default")
            entry["MessageDeduplicationId"] = fifo_ids.get("dedup", item.batch_id)[:128]
        return entry


def _chunks(
    entries: list[tuple[str, Encoded, dict[str, str]]], max_call_bytes: int
) -> list[list[tuple[str, Encoded, dict[str, str]]]]:
    """Group entries ten at a time without exceeding the per-call payload limit."""
    chunks: list[list[tuple[str, Encoded, dict[str, str]]]] = []
    current: list[tuple[str, Encoded, dict[str, str]]] = []
    size = 0
    for entry in entries:
        entry_size = encoded_size(entry[1])
        if current and (len(current) == _MAX_ENTRIES or size + entry_size > max_call_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks
