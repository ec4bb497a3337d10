"""validate_envelope and error_objects: every record in one named place, counted."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from sensorpipe.config import FilterRule, load_validation_spec
from sensorpipe.envelope import Envelope
from sensorpipe.objects import read_jsonl
from services.validator.batch import BatchValidator, ErrorObject, error_objects
from tests.services.validator.rows import anomalous_reading, reading

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
FAULTY = FilterRule(name="drop_anomalous_status", field="status_code", op="eq", value=1)


@pytest.fixture(scope="module")
def validator() -> BatchValidator:
    return BatchValidator(load_validation_spec(), [FAULTY])


def envelope_of(rows: list[dict[str, Any]], scenario: str = "schematized") -> Envelope:
    records: list[dict[str, Any]] = [
        {"sensor_data": r, "lineage": {"batch_id": "b-1", "source_row_id": r.get("id")}}
        for r in rows
    ]
    return Envelope(batch_id="edge-1-000007", scenario=scenario, config_version=4, records=records)


def mixed_rows() -> list[dict[str, Any]]:
    return [
        reading(1),
        reading(2, temperature=500.0, humidity="<missing>"),  # invalid, two errors
        anomalous_reading(3, "spike"),  # valid, anomalous, filtered in `filtered`
        reading(4, timestamp="garbage"),  # invalid, unknown time
        reading(5, temperature=45.0),  # valid, anomalous by threshold
    ]


def test_every_record_ends_in_one_place(validator: BatchValidator) -> None:
    result = validator.validate_envelope(envelope_of(mixed_rows()), apply_filters=False, now=NOW)
    assert [r["sensor_data"]["id"] for r in result.forward.records] == [1, 3, 5]
    assert [line["record"]["id"] for line in result.rejected] == [2, 4]
    assert result.filtered == []
    summary = result.summary
    assert (summary["in"], summary["valid"], summary["invalid"], summary["filtered"]) == (
        5,
        3,
        2,
        0,
    )
    assert summary["errors_by_rule"] == {"range": 1, "required": 1, "timestamp_format": 1}
    assert summary["errors_by_field"] == {"humidity": 1, "temperature": 1, "timestamp": 1}
    assert summary["anomalous"] == 2
    assert result.forward.meta["validation"] == summary
    assert result.forward.hops[-1]["stage"] == "validator"


def test_filters_set_valid_records_aside_with_the_rule_name(validator: BatchValidator) -> None:
    result = validator.validate_envelope(
        envelope_of(mixed_rows(), "filtered"), apply_filters=True, now=NOW
    )
    assert [r["sensor_data"]["id"] for r in result.forward.records] == [1, 5]
    assert [(line["record"]["id"], line["rule"]) for line in result.filtered] == [
        (3, "drop_anomalous_status")
    ]
    summary = result.summary
    assert (summary["valid"], summary["invalid"], summary["filtered"]) == (2, 2, 1)
    assert summary["filtered_by_rule"] == {"drop_anomalous_status": 1}


def test_valid_records_carry_quality_and_keep_their_lineage(validator: BatchValidator) -> None:
    result = validator.validate_envelope(envelope_of(mixed_rows()), apply_filters=False, now=NOW)
    by_id = {r["sensor_data"]["id"]: r for r in result.forward.records}
    assert by_id[1]["quality"] == {
        "spec_version": "2.1.0",
        "validated_at": "2025-08-18T12:00:00.000+00:00",
        "anomalous": False,
        "anomaly_reasons": [],
    }
    assert by_id[3]["quality"]["anomaly_reasons"] == ["sensor_flag:spike"]
    assert by_id[5]["quality"]["anomaly_reasons"] == ["temperature above 40"]
    assert by_id[1]["lineage"]["source_row_id"] == 1
    assert by_id[1]["sensor_data"] == reading(1)


def test_rejected_lines_hold_the_original_and_all_errors(validator: BatchValidator) -> None:
    result = validator.validate_envelope(envelope_of(mixed_rows()), apply_filters=False, now=NOW)
    line = result.rejected[0]
    assert line["record"] == reading(2, temperature=500.0, humidity="<missing>")
    assert [(e["field"], e["rule"]) for e in line["errors"]] == [
        ("temperature", "range"),
        ("humidity", "required"),
    ]
    assert line["batch_id"] == "edge-1-000007"
    assert (line["scenario"], line["config_version"], line["spec_version"]) == (
        "schematized",
        4,
        "2.1.0",
    )
    assert line["lineage"] == {"batch_id": "b-1", "source_row_id": 2}


def test_a_record_without_a_reading_is_rejected_whole(validator: BatchValidator) -> None:
    envelope = Envelope(batch_id="b", scenario="schematized", config_version=1, records=[{"x": 1}])
    result = validator.validate_envelope(envelope, apply_filters=False, now=NOW)
    assert result.rejected[0]["record"] == {"x": 1}
    assert result.rejected[0]["errors"][0]["rule"] == "record_shape"


ARRIVED = datetime(2025, 8, 18, 11, 58, 30, tzinfo=UTC)
KEY = re.compile(r"(rejected|filtered)/(year=.*/hour=\d\d)/edge-1-000007_([0-9a-f]{16})\.jsonl\.gz")


def keys_of(objects: list[ErrorObject]) -> list[tuple[str, str]]:
    """(kind, partition) of each object; every key must be the batch's, one content."""
    matches = [KEY.fullmatch(o.key) for o in objects]
    assert all(matches), [o.key for o in objects]
    assert len({m.group(3) for m in matches if m}) == 1, "one content digest per batch"
    return sorted((m.group(1), m.group(2)) for m in matches if m)


