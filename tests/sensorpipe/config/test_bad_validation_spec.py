"""A bad validation spec stops start-up naming the file, the key path and the problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.config import ConfigValidationError, load_pipeline_config, load_validation_spec
from tests.sensorpipe.config.conftest import Mutation, assert_names


def _field(name: str, **changes: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["fields"][name].update(changes)

    return mutate


def _top(key: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data[key] = value

    return mutate


def _threshold(metric: str, **bounds: float) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["anomaly_detection"]["thresholds"][metric] = bounds

    return mutate


BAD_SPECS: list[tuple[str, Mutation, str, tuple[str, ...]]] = [
    (
        "min greater than max",
        _field("temperature", min=100, max=-10),
        "fields.temperature.min",
        ("min (100.0) is greater than max (-10.0)",),
    ),
    (
        "bad regex",
        _field("sensor_id", pattern="^[A-Z(+$"),
        "fields.sensor_id.pattern",
        ("does not compile",),
    ),
    (
        "bad semver",
        _top("spec_version", "2.0"),
        "spec_version",
        ("'2.0'", "semantic versioning"),
    ),
    (
        "threshold on a non-numeric field",
        _threshold("location", low=1),
        "anomaly_detection.thresholds.location",
        ("'location'", "not a numeric field"),
    ),
    (
        "threshold on an unknown field",
        _threshold("radiation", high=5),
        "anomaly_detection.thresholds.radiation",
        ("not a numeric field",),
    ),
    (
        "threshold low above high",
        _threshold("temperature", low=50, high=10),
        "anomaly_detection.thresholds.temperature.low",
        ("greater than high",),
    ),
    (
        "range on a string field",
        _field("model", min=1),
        "fields.model.min",
        ("only apply to numeric fields",),
    ),
    (
        "unknown field type",
        _field("voltage", type="float"),
        "fields.voltage.type",
        ("'number'",),
    ),
    (
        "timestamp field missing",
        _top("timestamp_field", "reading_time"),
        "timestamp_field",
        ("'reading_time' is not in fields",),
    ),
    (
        "unknown cross-field rule kind",
        _top("cross_field_rules", [{"name": "r", "kind": "magic"}]),
        "cross_field_rules[0].kind",
        ("anomaly_type_requires_flag",),
    ),
    (
        "no fields",
        _top("fields", {}),
        "fields",
        ("at least 1",),
    ),
]


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [pytest.param(m, k, w, id=name) for name, m, k, w in BAD_SPECS],
)
def test_bad_spec_names_file_key_and_problem(
    write_spec: Callable[[Mutation], Path], mutate: Mutation, key: str, words: tuple[str, ...]
) -> None:
    path = write_spec(mutate)
    with pytest.raises(ConfigValidationError) as info:
        load_validation_spec(path, env={})
    assert_names(info.value, path, key, *words)


def test_spec_path_from_the_pipeline_config_is_used(
    write_spec: Callable[[Mutation], Path],
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    spec_path = write_spec(_top("spec_version", "3.1.4"))

    def point_at_spec(data: dict[str, Any]) -> None:
        data["validation"] = {"spec_path": str(spec_path)}

    config = load_pipeline_config(write_pipeline_config(point_at_spec), env={})
    assert load_validation_spec(config=config, env={}).spec_version == "3.1.4"


def test_packaged_default_spec_loads() -> None:
    spec = load_validation_spec(env={})
    assert spec.fields["temperature"].type == "number"
    assert spec.timestamp_field == "timestamp"
