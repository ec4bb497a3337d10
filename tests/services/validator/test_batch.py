"""validate_envelope and error_objects: every record in one named place, counted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sensorpipe.config import FilterRule, load_validation_spec
from sensorpipe.envelope import Envelope
from sensorpipe.objects import HIVE_DEFAULT_PARTITION, read_jsonl
from services.validator.batch import BatchValidator, error_objects
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


def test_error_objects_are_partitioned_by_event_time(validator: BatchValidator) -> None:
    rows = [
        *mixed_rows(),
        reading(6, humidity=-1.0, timestamp="2025-08-18T11:59:00+00:00"),
    ]
    result = validator.validate_envelope(envelope_of(rows, "filtered"), apply_filters=True, now=NOW)
    objects = {o.key: o for o in error_objects(result)}
    unknown_key = f"rejected/{HIVE_DEFAULT_PARTITION}/edge-1-000007.jsonl.gz"
    assert sorted(objects) == [
        "filtered/year=2025/month=08/day=18/hour=10/edge-1-000007.jsonl.gz",
        "rejected/year=2025/month=08/day=18/hour=10/edge-1-000007.jsonl.gz",
        "rejected/year=2025/month=08/day=18/hour=11/edge-1-000007.jsonl.gz",
        unknown_key,
    ]
    hour10 = objects["rejected/year=2025/month=08/day=18/hour=10/edge-1-000007.jsonl.gz"]
    assert [line["record"]["id"] for line in read_jsonl(hour10.body)] == [2]
    assert hour10.metadata["record-count"] == "1"
    assert hour10.metadata["scenario"] == "filtered"
    assert hour10.metadata["spec-version"] == "2.1.0"
    assert hour10.metadata["first-event-time"] == "2025-08-18T10:15:02.000+00:00"
    assert hour10.metadata["last-event-time"] == "2025-08-18T10:15:02.000+00:00"
    unknown = objects[unknown_key]
    assert unknown.metadata["first-event-time"] == "unknown"
    assert unknown.metadata["last-event-time"] == "unknown"
    filtered = objects["filtered/year=2025/month=08/day=18/hour=10/edge-1-000007.jsonl.gz"]
    assert read_jsonl(filtered.body)[0]["rule"] == "drop_anomalous_status"


def test_error_objects_are_byte_identical_on_redelivery(validator: BatchValidator) -> None:
    rows = [*mixed_rows(), reading(9, timestamp="2099-01-01T00:00:00+00:00")]
    first = validator.validate_envelope(envelope_of(rows), apply_filters=False, now=NOW)
    later = datetime(2025, 8, 18, 13, 30, tzinfo=UTC)
    second = validator.validate_envelope(envelope_of(rows), apply_filters=False, now=later)
    a = [(o.key, o.body, o.metadata) for o in error_objects(first)]
    b = [(o.key, o.body, o.metadata) for o in error_objects(second)]
    assert a == b
    assert any(line["errors"][0]["rule"] == "timestamp_future" for line in first.rejected)


def test_batch_ids_cannot_escape_the_key(validator: BatchValidator) -> None:
    envelope = envelope_of([reading(1, humidity=-5.0)])
    envelope.batch_id = "../evil/../x"
    result = validator.validate_envelope(envelope, apply_filters=False, now=NOW)
    (obj,) = error_objects(result, compress=False)
    assert obj.key.endswith("/.._evil_.._x.jsonl")
    assert obj.key.count("/") == 5