def test_error_objects_are_partitioned_by_event_time(validator: BatchValidator) -> None:
    rows = [
        *mixed_rows(),
        reading(6, humidity=-1.0, timestamp="2025-08-18T11:59:00+00:00"),
    ]
    result = validator.validate_envelope(
        envelope_of(rows, "filtered"), apply_filters=True, now=NOW, arrived_at=ARRIVED
    )
    objects = error_objects(result)
    hour = "year=2025/month=08/day=18/hour={:02d}".format
    # Row 4's time is garbage: it is filed under the hour it arrived (11), not a made-up one.
    assert keys_of(objects) == [
        ("filtered", hour(10)),
        ("rejected", hour(10)),
        ("rejected", hour(11)),
    ]
    by_key = {}
    for obj in objects:
        match = KEY.fullmatch(obj.key)
        assert match is not None
        by_key[match.group(1, 2)] = obj
    hour10 = by_key[("rejected", hour(10))]
    assert [line["record"]["id"] for line in read_jsonl(hour10.body)] == [2]
    assert hour10.metadata["record-count"] == "1"
    assert hour10.metadata["scenario"] == "filtered"
    assert hour10.metadata["spec-version"] == "2.1.0"
    assert hour10.metadata["first-event-time"] == "2025-08-18T10:15:02.000+00:00"
    assert hour10.metadata["last-event-time"] == "2025-08-18T10:15:02.000+00:00"
    hour11 = by_key[("rejected", hour(11))]
    lines = {line["record"]["id"]: line for line in read_jsonl(hour11.body)}
    assert sorted(lines) == [4, 6]
    assert lines[4]["record"]["timestamp"] == "garbage", "the original value is kept"
    assert lines[4]["partitioned_by"] == "arrival"
    assert "partitioned_by" not in lines[6]
    # Only the readable event time counts in the object's time range.
    assert hour11.metadata["first-event-time"] == "2025-08-18T11:59:00.000+00:00"
    filtered = by_key[("filtered", hour(10))]
    assert read_jsonl(filtered.body)[0]["rule"] == "drop_anomalous_status"


@pytest.mark.parametrize(
    "stamp",
    [
        "2996-01-01T00:00:00+00:00",  # in the future
        "0000-01-01T00:00:00+00:00",  # year 0
        "0001-01-01T00:00:00+01:00",  # year 0 once in UTC
        "10000-01-01T00:00:00Z",
        "2025-06-30T23:59:60Z",
        "<missing>",
        17,
    ],
)
def test_a_record_whose_time_is_wrong_is_filed_by_arrival(
    validator: BatchValidator, stamp: object
) -> None:
    result = validator.validate_envelope(
        envelope_of([reading(1, timestamp=stamp)]), apply_filters=False, now=NOW, arrived_at=ARRIVED
    )
    (obj,) = error_objects(result)
    assert keys_of([obj]) == [("rejected", "year=2025/month=08/day=18/hour=11")]
    (line,) = read_jsonl(obj.body)
    assert line.get("record", {}).get("timestamp", "<missing>") == stamp
    assert line["partitioned_by"] == "arrival"


