"""DLQ replay when SQS misbehaves (an in-memory fake): nothing is ever lost."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from sensorpipe.replay.dlq import DlqReplayer, DlqSelection, Pacer
from sensorpipe.replay.errors import ReplayAwsError, ReplaySendError


class FakeSqs:
    """Just enough of SQS for one DLQ and its source queue."""

    def __init__(self, bodies: list[str], *, refuse: frozenset[str] = frozenset(), **faults: bool):
        self.dlq = {f"m{i}": body for i, body in enumerate(bodies)}
        self.invisible: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        self.refuse = refuse
        self.faults = faults

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": QueueName}

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **_: Any) -> Any:
        ids = [m for m in self.dlq if m not in self.invisible][:MaxNumberOfMessages]
        self.invisible.update(ids)
        return {
            "Messages": [
                {
                    "MessageId": m,
                    "ReceiptHandle": f"rh-{m}",
                    "Body": self.dlq[m],
                    "MessageAttributes": {
                        "failure-reason": {"DataType": "String", "StringValue": "boom"},
                        "batch-id": {"DataType": "String", "StringValue": self.dlq[m]},
                        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
                    },
                    "Attributes": {"MessageGroupId": "loc-1"},
                }
                for m in ids
            ]
        }

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        if self.faults.get("send_raises"):
            raise ClientError({"Error": {"Code": "InternalError"}}, "SendMessageBatch")
        failed = [e for e in Entries if e["MessageBody"] in self.refuse]
        self.sent += [e for e in Entries if e not in failed]
        return {"Failed": [{"Id": e["Id"], "Code": "X", "Message": "refused"} for e in failed]}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        if self.faults.get("delete_raises"):
            raise ClientError({"Error": {"Code": "InternalError"}}, "DeleteMessageBatch")
        for entry in Entries:
            message_id = entry["ReceiptHandle"].removeprefix("rh-")
            self.dlq.pop(message_id)
            self.invisible.discard(message_id)
        return {"Failed": []}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:
        for entry in Entries:
            self.invisible.discard(entry["ReceiptHandle"].removeprefix("rh-"))
        return {"Failed": []}


def replayer(sqs: FakeSqs, queue: str = "p-ingest", **kwargs: Any) -> DlqReplayer:
    return DlqReplayer(sqs, queue=queue, selection=DlqSelection(), poll_wait_seconds=0, **kwargs)  # type: ignore[arg-type]


def test_refused_messages_stay_in_the_dlq_and_fail_the_run() -> None:
    sqs = FakeSqs(["a", "b", "c"], refuse=frozenset({"b"}))
    with pytest.raises(ReplaySendError) as caught:
        replayer(sqs).run()
    assert caught.value.exit_code == 1 and "1 message(s) refused" in str(caught.value)
    assert "scanned 3 message(s); moved 2" in caught.value.summary[0]
    assert [e["MessageBody"] for e in sqs.sent] == ["a", "c"]
    assert sqs.dlq == {"m1": "b"} and sqs.invisible == set()  # kept and visible again


def test_send_error_deletes_nothing_and_releases_everything() -> None:
    sqs = FakeSqs([f"b{i}" for i in range(13)], send_raises=True)
    with pytest.raises(ReplayAwsError) as caught:
        replayer(sqs).run()
    assert "SendMessageBatch on queue p-ingest failed" in str(caught.value)
    assert len(sqs.dlq) == 13 and sqs.invisible == set()


def test_delete_failure_is_reported_and_the_original_kept() -> None:
    sqs = FakeSqs(["a"], delete_raises=True)
    result = replayer(sqs).run()
    assert result.moved == 1 and len(sqs.dlq) == 1
    assert "could not delete m0" in result.delete_failures[0]


def test_copies_keep_attributes_without_failure_ones_and_fifo_ids() -> None:
    sqs = FakeSqs(["a"])
    replayer(sqs, queue="p-notifications.fifo").run()
    entry = sqs.sent[0]
    assert entry["MessageAttributes"] == {
        "batch-id": {"DataType": "String", "StringValue": "a"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    assert entry["MessageGroupId"] == "loc-1"
    assert entry["MessageDeduplicationId"] == "replay-m0"


def test_pacer_spaces_batches_to_the_rate() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    pacer = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    assert pacer.batch_size == 4
    for _ in range(3):
        pacer.acquire(4)
    assert sleeps == [1.0, 1.0]  # the first batch goes at once
    assert Pacer(0.5).batch_size == 1 and Pacer(None).batch_size == 10


def test_rate_limited_replay_sends_in_small_batches() -> None:
    sqs = FakeSqs([f"b{i}" for i in range(5)])
    calls: list[int] = []
    original = sqs.send_message_batch

    def counting(QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        calls.append(len(Entries))
        return original(QueueUrl, Entries)

    sqs.send_message_batch = counting  # type: ignore[method-assign]
    replayer(sqs, pacer=Pacer(2.0, sleep=lambda _s: None)).run()
    assert calls == [2, 2, 1]
