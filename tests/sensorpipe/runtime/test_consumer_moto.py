"""The consumer loop's settling logic, on moto's in-memory SQS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from tenacity import RetryError, retry_if_exception_type, stop_after_attempt
from tenacity import retry as retrying

from sensorpipe.runtime import ACK, HOLD, Consumer, Message, Outcome, Reject, Retry
from sensorpipe.runtime.consumer import IDLE_POLL_CAP_S, MAX_ATTRIBUTE_CHARS, attribute_value
from tests.sensorpipe.runtime.conftest import (
    WORK_DLQ,
    WORK_QUEUE,
    LoopRunner,
    ScriptedHandler,
    metric,
    queue_counts,
    send_batches,
    service_name,
    unit_settings,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

RunLoop = Callable[[Consumer], LoopRunner]
PROCESSED = "sensorpipe_messages_processed_total"


def _spy(monkeypatch: pytest.MonkeyPatch, sqs: SQSClient, method: str) -> list[dict[str, Any]]:
    """Record the keyword arguments of every call to ``sqs.<method>`` (still performed)."""
    calls: list[dict[str, Any]] = []
    real = getattr(sqs, method)

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(sqs, method, spy)
    return calls


def _consumer(sqs: SQSClient, handler: ScriptedHandler, **settings: Any) -> Consumer:
    return Consumer(
        sqs,
        WORK_QUEUE,
        handler,
        unit_settings(**settings),
        service=service_name(),
        dlq_name=WORK_DLQ,
    )


def test_acked_messages_are_deleted_in_batches_of_at_most_ten(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    deletes = _spy(monkeypatch, moto_sqs, "delete_message_batch")
    ids = [f"b{i}" for i in range(23)]
    send_batches(moto_sqs, work_queue, ids)
    handler = ScriptedHandler()
    consumer = _consumer(moto_sqs, handler)
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="ok") == 23
    )
    runner.stop()

    assert sorted(handler.seen_batch_ids()) == sorted(ids)
    assert all(1 <= len(call["Entries"]) <= 10 for call in deletes)
    assert sum(len(call["Entries"]) for call in deletes) == 23
    assert queue_counts(moto_sqs, work_queue) == (0, 0)
    assert (
        metric("sensorpipe_messages_received_total", service=consumer.service, queue=WORK_QUEUE)
        == 23
    )
    assert metric("sensorpipe_messages_in_flight", service=consumer.service) == 0


def test_retry_backs_off_by_receive_count_and_keeps_the_message(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    visibility = _spy(monkeypatch, moto_sqs, "change_message_visibility")
    send_batches(moto_sqs, work_queue, ["good-1", "flaky", "good-2"])
    handler = ScriptedHandler(
        lambda m: Retry("downstream busy") if m.attributes["batch-id"] == "flaky" else HOLD
    )
    consumer = _consumer(moto_sqs, handler, retry_base_seconds=5, retry_max_seconds=300)
    runner = run_loop(consumer)
    runner.wait_for(lambda: len(handler.seen) == 3)
    runner.wait_for(
        lambda: metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="retry") == 1
    )
    # First receive: base * 2**0 seconds.
    assert [c["VisibilityTimeout"] for c in visibility] == [5]
    flaky = next(m for m in handler.seen if m.attributes["batch-id"] == "flaky")
    assert visibility[0]["ReceiptHandle"] == flaky.receipt_handle

    # The back-off doubles with the receive count, up to retry_max_seconds (on a queue
    # whose RedrivePolicy allows that many receives).
    consumer.max_receives = 100
    visibility.clear()
    later = [
        Message(f"id{n}", flaky.receipt_handle, flaky.body, flaky.attributes, receive_count=n)
        for n in (2, 3, 4, 12)
    ]
    consumer.retry(later, "still busy")
    assert [c["VisibilityTimeout"] for c in visibility] == [10, 20, 40, 300]
    held = [m for m in handler.seen if m.attributes["batch-id"] != "flaky"]
    consumer.ack(held)
    runner.stop()
    # The retried message is still in the queue (invisible), the others are gone.
    assert sum(queue_counts(moto_sqs, work_queue)) == 1


def test_reject_sends_to_the_dlq_with_the_reason_and_deletes(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop
) -> None:
    send_batches(moto_sqs, work_queue, ["fine", "poison"])
    handler = ScriptedHandler(
        lambda m: Reject("records is not a list") if m.attributes["batch-id"] == "poison" else HOLD
    )
    consumer = _consumer(moto_sqs, handler)
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: (
            metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="rejected") == 1
        )
    )
    poison = next(m for m in handler.seen if m.attributes["batch-id"] == "poison")
    consumer.ack([m for m in handler.seen if m is not poison])
    runner.stop()

    dlq_url = moto_sqs.get_queue_url(QueueName=WORK_DLQ)["QueueUrl"]
    moved = moto_sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert len(moved) == 1
    attributes = {k: v["StringValue"] for k, v in moved[0]["MessageAttributes"].items()}
    assert attributes["failure-reason"] == "records is not a list"
    assert attributes["source-queue"] == WORK_QUEUE
    assert attributes["failed-service"] == consumer.service
    assert attributes["batch-id"] == "poison"
    assert moved[0]["Body"] == poison.body
    assert queue_counts(moto_sqs, work_queue) == (0, 0)


def test_hold_keeps_the_message_in_flight_until_acknowledged(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop
) -> None:
    send_batches(moto_sqs, work_queue, ["w1", "w2"])
    handler = ScriptedHandler(lambda m: HOLD)
    consumer = _consumer(moto_sqs, handler)
    runner = run_loop(consumer)
    runner.wait_for(lambda: len(handler.seen) == 2)
    assert consumer.health()["in_flight"] == 2
    assert queue_counts(moto_sqs, work_queue) == (0, 2)

    assert handler.acknowledger is consumer
    handler.acknowledger.ack(handler.seen[:1])
    assert consumer.health()["in_flight"] == 1
    handler.acknowledger.ack(handler.seen[1:])
    assert consumer.health()["in_flight"] == 0
    assert queue_counts(moto_sqs, work_queue) == (0, 0)
    runner.stop()
    assert metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="ok") == 2


def _dead_letters(sqs: SQSClient) -> list[dict[str, Any]]:
    """Every message of the DLQ: attributes, body and how often the DLQ gave it out."""
    dlq_url = sqs.get_queue_url(QueueName=WORK_DLQ)["QueueUrl"]
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=60,
        ).get("Messages", [])
        if not got:
            return out
        out += [
            {
                **{k: v["StringValue"] for k, v in m["MessageAttributes"].items()},
                "body": m["Body"],
            }
            for m in got
        ]


class PoisonRaises(ScriptedHandler):
    """Raises whenever the batch holds the poison message; acks everything else."""

    def handle(self, messages: list[Message]) -> list[Any]:
        super().handle(messages)
        if any(m.attributes["batch-id"] == "poison" for m in messages):
            raise ValueError("row 7 has no sensor_id")
        return [ACK] * len(messages)


def test_one_raising_message_among_ten_goes_to_the_dlq_alone_with_the_reason(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop
) -> None:
    ids = [f"n{i}" for i in range(9)] + ["poison"]
    send_batches(moto_sqs, work_queue, ids)
    handler = PoisonRaises()
    consumer = _consumer(moto_sqs, handler)
    runner = run_loop(consumer)
    settled = ("ok", "handler_error", "retry", "rejected")
    runner.wait_for(
        lambda: (
            sum(
                metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome=o)
                for o in settled
            )
            == 10
        )
    )
    assert runner.thread.is_alive()
    runner.stop()
    count = {
        o: metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome=o) for o in settled
    }
    assert count == {"ok": 9, "handler_error": 1, "retry": 0, "rejected": 0}
    # Each message was received once: the culprit was found without a redelivery.
    received = "sensorpipe_messages_received_total"
    assert metric(received, service=consumer.service, queue=WORK_QUEUE) == 10
    (dead,) = _dead_letters(moto_sqs)
    assert dead["batch-id"] == "poison"
    assert dead["failure-reason"] == "handler error: ValueError: row 7 has no sensor_id"
    assert dead["failed-service"] == consumer.service
    assert queue_counts(moto_sqs, work_queue) == (0, 0)


def test_a_transient_aws_error_retries_the_batch_with_back_off_not_the_dlq(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    visibility = _spy(monkeypatch, moto_sqs, "change_message_visibility")
    send_batches(moto_sqs, work_queue, ["x1", "x2", "x3"])
    throttled = ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "PutObject")
    handler = ScriptedHandler(raise_error=throttled)
    consumer = _consumer(moto_sqs, handler, retry_base_seconds=7)
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="retry") == 3
    )
    assert consumer.health()["status"] == "ok"
    runner.stop()
    assert sorted(c["VisibilityTimeout"] for c in visibility) == [7, 7, 7]
    assert len(handler.seen) == 3  # no one-by-one re-runs for a transient error
    assert sum(queue_counts(moto_sqs, work_queue)) == 3  # nothing deleted, nothing lost
    assert _dead_letters(moto_sqs) == []


def test_tenacity_s_retry_error_around_an_aws_error_is_transient_too(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop
) -> None:
    @retrying(stop=stop_after_attempt(2), retry=retry_if_exception_type(ClientError))
    def gives_up() -> None:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "PutObject")

    try:
        gives_up()
    except RetryError as exc:
        error = exc
    send_batches(moto_sqs, work_queue, ["r1", "r2"])
    consumer = _consumer(moto_sqs, ScriptedHandler(raise_error=error))
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="retry") == 2
    )
    runner.stop()
    assert _dead_letters(moto_sqs) == []


def test_wrong_number_of_outcomes_is_a_handler_error(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop
) -> None:
    send_batches(moto_sqs, work_queue, ["y1", "y2"])

    class ShortHandler(ScriptedHandler):
        def handle(self, messages: list[Message]) -> list[Any]:
            super().handle(messages)
            return []

    consumer = _consumer(moto_sqs, ShortHandler())
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: (
            metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="handler_error")
            == 2
        )
    )
    runner.stop()
    reasons = {d["failure-reason"] for d in _dead_letters(moto_sqs)}
    assert reasons == {"handler error: RuntimeError: handler returned 0 outcomes for 1 messages"}
    assert queue_counts(moto_sqs, work_queue) == (0, 0)


def test_a_retry_at_max_receives_goes_to_the_dlq_with_the_last_reason(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop
) -> None:
    # The work queue's RedrivePolicy says maxReceiveCount 3; back-off 0 redelivers at once.
    send_batches(moto_sqs, work_queue, ["stuck"])
    handler = ScriptedHandler(lambda m: Retry(f"downstream busy (receive {m.receive_count})"))
    consumer = _consumer(moto_sqs, handler, retry_base_seconds=0)
    assert consumer.max_receives == 3
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: (
            metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="gave_up") == 1
        )
    )
    runner.stop()
    assert [m.receive_count for m in handler.seen] == [1, 2, 3]
    assert metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="retry") == 2
    (dead,) = _dead_letters(moto_sqs)
    assert dead["failure-reason"] == "gave up after 3 receives: downstream busy (receive 3)"
    assert dead["batch-id"] == "stuck"
    assert queue_counts(moto_sqs, work_queue) == (0, 0)


def test_a_reason_sqs_could_not_carry_is_sanitised_and_bounded(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop
) -> None:
    reason = "bad\x00byte \ud800 " + "x" * 5000
    send_batches(moto_sqs, work_queue, ["nul"])
    consumer = _consumer(moto_sqs, ScriptedHandler(lambda m: Reject(reason)))
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: (
            metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="rejected") == 1
        )
    )
    runner.stop()
    (dead,) = _dead_letters(moto_sqs)
    assert dead["failure-reason"] == attribute_value(reason)
    assert dead["failure-reason"].startswith("bad\ufffdbyte \ufffd xxx")


def test_attribute_value_keeps_sqs_text_and_replaces_the_rest() -> None:
    allowed = "tab\tnl\ncr\r é \ud7ff \ue000 \ufffd \U0001f600 \U0010ffff"
    assert attribute_value(allowed) == allowed
    refused = "".join(chr(c) for c in (0, 1, 8, 11, 12, 31, 0xD800, 0xDFFF, 0xFFFE, 0xFFFF))
    assert attribute_value(refused) == "\ufffd" * len(refused)
    assert attribute_value("") == "-"
    long = attribute_value("y" * 2000)
    assert len(long) == MAX_ATTRIBUTE_CHARS and long.endswith("...")


def test_in_flight_work_is_bounded(moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop) -> None:
    send_batches(moto_sqs, work_queue, [f"z{i}" for i in range(8)])
    handler = ScriptedHandler(lambda m: HOLD)
    consumer = _consumer(moto_sqs, handler, max_in_flight=3)
    runner = run_loop(consumer)
    runner.wait_for(lambda: len(handler.seen) == 3)
    # While three are held, the loop does not take more.
    with pytest.raises(AssertionError):
        runner.wait_for(lambda: len(handler.seen) > 3, timeout_s=1.5)
    assert queue_counts(moto_sqs, work_queue) == (5, 3)
    consumer.ack(list(handler.seen))
    runner.wait_for(lambda: len(handler.seen) == 6)
    runner.stop()


def test_stop_hands_unsettled_messages_back_at_once(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop
) -> None:
    send_batches(moto_sqs, work_queue, ["h1", "h2", "h3"])
    handler = ScriptedHandler(lambda m: HOLD)
    consumer = _consumer(moto_sqs, handler)
    runner = run_loop(consumer)
    runner.wait_for(lambda: len(handler.seen) == 3)
    assert queue_counts(moto_sqs, work_queue) == (0, 3)
    runner.stop()
    # Visible again immediately (not after the 30 s visibility timeout).
    assert queue_counts(moto_sqs, work_queue) == (3, 0)
    assert metric(PROCESSED, service=consumer.service, queue=WORK_QUEUE, outcome="handed_back") == 3


def test_a_failing_delete_is_logged_not_fatal(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def unreachable(**_kwargs: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="http://sqs.invalid")

    monkeypatch.setattr(moto_sqs, "delete_message_batch", unreachable)
    monkeypatch.setattr(Consumer._delete_chunk.retry, "sleep", lambda _s: None)
    send_batches(moto_sqs, work_queue, ["d1"])
    consumer = _consumer(moto_sqs, ScriptedHandler())
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: (
            metric(
                "sensorpipe_aws_errors_total",
                service=consumer.service,
                operation="DeleteMessageBatch",
            )
            == 1
        )
    )
    assert runner.thread.is_alive()
    runner.stop()
    # The message was not deleted: it comes back after its visibility timeout.
    assert queue_counts(moto_sqs, work_queue) == (0, 1)


@pytest.mark.parametrize(
    ("wait_time", "shutdown_timeout", "expected_poll"),
    [(20, 9, IDLE_POLL_CAP_S), (20, 3, 2), (1, 5, 1), (20, 0.5, 0)],
)
def test_long_polls_end_inside_the_shutdown_budget(
    moto_sqs: SQSClient,
    work_queue: str,
    run_loop: RunLoop,
    monkeypatch: pytest.MonkeyPatch,
    wait_time: int,
    shutdown_timeout: float,
    expected_poll: int,
) -> None:
    receives = _spy(monkeypatch, moto_sqs, "receive_message")
    consumer = _consumer(
        moto_sqs,
        ScriptedHandler(),
        wait_time_seconds=wait_time,
        shutdown_timeout_seconds=shutdown_timeout,
    )
    runner = run_loop(consumer)
    runner.wait_for(lambda: len(receives) >= 1)
    time.sleep(1.0)
    runner.stop()
    assert {c["WaitTimeSeconds"] for c in receives} == {expected_poll}
    # Even short polling an empty queue does not spin.
    assert len(receives) <= 8


def test_a_handler_s_lease_is_the_visibility_of_what_it_receives_and_holds(
    moto_sqs: SQSClient, work_queue: str, run_loop: RunLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that holds messages leases them shorter than the queue's timeout (30 s
    here): received with that visibility, renewed by the heartbeat while held, so a
    crashed process's messages come back within the lease."""
    receives = _spy(monkeypatch, moto_sqs, "receive_message")
    renewals = _spy(monkeypatch, moto_sqs, "change_message_visibility_batch")
    send_batches(moto_sqs, work_queue, ["leased"])
    handler = ScriptedHandler(lambda m: HOLD)
    handler.lease_s = 2
    consumer = _consumer(moto_sqs, handler)
    assert consumer.visibility_s == 2
    runner = run_loop(consumer)
    runner.wait_for(lambda: len(handler.seen) == 1)
    runner.wait_for(lambda: len(renewals) >= 2, timeout_s=10)  # held for several leases
    assert {call["VisibilityTimeout"] for call in receives} == {2}
    assert {e["VisibilityTimeout"] for call in renewals for e in call["Entries"]} == {2}
    assert queue_counts(moto_sqs, work_queue) == (0, 1)  # still invisible: renewed
    runner.stop()