def test_a_missing_offset_keeps_the_event_time_partition(validator: BatchValidator) -> None:
    row = reading(1, timestamp="2025-08-18T09:10:00")  # read as UTC: its hour is known
    result = validator.validate_envelope(
        envelope_of([row]), apply_filters=False, now=NOW, arrived_at=ARRIVED
    )
    (obj,) = error_objects(result)
    assert keys_of([obj]) == [("rejected", "year=2025/month=08/day=18/hour=09")]


def test_non_finite_and_huge_values_are_kept_in_the_error_line(validator: BatchValidator) -> None:
    row = reading(1, pressure=float("inf"), voltage=float("nan"), id=2**70)
    result = validator.validate_envelope(envelope_of([row]), apply_filters=False, now=NOW)
    (obj,) = error_objects(result)
    (line,) = read_jsonl(obj.body)
    assert (line["record"]["pressure"], line["record"]["voltage"]) == ("Infinity", "NaN")
    assert line["record"]["id"] == str(2**70)
    assert {(e["field"], e["rule"], e["value"]) for e in line["errors"]} == {
        ("pressure", "finite", "Infinity"),
        ("voltage", "finite", "NaN"),
        ("id", "range", str(2**70)),
    }


def test_two_batches_sharing_an_id_keep_both_objects(validator: BatchValidator) -> None:
    one = validator.validate_envelope(
        envelope_of([reading(1, humidity=-5.0)]), apply_filters=False, now=NOW
    )
    other = validator.validate_envelope(
        envelope_of([reading(2, humidity=-5.0)]), apply_filters=False, now=NOW
    )
    (a,), (b,) = error_objects(one), error_objects(other)
    assert a.key != b.key
    assert a.key.rsplit("/", 1)[0] == b.key.rsplit("/", 1)[0]


@pytest.mark.parametrize(("first", "second"), [("coll#1", "coll_1"), ("a/b", "a%2Fb"), ("x", "x~")])
def test_similar_batch_ids_never_share_a_key(
    validator: BatchValidator, first: str, second: str
) -> None:
    keys = set()
    for batch_id in (first, second):
        envelope = envelope_of([reading(1, humidity=-5.0)])
        envelope.batch_id = batch_id
        result = validator.validate_envelope(envelope, apply_filters=False, now=NOW)
        (obj,) = error_objects(result)
        keys.add(obj.key)
    assert len(keys) == 2


def test_error_objects_are_byte_identical_on_redelivery(validator: BatchValidator) -> None:
    rows = [*mixed_rows(), reading(9, timestamp="2099-01-01T00:00:00+00:00")]
    first = validator.validate_envelope(
        envelope_of(rows), apply_filters=False, now=NOW, arrived_at=ARRIVED
    )
    later = datetime(2025, 8, 18, 13, 30, tzinfo=UTC)
    redelivered = envelope_of(rows)
    redelivered.hops.append({"stage": "enricher", "at": later.isoformat()})
    for record in redelivered.records:
        record["lineage"] = {**record["lineage"], "processed_at": later.isoformat()}
    second = validator.validate_envelope(
        redelivered, apply_filters=False, now=later, arrived_at=ARRIVED
    )
    a = [(o.key, o.metadata) for o in error_objects(first)]
    b = [(o.key, o.metadata) for o in error_objects(second)]
    assert a == b, "processing times are no part of a key"
    assert any(line["errors"][0]["rule"] == "timestamp_future" for line in first.rejected)
    # A re-upload arriving later in the same hour writes the same bytes too.
    again = validator.validate_envelope(
        envelope_of(rows), apply_filters=False, now=later, arrived_at=ARRIVED.replace(minute=59)
    )
    assert [(o.key, o.body) for o in error_objects(first)] == [
        (o.key, o.body) for o in error_objects(again)
    ]


@pytest.mark.parametrize("batch_id", ["../evil/../x", "..", "", "a\x00b", "Zürich 🌡", "x" * 300])
def test_batch_ids_cannot_escape_the_key(validator: BatchValidator, batch_id: str) -> None:
    envelope = envelope_of([reading(1, humidity=-5.0)])
    envelope.batch_id = batch_id
    result = validator.validate_envelope(envelope, apply_filters=False, now=NOW)
    (obj,) = error_objects(result, compress=False)
    assert obj.key.count("/") == 5
    name = obj.key.rsplit("/", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9._%~-]+", name), name
    assert all(segment.strip(".") for segment in obj.key.split("/")), "no empty, . or .."
    assert len(obj.key) < 400
