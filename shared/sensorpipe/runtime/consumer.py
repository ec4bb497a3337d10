"""The one consumer loop every service runs; each service supplies only its handler.

- A receiver thread long-polls (up to 10 messages, bounded by ``max_in_flight``) and
  hands batches to the main thread, so the next poll overlaps the current work.
- The main thread runs the handler and settles each message by its outcome: deletes
  in batches, retries by visibility back-off, rejects straight to the DLQ with the
  reason, or holds it for a later ack (the stateful stages do, until a checkpoint
  includes it). A retry of a message received ``max_receives`` times (the pipeline's
  ``queues.max_receive_count``; else the queue's RedrivePolicy, read at start-up) moves
  it to the DLQ itself, with "gave up after N receives: <last reason>", instead of
  leaving it to SQS's redrive, which gives none. Provisioning sets the RedrivePolicy well
  above it: receives lost in transit count too.
- A handler exception is a bug, not a retry: a transient AWS error (botocore's, or
  tenacity's RetryError around one) retries the batch with back-off; anything else
  re-runs the handler on each message alone, so the one that raises alone goes to the
  DLQ at once ("handler error: <type>: <message>", logged with its traceback) and its
  neighbours get their own outcomes.
- Every attribute value it writes goes through :func:`attribute_value` (SQS's
  character set, bounded length).
- A heartbeat thread keeps every in-flight message invisible while it is held.
- On stop (SIGTERM/SIGINT) it stops receiving, finishes the batch in hand, lets the
  handler flush, and hands every unsettled message back with visibility 0: nothing
  acknowledged is redone, nothing unacknowledged is lost. The stated time: it returns
  within ``runtime.shutdown_timeout_seconds`` after the batch in hand is done. Long
  polls last at most :data:`IDLE_POLL_CAP_S` seconds (and one second less than that
  budget), so an idle stop waits out a few seconds of poll, not the whole budget, and
  what that poll returns is handed back; should one still be open at the deadline it is
  abandoned, and what it returns is redelivered after one visibility timeout.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity import retry as retrying

from sensorpipe.config.pipeline import RuntimeSettings
from sensorpipe.envelope import ATTR_BATCH_ID
from sensorpipe.runtime import metrics
from sensorpipe.runtime.handler import BatchHandler
from sensorpipe.runtime.heartbeat import Heartbeat
from sensorpipe.runtime.logs import log_context
from sensorpipe.runtime.message import Ack, Hold, Message, Outcome, Reject, Retry
from sensorpipe.runtime.tracker import InFlight

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

_AWS_TRANSIENT = retry_if_exception_type((BotoCoreError, ClientError))
_MAX_ATTRIBUTES = 10
# An idle stop waits for the open poll to end: a few seconds, not the whole budget. The
# price is one empty ReceiveMessage per IDLE_POLL_CAP_S instead of per 20 s when idle.
IDLE_POLL_CAP_S = 3
MAX_ATTRIBUTE_CHARS = 1024
# What SQS refuses in a message attribute value: anything outside #x9 | #xA | #xD |
# #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (NUL and other controls, surrogates).
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def attribute_value(text: str, limit: int = MAX_ATTRIBUTE_CHARS) -> str:
    """A string SQS accepts as a message attribute value: characters outside its set
    become U+FFFD, at most ``limit`` characters (cut with "..."), never empty."""
    clean = _NOT_SQS_TEXT.sub("\ufffd", text)
    if len(clean) > limit:
        clean = clean[: limit - 3] + "..."
    return clean or "-"


def handler_error_reason(exc: BaseException) -> str:
    """The failure-reason of a message its handler raised on."""
    return attribute_value(f"handler error: {type(exc).__name__}: {exc}")


def _is_transient(exc: BaseException) -> bool:
    """A transient AWS error (retried with back-off), as opposed to a handler bug."""
    if isinstance(exc, RetryError):
        last = exc.last_attempt.exception() if exc.last_attempt.failed else None
        return last is not None and _is_transient(last)
    return isinstance(exc, (BotoCoreError, ClientError))


# Exponential from 0.2 s up to 5 s, plus jitter so replicas do not retry in step.
_BACK_OFF = wait_exponential(multiplier=0.2, max=5) + wait_random(0, 0.2)


class Consumer:
    """The receive-handle-settle loop over one queue.

    Parameters:
        sqs: the SQS client (``sensorpipe.aws.sqs_client``).
        queue_name: the queue to consume; its visibility timeout and RedrivePolicy are
            read at start-up.
        handler: the service's :class:`~sensorpipe.runtime.handler.BatchHandler` (its
            contract: one outcome per message; ``bind`` gives it this consumer as the
            :class:`~sensorpipe.runtime.handler.Acknowledger` of held messages).
        settings: the pipeline's ``runtime`` section (polls, in-flight bound,
            heartbeat, retry back-off, shutdown and stall bounds).
        service: the label of every metric and log line.
        dlq_name: where rejected and given-up messages go, at once, with their reason;
            None leaves them to the queue's RedrivePolicy.
        max_receives: the receive at which a retry becomes a dead letter with its
            reason (``queues.max_receive_count``); None: the RedrivePolicy's count.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_name: str,
        handler: BatchHandler,
        settings: RuntimeSettings,
        *,
        service: str,
        dlq_name: str | None = None,
        max_receives: int | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_name = queue_name
        self.handler = handler
        self.settings = settings
        self.service = service
        self.queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        self.dlq_url = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"] if dlq_name else None
        attrs = sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        )["Attributes"]
        # The receive at which a retry becomes a dead letter with its reason: the
        # pipeline's queues.max_receive_count, below the RedrivePolicy's backstop (else
        # the policy's count; None: no policy, retried for as long as it lives).
        self.max_receives = max_receives or _max_receive_count(attrs.get("RedrivePolicy"))
        # A handler that holds messages may lease them shorter than the queue does: a
        # crashed process's messages then come back within the lease, not the queue's
        # visibility timeout (the heartbeat renews the lease while they are held).
        self.visibility_s = handler.lease_s or int(attrs.get("VisibilityTimeout", 30))
        self.in_flight = InFlight()
        self.stop_event = threading.Event()
        self._inbox: queue.Queue[list[Message]] = queue.Queue(maxsize=1)
        self._receiver = threading.Thread(target=self._receive_loop, name="receiver", daemon=True)
        self._heartbeat = Heartbeat(
            sqs,
            self.queue_url,
            self.in_flight,
            visibility_s=self.visibility_s,
            fraction=settings.heartbeat_fraction,
            service=service,
            stalled=self.stalled,
        )
        self._stall_s = settings.stall_timeout_seconds
        self._busy_since: float | None = None  # when the handler call in progress began
        self._last_receive = time.monotonic()
        self._stopped = False
        self._poll_s = max(
            0,
            min(
                settings.wait_time_seconds,
                IDLE_POLL_CAP_S,
                math.ceil(settings.shutdown_timeout_seconds) - 1,
            ),
        )
        handler.bind(self)

    # -- public --------------------------------------------------------------------

    def run(self) -> None:
        """Process until ``stop()``; then flush, hand back and return."""
        self._heartbeat.start()
        self._receiver.start()
        try:
            while not self.stop_event.is_set():
                try:
                    batch = self._inbox.get(timeout=self.handler.tick_interval_s)
                except queue.Empty:
                    self._busy(self._tick)
                    continue
                self._busy(functools.partial(self._process, batch))
                self._busy(self._tick)
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stop_event.set()

    def stalled(self) -> bool:
        """Whether the handler call in progress has run past ``stall_timeout_seconds``."""
        since = self._busy_since
        return since is not None and time.monotonic() - since > self._stall_s

    def health(self) -> dict[str, Any]:
        since = self._busy_since
        if self.stop_event.is_set():
            status = "stopping"
        elif self.stalled() and since is not None:
            status = "stalled"
        else:
            status = "ok"
        return {
            "status": status,
            "busy_seconds": 0.0 if since is None else round(time.monotonic() - since, 1),
            "service": self.service,
            "queue": self.queue_name,
            "in_flight": len(self.in_flight),
            "seconds_since_receive": round(time.monotonic() - self._last_receive, 1),
        }

    # -- Acknowledger (used by handlers for held messages) ---------------------------

    def ack(self, messages: list[Message]) -> None:
        self._delete(messages)
        self._settled(messages, "ok")

    def release(self, messages: list[Message]) -> None:
        self._hand_back(messages)

    def retry(self, messages: list[Message], reason: str) -> None:
        """Back off, or move to the DLQ a message that used up its receives."""
        exhausted = [m for m in messages if self._exhausted(m)]
        for message in exhausted:
            self._dead_letter(
                message,
                f"gave up after {message.receive_count} receives: {reason}",
                outcome="gave_up",
            )
        self._back_off_all([m for m in messages if not self._exhausted(m)])

    def _exhausted(self, message: Message) -> bool:
        return (
            self.max_receives is not None
            and self.dlq_url is not None
            and message.receive_count >= self.max_receives
        )

    def _back_off_all(self, messages: list[Message]) -> None:
        # Settle first so the heartbeat cannot re-extend a message we just released.
        self._settled(messages, "retry")
        for message in messages:
            self._back_off(message)

    # -- receiving -------------------------------------------------------------------

    def _receive_loop(self) -> None:
        while not self.stop_event.is_set():
            limit = self.handler.max_in_flight or self.settings.max_in_flight
            room = limit - len(self.in_flight)
            if room <= 0:
                self.stop_event.wait(0.05)
                continue
            try:
                messages = self._receive(min(room, self.settings.max_messages))
            except (BotoCoreError, ClientError) as exc:
                metrics.AWS_ERRORS.labels(self.service, "ReceiveMessage").inc()
                log.warning("receive from %s failed, backing off: %s", self.queue_name, exc)
                self.stop_event.wait(2.0)
                continue
            if not messages:
                if self._poll_s == 0:  # short polling: do not spin on an empty queue
                    self.stop_event.wait(0.2)
                continue
            self.in_flight.add(messages, self.visibility_s)
            self._observe_receipt(messages)
            while True:
                if self.stop_event.is_set():
                    self._hand_back(messages)
                    return
                try:
                    self._inbox.put(messages, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def _receive(self, count: int) -> list[Message]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self._poll_s,
            VisibilityTimeout=self.visibility_s,
            MessageAttributeNames=["All"],
            AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        self._last_receive = time.monotonic()
        return [
            Message.from_sqs(dict(raw), self.queue_name) for raw in response.get("Messages", [])
        ]

    def _observe_receipt(self, messages: list[Message]) -> None:
        metrics.MESSAGES_RECEIVED.labels(self.service, self.queue_name).inc(len(messages))
        now_ms = time.time() * 1000
        lag = metrics.MESSAGE_LAG_SECONDS.labels(self.service, self.queue_name)
        for m in messages:
            if m.sent_timestamp_ms:
                lag.observe(max(0.0, (now_ms - m.sent_timestamp_ms) / 1000))
        metrics.IN_FLIGHT.labels(self.service).set(len(self.in_flight))

    # -- processing ------------------------------------------------------------------

    def _process(self, batch: list[Message]) -> None:
        started = time.perf_counter()
        batch_ids = [m.attributes.get(ATTR_BATCH_ID, "") for m in batch]
        with log_context(batch_ids=batch_ids):
            try:
                outcomes = self._handled(batch)
            except Exception as exc:  # a handler bug must not kill the loop or lose messages
                outcomes = self._after_failure(batch, exc)
        metrics.PROCESSING_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        with log_context(batch_ids=batch_ids):
            self._apply(batch, outcomes)

    def _handled(self, batch: list[Message]) -> list[Outcome]:
        """The handler's outcomes, checked: one known outcome per message (else raise)."""
        outcomes = self.handler.handle(batch)
        if len(outcomes) != len(batch):
            raise RuntimeError(
                f"handler returned {len(outcomes)} outcomes for {len(batch)} messages"
            )
        unknown = [o for o in outcomes if not isinstance(o, (Ack, Hold, Retry, Reject))]
        if unknown:
            raise TypeError(f"handler returned unknown outcome {unknown[0]!r}")
        return outcomes

    def _after_failure(self, batch: list[Message], exc: Exception) -> list[Outcome]:
        """Outcomes when ``handle(batch)`` raised: Retry for a transient AWS error; else
        find the culprit by handling each message alone (if the handler allows it)."""
        if _is_transient(exc):
            log.warning("handler hit a transient AWS error on %d message(s): %s", len(batch), exc)
            return [Retry(attribute_value(f"transient AWS error: {exc}"))] * len(batch)
        if len(batch) == 1:
            return [self._handler_bug(batch[0], exc)]
        if not self.handler.isolate_errors:
            # It may hold some of them already: it cannot be asked again one by one.
            log.error("handler raised on %d message(s); retrying them", len(batch), exc_info=exc)
            return [Retry(handler_error_reason(exc))] * len(batch)
        log.warning(
            "handler raised %s on %d message(s); handling each alone to find the culprit",
            type(exc).__name__,
            len(batch),
        )
        return [self._alone(message) for message in batch]

    def _alone(self, message: Message) -> Outcome:
        try:
            (outcome,) = self._handled([message])
        except Exception as exc:
            if _is_transient(exc):
                return Retry(attribute_value(f"transient AWS error: {exc}"))
            return self._handler_bug(message, exc)
        return outcome

    def _handler_bug(self, message: Message, exc: BaseException) -> Reject:
        log.error(
            "handler raised on message %s: it goes to the DLQ",
            message.message_id,
            exc_info=exc,
            extra={"batch_id": message.attributes.get(ATTR_BATCH_ID)},
        )
        return _HandlerError(handler_error_reason(exc))

    def _apply(self, batch: list[Message], outcomes: list[Outcome]) -> None:
        acks = [m for m, o in zip(batch, outcomes, strict=True) if isinstance(o, Ack)]
        if acks:
            self.ack(acks)
        for message, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Retry):
                log.warning(
                    "retrying message %s (receive %d): %s",
                    message.message_id,
                    message.receive_count,
                    outcome.reason,
                    extra={"batch_id": message.attributes.get(ATTR_BATCH_ID)},
                )
                self.retry([message], outcome.reason)
            elif isinstance(outcome, _HandlerError):
                self._dead_letter(message, outcome.reason, outcome="handler_error")
            elif isinstance(outcome, Reject):
                self._dead_letter(message, outcome.reason, outcome="rejected")

    def _busy(self, work: Callable[[], None]) -> None:
        self._busy_since = time.monotonic()
        try:
            work()
        finally:
            self._busy_since = None

    def _tick(self) -> None:
        try:
            self.handler.on_tick()
        except Exception:
            log.exception("handler tick failed")

    # -- settling ----------------------------------------------------------------------

    def _settled(self, messages: list[Message], outcome: str) -> None:
        self.in_flight.remove(messages)
        metrics.MESSAGES_PROCESSED.labels(self.service, self.queue_name, outcome).inc(len(messages))
        metrics.IN_FLIGHT.labels(self.service).set(len(self.in_flight))

    @retrying(retry=_AWS_TRANSIENT, wait=_BACK_OFF, stop=stop_after_attempt(5))
    def _delete_chunk(self, chunk: list[Message]) -> list[str]:
        response = self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": f"d{i}", "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)
            ],
        )
        return [f"{f['Id']}: {f.get('Code')}" for f in response.get("Failed", [])]

    def _delete(self, messages: list[Message]) -> None:
        for start in range(0, len(messages), 10):
            try:
                failed = self._delete_chunk(messages[start : start + 10])
            except RetryError as exc:
                # SQS stayed unreachable: the messages come back after their visibility
                # timeout and are redone; outputs are idempotent, so that is safe.
                metrics.AWS_ERRORS.labels(self.service, "DeleteMessageBatch").inc()
                log.warning("delete failed after retries: %s", exc.last_attempt.exception())
                continue
            if failed:
                # The receipt expired (the message will come back): idempotent outputs
                # make the redelivery harmless, but say so.
                log.warning("delete refused for %d message(s): %s", len(failed), failed[:3])

    def _back_off(self, message: Message) -> None:
        delay = min(
            self.settings.retry_max_seconds,
            self.settings.retry_base_seconds * 2 ** max(0, message.receive_count - 1),
        )
        self._change_visibility(message, delay)

    def _change_visibility(self, message: Message, seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except (BotoCoreError, ClientError) as exc:
            metrics.AWS_ERRORS.labels(self.service, "ChangeMessageVisibility").inc()
            log.warning("could not change visibility of %s: %s", message.message_id, exc)

    def _dead_letter(self, message: Message, reason: str, *, outcome: str) -> None:
        """Move a message to the DLQ now, with its reason, then delete it."""
        reason = attribute_value(reason)
        if self.dlq_url is None:
            # No DLQ known: let the queue's RedrivePolicy move it after maxReceiveCount.
            self._back_off_all([message])
            return
        attributes = dict(list(message.attributes.items())[: _MAX_ATTRIBUTES - 3])
        attributes.update(
            {
                "failure-reason": reason,
                "source-queue": self.queue_name,
                "failed-service": self.service,
            }
        )
        try:
            self.sqs.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=message.body or "(empty body)",
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": attribute_value(v)}
                    for k, v in attributes.items()
                },
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not move poison message to DLQ, retrying instead: %s", exc)
            self._back_off_all([message])
            return
        log.error(
            "moved message %s to the DLQ: %s",
            message.message_id,
            reason,
            extra={"batch_id": message.attributes.get(ATTR_BATCH_ID)},
        )
        self._delete([message])
        self._settled([message], outcome)

    def _hand_back(self, messages: list[Message]) -> None:
        if not messages:
            return
        self._settled(messages, "handed_back")
        for message in messages:
            self._change_visibility(message, 0)
        log.info("handed back %d unsettled message(s) for redelivery now", len(messages))

    # -- shutdown ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        # The budget starts once the batch in hand is done (that one always finishes).
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
        try:
            self.handler.on_shutdown()
        except Exception:
            log.exception("handler shutdown flush failed; unsettled messages are handed back")
        self._receiver.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._receiver.is_alive():
            log.warning("a long poll is still open at the shutdown deadline; abandoning it")
        # Stopped first: an extension racing the hand-back would hide a message we just
        # made visible for another visibility timeout.
        self._heartbeat.stop()
        while True:
            try:
                self._hand_back(self._inbox.get_nowait())
            except queue.Empty:
                break
        self._hand_back(self.in_flight.all())


@dataclass(frozen=True, slots=True)
class _HandlerError(Reject):
    """A Reject the consumer gave: the handler raised on this message alone."""


def _max_receive_count(redrive_policy: str | None) -> int | None:
    if not redrive_policy:
        return None
    try:
        count = json.loads(redrive_policy).get("maxReceiveCount")
        return int(count) if count is not None else None
    except (ValueError, TypeError, AttributeError):
        log.warning("unreadable RedrivePolicy %r: SQS's redrive alone applies", redrive_policy)
        return None