class _BlockingHandler(ScriptedHandler):
    """Holds the main thread inside ``handle`` until released (a handler that hangs)."""

    def __init__(self) -> None:
        super().__init__()
        self.lease_s = 2  # the heartbeat renews within about a second
        self.inside = threading.Event()
        self.release = threading.Event()

    def handle(self, messages: list[Message]) -> list[Outcome]:
        self.inside.set()
        self.release.wait(timeout=30)
        return [ACK for _ in messages]


@pytest.mark.parametrize(("stall_s", "stalled"), [(0.5, True), (60.0, False)])
def test_a_handler_call_that_never_returns_is_stalled_and_its_leases_lapse(
    moto_sqs: SQSClient,
    work_queue: str,
    run_loop: RunLoop,
    monkeypatch: pytest.MonkeyPatch,
    stall_s: float,
    stalled: bool,
) -> None:
    renewals = _spy(monkeypatch, moto_sqs, "change_message_visibility_batch")
    send_batches(moto_sqs, work_queue, ["hang"])
    handler = _BlockingHandler()
    consumer = _consumer(moto_sqs, handler, stall_timeout_seconds=stall_s)
    runner = run_loop(consumer)
    assert handler.inside.wait(timeout=10)
    time.sleep(3.0)  # the lease (2 s) would have been renewed at least once by now
    health = consumer.health()
    handler.release.set()
    runner.stop()
    if stalled:
        assert health["status"] == "stalled" and health["busy_seconds"] >= 3.0, health
        assert renewals == []  # its message comes back to the queue for someone else
    else:
        assert health["status"] == "ok", health
        assert renewals, "a busy handler within its bound keeps its messages leased"
