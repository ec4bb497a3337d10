"""The validator's handler against an in-memory AWS (moto)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sensorpipe.config import PipelineConfig, load_validation_spec
from sensorpipe.envelope import ATTR_SCENARIO, Envelope, Position
from sensorpipe.objects import ObjectWriteError
from sensorpipe.runtime import ACK, Message, Reject, Retry
from services.validator.handler import ValidatorHandler
from tests.moto_stack import MotoStack
from tests.moto_stack import message_of as sqs_message_of
from tests.moto_stack import moto_stack as shared_moto_stack
from tests.services.validator.rows import anomalous_reading, reading
from tests.services.validator.stack import envelope_of


def make_handler(stack: MotoStack) -> ValidatorHandler:
    return ValidatorHandler.from_context(stack.context)


SENT_MS = int(datetime(2025, 8, 18, 11, 5, tzinfo=UTC).timestamp() * 1000)
ERROR_KEY = re.compile(
    r"((?:rejected|filtered)/year=\d{4}/month=\d\d/day=\d\d/hour=\d\d)/"
    r"edge-1-000001_[0-9a-f]{16}\.jsonl\.gz"
)


def partition_of(key: str) -> str:
    match = ERROR_KEY.fullmatch(key)
    assert match is not None, key
    return match.group(1)


def message_of(envelope: Envelope, **options: Any) -> Message:
    """As SQS delivers it: with the time it was sent to the validator's queue."""
    message = sqs_message_of(envelope, **options)
    message.sent_timestamp_ms = SENT_MS
    return message


def mixed() -> list[dict[str, Any]]:
    return [
        reading(1),
        reading(2, humidity=140.0, sensor_id="?"),
        anomalous_reading(3),
        reading(4, timestamp="2025-08-18 25:00"),
        reading(5, temperature=41.0),
    ]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_valid_forwarded_invalid_to_the_error_bucket(moto_stack: MotoStack) -> None:
    errors_before = metric("sensorpipe_validation_errors_total", rule="range", field="humidity")
    invalid_before = metric(
        "sensorpipe_records_processed_total", service="validator", outcome="invalid"
    )
    handler = make_handler(moto_stack)
    assert handler.handle([message_of(envelope_of("schematized", mixed()))]) == [ACK]
    (out,) = moto_stack.drain(moto_stack.config.queues.validated)
    envelope = out.envelope()
    assert [r["sensor_data"]["id"] for r in envelope.records] == [1, 3, 5]
    assert [r["quality"]["anomalous"] for r in envelope.records] == [False, True, True]
    assert envelope.meta["validation"]["invalid"] == 2
    assert envelope.hops[-1]["stage"] == "validator"
    lines = moto_stack.lines("error")
    # Row 4's time is unreadable: filed under the hour its batch arrived (SentTimestamp
    # 11:05), the other by its event time (10:15).
    assert [partition_of(key) for key in sorted(lines)] == [
        "rejected/year=2025/month=08/day=18/hour=10",
        "rejected/year=2025/month=08/day=18/hour=11",
    ]
    rejected = {line["record"]["id"]: line for group in lines.values() for line in group}
    assert sorted(rejected) == [2, 4]
    assert {(e["field"], e["rule"]) for e in rejected[2]["errors"]} == {
        ("humidity", "range"),
        ("sensor_id", "pattern"),
    }
    assert (
        metric("sensorpipe_validation_errors_total", rule="range", field="humidity")
        == errors_before + 1
    )
    assert (
        metric("sensorpipe_records_processed_total", service="validator", outcome="invalid")
        == invalid_before + 2
    )


def test_error_objects_carry_metadata(moto_stack: MotoStack) -> None:
    make_handler(moto_stack).handle([message_of(envelope_of("schematized", mixed()))])
    s3 = moto_stack.context.s3
    bucket = moto_stack.config.buckets.name("error")
    (key,) = [k for k in moto_stack.lines("error") if "/hour=10/" in k]
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["batch-id"] == "edge-1-000001"
    assert head["Metadata"]["scenario"] == "schematized"
    assert head["Metadata"]["config-version"] == "3"
    assert head["Metadata"]["spec-version"] == "2.1.0"
    assert head["Metadata"]["record-count"] == "1"
    assert head["ContentEncoding"] == "gzip"


def test_filtered_scenario_keeps_what_filters_remove(moto_stack: MotoStack) -> None:
    handler = make_handler(moto_stack)
    assert handler.handle([message_of(envelope_of("filtered", mixed()))]) == [ACK]
    (out,) = moto_stack.drain(moto_stack.config.queues.validated)
    assert [r["sensor_data"]["id"] for r in out.envelope().records] == [1, 5]
    filtered = {k: v for k, v in moto_stack.lines("error").items() if k.startswith("filtered/")}
    (group,) = filtered.values()
    assert [(line["record"]["id"], line["rule"]) for line in group] == [
        (3, "drop_anomalous_status")
    ]


def test_a_redelivered_batch_writes_identical_objects(moto_stack: MotoStack) -> None:
    handler = make_handler(moto_stack)
    message = message_of(envelope_of("filtered", mixed()))
    handler.handle([message])
    first = moto_stack.objects("error")
    handler.handle([message])
    assert moto_stack.objects("error") == first


