"""The compiled spec: each rule kind, every error of a record, timestamps, cross-field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sensorpipe.config import load_validation_spec
from sensorpipe.config.spec import ValidationSpec
from services.validator.rules import CompiledSpec
from tests.services.validator.rows import reading

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
LATEST = NOW.timestamp() + 300


@pytest.fixture(scope="module")
def compiled() -> CompiledSpec:
    return CompiledSpec(load_validation_spec())


def rules_of(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["field"], e["rule"]) for e in errors]


def test_a_generator_row_is_valid(compiled: CompiledSpec) -> None:
    assert compiled.errors(reading(1), LATEST) == []


def test_an_anomalous_row_flagged_consistently_is_valid(compiled: CompiledSpec) -> None:
    row = reading(1, anomaly_flag=1, status_code=1, anomaly_type="spike", temperature=140.0)
    assert compiled.errors(row, LATEST) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"temperature": "<missing>"}, ("temperature", "required")),
        ({"humidity": None}, ("humidity", "required")),
        ({"temperature": "hot"}, ("temperature", "type")),
        ({"id": 3.5}, ("id", "type")),
        ({"id": True}, ("id", "type")),
        ({"sensor_id": 12}, ("sensor_id", "type")),
        ({"humidity": 100.5}, ("humidity", "range")),
        ({"temperature": -51}, ("temperature", "range")),
        ({"id": 0}, ("id", "range")),
        ({"anomaly_type": "wobble", "anomaly_flag": 1, "status_code": 1}, ("anomaly_type", "enum")),
        ({"sensor_id": "x"}, ("sensor_id", "pattern")),
        ({"location": "unknown"}, ("location", "pattern")),
        ({"firmware_version": "v1"}, ("firmware_version", "pattern")),
        ({"timestamp": "yesterday"}, ("timestamp", "timestamp_format")),
        ({"timestamp": "2025-08-18"}, ("timestamp", "timestamp_format")),
        ({"timestamp": "2025-13-01T00:00:00+00:00"}, ("timestamp", "timestamp_format")),
        ({"timestamp": "2025-08-18T10:00:00"}, ("timestamp", "timestamp_timezone")),
        ({"timestamp": 1755511200}, ("timestamp", "type")),
        ({"timestamp": "0000-01-01T00:00:00+00:00"}, ("timestamp", "timestamp_range")),
        ({"timestamp": "10000-01-01T00:00:00Z"}, ("timestamp", "timestamp_range")),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, ("timestamp", "timestamp_range")),
        ({"timestamp": "2024-12-31T23:59:60Z"}, ("timestamp", "timestamp_format")),
        ({"timestamp": "2025-08-18X10:00:00Z"}, ("timestamp", "timestamp_format")),
        ({"timestamp": "2025-08-18T10:00:00+0000x"}, ("timestamp", "timestamp_format")),
    ],
)
def test_each_rule_kind(compiled: CompiledSpec, overrides: dict[str, Any], expected: Any) -> None:
    errors = compiled.errors(reading(1, **overrides), LATEST)
    assert rules_of(errors) == [expected]
    error = errors[0]
    assert set(error) == {"field", "rule", "value", "expected", "message"}
    assert error["expected"] and error["message"]


def test_optional_fields_may_be_missing_or_null(compiled: CompiledSpec) -> None:
    row = reading(1, pressure="<missing>", vibration=None, firmware_version="<missing>")
    assert compiled.errors(row, LATEST) == []


def test_a_nan_or_infinite_number_is_a_type_error(compiled: CompiledSpec) -> None:
    errors = compiled.errors(reading(1, temperature=float("nan"), humidity=float("inf")), LATEST)
    assert rules_of(errors) == [("temperature", "type"), ("humidity", "type")]


def test_every_error_of_a_record_is_reported(compiled: CompiledSpec) -> None:
    row = reading(
        1,
        temperature=999,
        humidity="<missing>",
        sensor_id="!",
        status_code=7,
        timestamp="not a time",
        latitude="north",
    )
    errors = compiled.errors(row, LATEST)
    assert sorted(rules_of(errors)) == sorted(
        [
            ("temperature", "range"),
            ("humidity", "required"),
            ("sensor_id", "pattern"),
            ("status_code", "enum"),
            ("timestamp", "timestamp_format"),
            ("latitude", "type"),
        ]
    )
    by_field = {e["field"]: e for e in errors}
    assert by_field["temperature"]["value"] == 999
    assert by_field["temperature"]["expected"] == ">= -50 and <= 150"
    assert by_field["humidity"]["message"] == "humidity is missing"


def test_a_field_breaking_two_constraints_reports_both() -> None:
    spec = ValidationSpec(
        spec_version="1.0.0",
        fields={
            "timestamp": {"type": "timestamp", "required": True},
            "code": {"type": "integer", "min": 0, "max": 10, "enum": [1, 2, 3]},
        },
    )
    compiled = CompiledSpec(spec)
    errors = compiled.errors({"timestamp": "2025-08-18T10:00:00Z", "code": 11}, LATEST)
    assert rules_of(errors) == [("code", "range"), ("code", "enum")]


def test_a_timestamp_in_the_future_beyond_the_skew(compiled: CompiledSpec) -> None:
    within = (NOW + timedelta(seconds=299)).isoformat()
    beyond = (NOW + timedelta(seconds=301)).isoformat()
    assert compiled.errors(reading(1, timestamp=within), LATEST) == []
    errors = compiled.errors(reading(1, timestamp=beyond), LATEST)
    assert rules_of(errors) == [("timestamp", "timestamp_future")]
    assert "300 s" in errors[0]["message"]


def test_the_skew_can_be_configured() -> None:
    compiled = CompiledSpec(load_validation_spec(), max_future_skew_seconds=0)
    latest = NOW.timestamp()
    future = (NOW + timedelta(seconds=5)).isoformat()
    assert rules_of(compiled.errors(reading(1, timestamp=future), latest)) == [
        ("timestamp", "timestamp_future")
    ]


def test_z_suffix_and_offsets_are_accepted(compiled: CompiledSpec) -> None:
    assert compiled.errors(reading(1, timestamp="2025-08-18T10:00:00Z"), LATEST) == []
    assert compiled.errors(reading(1, timestamp="2025-08-18T05:00:00.123-05:00"), LATEST) == []


def test_timezone_may_be_optional_by_policy() -> None:
    spec = load_validation_spec()
    relaxed = spec.model_copy(
        update={"timestamps": spec.timestamps.model_copy(update={"require_timezone": False})}
    )
    compiled = CompiledSpec(relaxed)
    assert compiled.errors(reading(1, timestamp="2025-08-18T10:00:00"), LATEST) == []
    # A naive time is read as UTC for the future check.
    naive_future = (NOW + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert rules_of(compiled.errors(reading(1, timestamp=naive_future), LATEST)) == [
        ("timestamp", "timestamp_future")
    ]


@pytest.mark.parametrize(
    ("flag", "kind", "status", "expected"),
    [
        (1, None, 1, [("anomaly_type", "anomaly_type_requires_flag")]),
        (0, "spike", 0, [("anomaly_type", "anomaly_type_requires_flag")]),
        (1, "spike", 0, [("status_code", "status_code_matches_flag")]),
        (0, None, 1, [("status_code", "status_code_matches_flag")]),
        (
            1,
            None,
            0,
            [
                ("anomaly_type", "anomaly_type_requires_flag"),
                ("status_code", "status_code_matches_flag"),
            ],
        ),
        (1, "noise", 1, []),
        (0, None, 0, []),
    ],
)
def test_cross_field_rules(
    compiled: CompiledSpec, flag: int, kind: str | None, status: int, expected: Any
) -> None:
    row = reading(1, anomaly_flag=flag, anomaly_type=kind, status_code=status)
    errors = compiled.errors(row, LATEST)
    assert rules_of(errors) == expected
    for error in errors:
        assert error["value"]["anomaly_flag"] == flag


def test_cross_field_rules_do_not_echo_a_broken_input(compiled: CompiledSpec) -> None:
    errors = compiled.errors(reading(1, anomaly_flag="yes", status_code=1), LATEST)
    assert rules_of(errors) == [("anomaly_flag", "type")]


@pytest.mark.parametrize("data", [None, [1, 2], "row", 5])
def test_a_reading_that_is_not_an_object(compiled: CompiledSpec, data: Any) -> None:
    errors = compiled.errors(data, LATEST)
    assert rules_of(errors) == [("sensor_data", "record_shape")]


def test_the_fast_path_agrees_with_the_full_checks(compiled: CompiledSpec) -> None:
    """The generated all-valid predicate says valid exactly when no error is described."""
    import random

    rng = random.Random(11)
    bad_values: list[Any] = [
        None,
        "<missing>",
        "",
        "x",
        "unknown",
        0,
        -1,
        1.5,
        2,
        1e309,
        999.0,
        True,
        [1],
        {"a": 1},
        "2025-08-18T10:00:00",
        "2999-01-01T00:00:00+00:00",
        "1.2.3",
        "+05:00",
        "spike",
    ]
    fields = list(reading(1))
    agreed = 0
    for i in range(3000):
        row = reading(i + 1)
        for _ in range(rng.choice([0, 1, 1, 2])):
            row = reading(i + 1, **{**row, rng.choice(fields): rng.choice(bad_values)})
        fast = compiled.all_valid(row, LATEST)
        full = compiled.describe_errors(row, LATEST)
        assert fast == (full == []), (row, full)
        agreed += fast
    assert 0 < agreed < 3000  # both answers occurred


def test_spec_text_never_becomes_code() -> None:
    """Field names, patterns and enum values are bound as values, not pasted as source."""
    hostile = 'x"); import os; os._exit(3); ("'
    spec = ValidationSpec(
        spec_version="1.0.0",
        name="n\nimport os",
        fields={
            "timestamp": {"type": "timestamp", "required": True},
            hostile: {"type": "string", "required": True, "pattern": "^ok$"},
            "shape": {"type": "string", "enum": [["not", "hashable"], "flat"]},
        },
    )
    compiled = CompiledSpec(spec)
    good = {"timestamp": "2025-08-18T10:00:00Z", hostile: "ok", "shape": "flat"}
    assert compiled.errors(good, LATEST) == []
    bad = {**good, hostile: "no", "shape": "round"}
    assert rules_of(compiled.errors(bad, LATEST)) == [(hostile, "pattern"), ("shape", "enum")]
