"""The size-aware producer: split to fit, ten entries a call, refused entries retried."""

from __future__ import annotations

from typing import Any

import pytest
from tenacity import wait_none

from sensorpipe.envelope import Envelope, decode, encoded_size
from sensorpipe.runtime import EnvelopeProducer
from sensorpipe.runtime.errors import SendError
from tests.sensorpipe.runtime.conftest import metric, service_name


class FakeSQS:
    """Records SendMessageBatch calls; refuses the entry ids listed per call number."""

    def __init__(self, refuse: dict[int, set[str]] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.refuse = refuse or {}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        refused = self.refuse.get(len(self.calls), set())
        self.calls.append(Entries)
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e["Id"] not in refused],
            "Failed": [
                {
                    "Id": e["Id"],
                    "Code": "InternalError",
                    "Message": "try again",
                    "SenderFault": False,
                }
                for e in Entries
                if e["Id"] in refused
            ],
        }


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EnvelopeProducer._send_chunk.retry, "wait", wait_none())


def _records(count: int) -> list[dict[str, Any]]:
    return [
        {"sensor_data": {"id": i, "sensor_id": f"S{i % 7}", "note": f"reading-{i:05d}" * 4}}
        for i in range(count)
    ]


def _producer(sqs: FakeSQS, max_body_bytes: int, compress: bool = False) -> EnvelopeProducer:
    return EnvelopeProducer(
        sqs,  # type: ignore[arg-type]
        "http://sqs.test/q",
        "q",
        max_body_bytes=max_body_bytes,
        compress=compress,
        service=service_name(),
    )


def _sent_bodies(sqs: FakeSQS) -> list[tuple[str, dict[str, str]]]:
    return [
        (e["MessageBody"], {k: v["StringValue"] for k, v in e["MessageAttributes"].items()})
        for call in sqs.calls
        for e in call
    ]


def _entry_size(entry: dict[str, Any]) -> int:
    attrs = entry["MessageAttributes"]
    return len(entry["MessageBody"].encode()) + sum(
        len(k) + len(v["StringValue"]) + len("String") for k, v in attrs.items()
    )


def test_splits_to_fit_keeping_every_record_in_order() -> None:
    sqs = FakeSQS()
    producer = _producer(sqs, max_body_bytes=4096)
    envelopes = [
        Envelope(batch_id=f"batch-{n}", scenario="raw", config_version=3, records=_records(90))
        for n in range(3)
    ]
    sent = producer.send(envelopes)

    assert len(sent) >= 6, "the records must not fit one message"
    assert all(encoded_size(e) <= 4096 for e in sent)
    decoded = [decode(body, attrs) for body, attrs in _sent_bodies(sqs)]
    # Every record arrives once, in order, under its own envelope's ids.
    for n in range(3):
        parts = [d for d in decoded if d.batch_id.startswith(f"batch-{n}.")]
        assert [r for d in parts for r in d.records] == _records(90)
        assert all(d.config_version == 3 and d.scenario == "raw" for d in parts)
    assert metric("sensorpipe_messages_sent_total", service=producer.service, queue="q") == len(
        sent
    )


def test_ten_entries_a_call() -> None:
    sqs = FakeSQS()
    producer = _producer(sqs, max_body_bytes=256 * 1024)
    producer.send(
        [
            Envelope(batch_id=f"s{n}", scenario="raw", config_version=1, records=_records(1))
            for n in range(25)
        ]
    )
    assert [len(call) for call in sqs.calls] == [10, 10, 5]
    ids = [e["MessageAttributes"]["batch-id"]["StringValue"] for c in sqs.calls for e in c]
    assert ids == [f"s{n}" for n in range(25)]


def test_a_call_never_exceeds_the_payload_limit() -> None:
    sqs = FakeSQS()
    producer = _producer(sqs, max_body_bytes=3000)
    producer.send(
        [
            Envelope(batch_id=f"e{n}", scenario="raw", config_version=1, records=_records(3))
            for n in range(12)
        ]
    )
    assert len(sqs.calls) > 1
    assert any(len(call) > 1 for call in sqs.calls), "several entries should share a call"
    for call in sqs.calls:
        assert sum(_entry_size(e) for e in call) <= 3000


def test_refused_entries_alone_are_retried() -> None:
    sqs = FakeSQS(refuse={0: {"m1", "m3"}})
    producer = _producer(sqs, max_body_bytes=256 * 1024)
    envelopes = [
        Envelope(batch_id=f"b{n}", scenario="raw", config_version=1, records=_records(2))
        for n in range(5)
    ]
    producer.send(envelopes)
    assert [len(call) for call in sqs.calls] == [5, 2]
    assert [e["Id"] for e in sqs.calls[1]] == ["m1", "m3"]
    delivered = [
        e["MessageAttributes"]["batch-id"]["StringValue"]
        for n, call in enumerate(sqs.calls)
        for e in call
        if e["Id"] not in sqs.refuse.get(n, set())
    ]
    assert sorted(delivered) == [f"b{n}" for n in range(5)]


def test_persistent_refusal_raises_send_error_naming_the_queue() -> None:
    sqs = FakeSQS(refuse={n: {"m0"} for n in range(20)})
    producer = _producer(sqs, max_body_bytes=256 * 1024)
    with pytest.raises(SendError) as info:
        producer.send([Envelope(batch_id="x", scenario="raw", config_version=1, records=[{}])])
    assert info.value.queue == "q"
    assert "try again" in str(info.value)
    assert len(sqs.calls) == 6  # the first try and five retries


def test_compressed_bodies_round_trip() -> None:
    sqs = FakeSQS()
    producer = _producer(sqs, max_body_bytes=4096, compress=True)
    producer.send([Envelope(batch_id="z", scenario="raw", config_version=1, records=_records(300))])
    decoded = [decode(body, attrs) for body, attrs in _sent_bodies(sqs)]
    assert all(attrs["content-encoding"] == "gzip" for _, attrs in _sent_bodies(sqs))
    assert [r for d in decoded for r in d.records] == _records(300)
