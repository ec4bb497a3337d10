"""A bad pipeline config stops start-up naming the file, the key path and the problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.config import (
    ConfigError,
    ConfigFileError,
    ConfigValidationError,
    load_pipeline_config,
)
from tests.sensorpipe.config.conftest import Mutation, assert_names

# -- the file itself -------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "pipeline-config-v2.yaml"
    with pytest.raises(ConfigFileError) as info:
        load_pipeline_config(path, env={})
    assert_names(info.value, path, None, "file not found")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pipeline-config-v2.yaml"
    path.write_text("version: 2\nqueues:\n  prefix: x\n  max_receive_count: [1, 2\nruntime: {}\n")
    with pytest.raises(ConfigFileError) as info:
        load_pipeline_config(path, env={})
    assert_names(info.value, path, None, "invalid YAML")
    assert "line 5" in info.value.problem


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "pipeline-config-v2.yaml"
    path.write_text("# only a comment\n")
    with pytest.raises(ConfigFileError) as info:
        load_pipeline_config(path, env={})
    assert_names(info.value, path, None, "file is empty")


def test_top_level_list(tmp_path: Path) -> None:
    path = tmp_path / "pipeline-config-v2.yaml"
    path.write_text("- version: 2\n- queues: {}\n")
    with pytest.raises(ConfigFileError) as info:
        load_pipeline_config(path, env={})
    assert_names(info.value, path, None, "top level must be a mapping", "list")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pipeline-config-v2.yaml"
    path.write_bytes(b"version: 2\nname: \xff\xfe\n")
    with pytest.raises(ConfigFileError) as info:
        load_pipeline_config(path, env={})
    assert_names(info.value, path, None, "not UTF-8")


# -- values ----------------------------------------------------------------------------


def _set(path: str, value: Any) -> Mutation:
    """Set a dotted key path (creating mappings on the way)."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


