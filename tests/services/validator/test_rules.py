"""The compiled spec: each rule kind, every error of a record, timestamps, cross-field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorpipe.config import load_validation_spec
from sensorpipe.config.spec import StringPolicy, ValidationSpec
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


NUMERIC_FIELDS = [
    name
    for name, field in load_validation_spec().fields.items()
    if field.type in ("number", "integer")
]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_a_non_finite_number_is_invalid_in_every_numeric_field(
    compiled: CompiledSpec, name: str, value: float
) -> None:
    row = reading(1, **{name: value})
    errors = compiled.errors(row, LATEST)
    kind = load_validation_spec().fields[name].type
    expected_rule = "type" if kind == "integer" else "finite"  # a float is no integer
    assert rules_of(errors) == [(name, expected_rule)]
    assert compiled.all_valid(row, LATEST) is False
    if expected_rule == "finite":
        text = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
        assert errors[0]["value"] == text, "written as JSON text, not as null"
        assert text in errors[0]["message"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"temperature": "21.5"}, ("temperature", "type")),
        ({"temperature": True}, ("temperature", "type")),
        ({"pressure": False}, ("pressure", "type")),
        ({"status_code": True}, ("status_code", "type")),
        ({"temperature": 1e308}, ("temperature", "range")),
        ({"latitude": -1e308}, ("latitude", "range")),
        ({"id": 2**70}, ("id", "range")),
        ({"temperature": 2**70}, ("temperature", "range")),
        ({"id": 2**63}, ("id", "range")),
    ],
)
def test_odd_numbers_get_a_clear_error(
    compiled: CompiledSpec, overrides: dict[str, Any], expected: tuple[str, str]
) -> None:
    row = reading(1, **overrides)
    errors = compiled.errors(row, LATEST)
    assert rules_of(errors) == [expected]
    assert compiled.all_valid(row, LATEST) is False
    orjson.dumps(errors)  # the error itself can always be written


def test_the_largest_64_bit_id_is_valid(compiled: CompiledSpec) -> None:
    assert compiled.errors(reading(1, id=2**63 - 1), LATEST) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("location", "Chicago\nBuilding 7"),
        ("location", "Chicago\x00"),
        ("location", "Chicago\n"),  # `$` would match before a final newline
        ("sensor_id", "CHI_000001\n"),
        ("model", "Env\tMonitor"),
        ("serial_number", "SN\x7f1"),
        ("manufacturer", "\x1b[31mred"),
    ],
)
def test_control_characters_are_invalid_in_any_string(
    compiled: CompiledSpec, name: str, value: str
) -> None:
    row = reading(1, **{name: value})
    errors = compiled.errors(row, LATEST)
    assert (name, "control_character") in rules_of(errors)
    first = next(i for i, c in enumerate(value) if ord(c) < 32 or ord(c) == 127)
    error = next(e for e in errors if e["rule"] == "control_character")
    assert f"U+{ord(value[first]):04X} at position {first}" in error["message"]
    assert compiled.all_valid(row, LATEST) is False


@pytest.mark.parametrize(
    "location",
    ["Zürich / Halle=3 / ..", "مختبر\u200f 2", "Lab 🌡️ 4", "a" * 128, "東京"],
)
def test_printable_text_emoji_and_rtl_marks_stay_valid(
    compiled: CompiledSpec, location: str
) -> None:
    row = reading(1, location=location)
    assert compiled.errors(row, LATEST) == []
    assert compiled.all_valid(row, LATEST) is True


def test_control_characters_may_be_allowed_by_the_spec() -> None:
    spec = load_validation_spec()
    allowing = spec.model_copy(update={"strings": StringPolicy(allow_control_characters=True)})
    compiled = CompiledSpec(allowing)
    row = reading(1, model="Env\tMonitor")
    assert compiled.errors(row, LATEST) == []
    assert compiled.all_valid(row, LATEST) is True


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


_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.text(alphabet="\x00\n\t\x7f\u200fA9_.:-😀", max_size=8),
    st.sampled_from(
        [
            "2025-08-18T10:00:00Z",
            "2025-08-18 10:00:00+00:00",
            "2025-08-18T10:00:00",
            "0000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2025-06-30T23:59:60Z",
            "2999-01-01T00:00:00Z",
            "spike",
            "1.4.0",
            "+05:00",
        ]
    ),
    st.lists(st.integers(), max_size=2),
)


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(st.sampled_from(sorted(reading(1))), _ODD_VALUES, max_size=4),
    st.sets(st.sampled_from(sorted(reading(1))), max_size=2),
)
def test_the_fast_path_and_the_full_rules_agree_on_generated_rows(
    compiled: CompiledSpec, changes: dict[str, Any], removed: set[str]
) -> None:
    row = {**reading(1), **changes}
    for name in removed:
        row.pop(name, None)
    full = compiled.describe_errors(row, LATEST)
    assert compiled.all_valid(row, LATEST) == (full == []), (row, full)
    orjson.dumps(full)  # every error can be written