def test_scenario_without_validation_passes_through_untouched(moto_stack: MotoStack) -> None:
    message = message_of(envelope_of("lineage", [reading(1, humidity=900.0)]))
    assert make_handler(moto_stack).handle([message]) == [ACK]
    (out,) = moto_stack.drain(moto_stack.config.queues.validated)
    assert (out.body, out.attributes) == (message.body, message.attributes)
    assert moto_stack.objects("error") == {}


def test_a_batch_with_no_valid_record_forwards_nothing(moto_stack: MotoStack) -> None:
    message = message_of(envelope_of("schematized", [reading(1, temperature="x")]))
    assert make_handler(moto_stack).handle([message]) == [ACK]
    assert moto_stack.drain(moto_stack.config.queues.validated) == []
    assert len(moto_stack.objects("error")) == 1


def test_unknown_scenario_and_poison_are_rejected(moto_stack: MotoStack) -> None:
    unknown = message_of(envelope_of("teleport", [reading(1)]))
    poison = message_of(envelope_of("schematized", [reading(1)]), compress=False)
    poison.body = '{"v": 1, "records": "nope"'
    mismatch = message_of(envelope_of("schematized", [reading(1)]))
    mismatch.attributes[ATTR_SCENARIO] = "filtered"
    outcomes = make_handler(moto_stack).handle([unknown, poison, mismatch])
    assert all(isinstance(o, Reject) for o in outcomes)
    reasons = [o.reason for o in outcomes if isinstance(o, Reject)]
    assert "has no route" in reasons[0]
    assert "not a batch envelope" in reasons[1]
    assert "attributes say 'filtered'" in reasons[2]
    assert moto_stack.drain(moto_stack.config.queues.validated) == []


def test_error_write_failure_retries_and_forwards_nothing(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = make_handler(moto_stack)

    def fail(*_args: object, **_kwargs: object) -> bool:
        raise ObjectWriteError("writing s3://x/y failed: SlowDown")

    monkeypatch.setattr(handler._writer, "put", fail)
    good = message_of(envelope_of("schematized", [reading(1)], batch_id="b-ok"))
    bad = message_of(envelope_of("schematized", mixed(), batch_id="b-bad"))
    outcomes = handler.handle([good, bad])
    assert outcomes[0] == ACK
    assert isinstance(outcomes[1], Retry) and "SlowDown" in outcomes[1].reason
    sent = moto_stack.drain(moto_stack.config.queues.validated)
    assert [m.attributes["batch-id"] for m in sent] == ["b-ok"]


def test_spec_version_travels_with_records(moto_stack: MotoStack) -> None:
    make_handler(moto_stack).handle([message_of(envelope_of("schematized", [reading(1)]))])
    (out,) = moto_stack.drain(moto_stack.config.queues.validated)
    version = load_validation_spec().spec_version
    assert out.envelope().records[0]["quality"]["spec_version"] == version
    assert out.envelope().meta["validation"]["spec_version"] == version


def test_a_sequenced_batch_with_nothing_valid_still_goes_on_empty(moto_stack: MotoStack) -> None:
    """The stateful stages count every part of a source's batches: a part whose records
    are all invalid is forwarded with none, so its place in the sequence is known."""
    bad = [reading(1, humidity=140.0), reading(2, timestamp="yesterday")]
    envelope = envelope_of("notification", bad)
    envelope.position = Position("edge-1-g0", 3, "01")
    assert make_handler(moto_stack).handle([message_of(envelope)]) == [ACK]
    (out,) = moto_stack.drain(moto_stack.config.queues.validated)
    forwarded = out.envelope()
    assert forwarded.records == []
    assert forwarded.position == Position("edge-1-g0", 3, "01")
    assert forwarded.meta["validation"]["invalid"] == 2
    assert len([line for group in moto_stack.lines("error").values() for line in group]) == 2


def test_an_unsequenced_batch_with_nothing_valid_goes_no_further(moto_stack: MotoStack) -> None:
    envelope = envelope_of("notification", [reading(1, humidity=140.0)])
    assert make_handler(moto_stack).handle([message_of(envelope)]) == [ACK]
    assert moto_stack.drain(moto_stack.config.queues.validated) == []


def test_an_arrow_batch_is_validated_and_forwarded_without_a_dict_per_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With arrow bodies the records stay a table from decode to send: only the rows the
    column checks do not clear become dicts (in the validator), never the batch."""
    config = PipelineConfig(
        buckets={"prefix": "unit-arrow"},
        queues={"prefix": "unit-arrow"},
        runtime={"body_format": "arrow"},
    )

    def refuse(_table: object) -> list[dict[str, Any]]:
        raise AssertionError("the whole batch was turned into dicts")

    with shared_moto_stack(monkeypatch, config) as stack:
        handler = make_handler(stack)
        message = message_of(envelope_of("schematized", mixed()), columnar=True)
        with monkeypatch.context() as patched:
            patched.setattr("sensorpipe.envelope.rows_of", refuse)
            assert handler.handle([message]) == [ACK]
        (out,) = stack.drain(config.queues.validated)
        rejected = [
            line["record"]["id"] for lines in stack.lines("error").values() for line in lines
        ]
    assert out.attributes["content-encoding"] == "arrow"
    envelope = out.envelope()
    assert [r["sensor_data"]["id"] for r in envelope.records] == [1, 3, 5]
    assert [r["quality"]["anomaly_reasons"] for r in envelope.records] == [
        [],
        ["sensor_flag:spike"],
        ["temperature above 40"],
    ]
    assert sorted(rejected) == [2, 4]