BAD_VALUES: list[tuple[str, Mutation, str, tuple[str, ...]]] = [
    (
        "unknown key",
        _set("windowing.grace_secs", 5),
        "windowing.grace_secs",
        ("unknown key",),
    ),
    (
        "unknown section",
        _set("routing", {"a": 1}),
        "routing",
        ("unknown key",),
    ),
    (
        "wrong type",
        _set("queues.visibility_timeout_seconds", "soon"),
        "queues.visibility_timeout_seconds",
        ("valid integer",),
    ),
    (
        "out of range",
        _set("queues.max_receive_count", 0),
        "queues.max_receive_count",
        ("greater than or equal to 1",),
    ),
    (
        "out of range above",
        _set("runtime.max_messages", 11),
        "runtime.max_messages",
        ("less than or equal to 10",),
    ),
    (
        "body limit leaves no room for a DLQ reason",
        _set("queues.max_body_bytes", 1024 * 1024),
        "queues.max_body_bytes",
        ("less than or equal to 1040384",),
    ),
    (
        "wrong config version",
        _set("version", 1),
        "version",
        ("Input should be 2",),
    ),
    (
        "bad bucket prefix",
        _set("buckets.prefix", "Sensor_Pipe"),
        "buckets.prefix",
        ("not a valid S3 bucket name", "Sensor_Pipe-raw"),
    ),
    (
        "bad explicit bucket name",
        _set("buckets.names", {"error": "x"}),
        "buckets.names.error",
        ("not a valid S3 bucket name",),
    ),
    (
        "unknown bucket kind",
        _set("buckets.names", {"cold": "cold-bucket"}),
        "buckets.names.cold",
        ("raw", "aggregated"),
    ),
    (
        "bad queue prefix",
        _set("queues.prefix", "my queue"),
        "queues.prefix",
        ("queue prefix",),
    ),
    (
        "unknown destination",
        _set("scenarios.raw.destinations", ["raw", "lake"]),
        "scenarios.raw.destinations[1]",
        ("'raw'", "'notifier'"),
    ),
    (
        "no destination",
        _set("scenarios.raw.destinations", []),
        "scenarios.raw.destinations",
        ("at least 1",),
    ),
    (
        "filter without validate",
        _set("scenarios.filtered.validate", False),
        "scenarios.filtered.filter",
        ("needs validate: true",),
    ),
    (
        "aggregator without validate",
        _set("scenarios.aggregated.validate", False),
        "scenarios.aggregated.destinations",
        ("['aggregator']", "need validate: true"),
    ),
    (
        "destination listed twice",
        _set("scenarios.lineage.destinations", ["archival", "archival"]),
        "scenarios.lineage.destinations",
        ("twice",),
    ),
    (
        "kms without key",
        _set("buckets.encryption", {"mode": "sse-kms"}),
        "buckets.encryption.kms_key_id",
        ("needs kms_key_id",),
    ),
    (
        "unknown encryption mode",
        _set("buckets.encryption", {"mode": "aes"}),
        "buckets.encryption.mode",
        ("'sse-s3'", "'sse-kms'"),
    ),
    (
        "missing builtin scenario",
        _delete("scenarios.lineage"),
        "scenarios",
        ("built-in scenarios", "lineage"),
    ),
    (
        "bad scenario name",
        _set("scenarios.Night Shift", {"destinations": ["raw"]}),
        "scenarios",
        ("Night Shift", "lower-case"),
    ),
    (
        "default scenario unknown",
        _set("pipeline.default_scenario", "nightly"),
        "pipeline.default_scenario",
        ("'nightly'", "is not a scenario"),
    ),
    (
        "lifecycle below the S3 minimum",
        _set("buckets.lifecycle.raw.infrequent_access_days", 7),
        "buckets.lifecycle.raw.infrequent_access_days",
        ("greater than or equal to 30",),
    ),
    (
        "unknown filter operator",
        _set("filters", [{"name": "f", "field": "status_code", "op": "like", "value": 1}]),
        "filters[0].op",
        ("'eq'",),
    ),
    (
        "unknown source table",
        _set("source.table_name", "readings"),
        "source.table_name",
        ("'sensor_readings'", "'sensor_data'"),
    ),
    (
        "section of the wrong shape",
        _set("runtime", [1, 2]),
        "runtime",
        ("valid dictionary",),
    ),
]


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [pytest.param(m, k, w, id=name) for name, m, k, w in BAD_VALUES],
)
def test_bad_value_names_file_key_and_problem(
    write_pipeline_config: Callable[[Mutation], Path],
    mutate: Mutation,
    key: str,
    words: tuple[str, ...],
) -> None:
    path = write_pipeline_config(mutate)
    with pytest.raises(ConfigValidationError) as info:
        load_pipeline_config(path, env={})
    assert_names(info.value, path, key, *words)


def test_every_problem_is_reported_not_only_the_first(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    def mutate(data: dict[str, Any]) -> None:
        _set("queues.max_receive_count", 0)(data)
        _set("windowing.window_seconds", "minute")(data)
        _set("notification.min_anomalies", 0)(data)

    path = write_pipeline_config(mutate)
    with pytest.raises(ConfigValidationError) as info:
        load_pipeline_config(path, env={})
    keys = [k for k, _ in info.value.problems]
    assert keys == [
        "queues.max_receive_count",
        "windowing.window_seconds",
        "notification.min_anomalies",
    ]
    assert all(k in str(info.value) for k in keys)


def test_errors_are_config_errors_with_a_hint(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    path = write_pipeline_config(_set("queues.max_receive_count", -1))
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path, env={})
    assert info.value.hint is not None
    assert "SENSORPIPE__" in info.value.hint


def test_the_packaged_default_loads_and_has_every_builtin_route() -> None:
    config = load_pipeline_config(env={})
    assert config.pipeline.default_scenario == "raw"
    assert set(config.scenario_names()) >= {
        "raw",
        "schematized",
        "filtered",
        "lineage",
        "aggregated",
        "multi-destination",
        "notification",
    }
    assert config.buckets.name("raw") == "sensorpipe-raw"
