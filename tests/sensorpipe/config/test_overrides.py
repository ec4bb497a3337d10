"""``SENSORPIPE__SECTION__KEY`` environment overrides win over the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sensorpipe.config import ConfigError, ConfigValidationError, load_pipeline_config
from tests.sensorpipe.config.conftest import Mutation, assert_names


def _set_grace(value: float) -> Mutation:
    def mutate(data: dict[str, object]) -> None:
        data["windowing"] = {"grace_seconds": value, "window_seconds": 60}

    return mutate


def test_environment_wins_over_the_file(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    path = write_pipeline_config(_set_grace(10))
    config = load_pipeline_config(path, env={"SENSORPIPE__WINDOWING__GRACE_SECONDS": "3.5"})
    assert config.windowing.grace_seconds == 3.5
    # Only the overridden key changes; its siblings keep the file's values.
    assert config.windowing.window_seconds == 60


def test_override_of_a_key_the_file_does_not_mention(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    path = write_pipeline_config(lambda data: None)
    env = {
        "SENSORPIPE__QUEUES__AGGREGATE_SHARDS": "4",
        "SENSORPIPE__BUCKETS__NAMES__RAW": "lake-raw-eu",
        "SENSORPIPE__RUNTIME__COMPRESS": "false",
    }
    config = load_pipeline_config(path, env=env)
    assert config.queues.aggregate_shard_names()[-1].endswith("aggregate-3")
    assert config.buckets.name("raw") == "lake-raw-eu"
    assert config.runtime.compress is False


def test_json_value_replaces_a_list_whole(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    path = write_pipeline_config(lambda data: None)
    env = {
        "SENSORPIPE__FILTERS": '[{"name": "cold", "field": "temperature", "op": "lt", '
        '"value": -40}]'
    }
    config = load_pipeline_config(path, env=env)
    assert [(f.name, f.op, f.value) for f in config.filters] == [("cold", "lt", -40)]


def test_process_environment_is_the_default_and_an_explicit_env_replaces_it(
    write_pipeline_config: Callable[[Mutation], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_pipeline_config(_set_grace(10))
    monkeypatch.setenv("SENSORPIPE__WINDOWING__GRACE_SECONDS", "7")
    assert load_pipeline_config(path).windowing.grace_seconds == 7
    # A caller that passes its own environment is not affected by the process one.
    assert load_pipeline_config(path, env={}).windowing.grace_seconds == 10


def test_bad_override_names_the_key_and_the_variable(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    path = write_pipeline_config(lambda data: None)
    with pytest.raises(ConfigValidationError) as info:
        load_pipeline_config(path, env={"SENSORPIPE__QUEUES__MAX_RECEIVE_COUNT": "zero"})
    assert_names(info.value, path, "queues.max_receive_count", "valid integer")
    assert "SENSORPIPE__QUEUES__MAX_RECEIVE_COUNT" in str(info.value)


def test_override_reaching_inside_a_list_is_refused(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    path = write_pipeline_config(lambda data: None)
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path, env={"SENSORPIPE__FILTERS__NAME": "x"})
    assert_names(info.value, path, "filters.name", "not a mapping")


def test_unknown_key_from_the_environment_is_an_error(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    path = write_pipeline_config(lambda data: None)
    with pytest.raises(ConfigValidationError) as info:
        load_pipeline_config(path, env={"SENSORPIPE__WINDOWING__GRACE": "1"})
    assert_names(info.value, path, "windowing.grace", "unknown key")
