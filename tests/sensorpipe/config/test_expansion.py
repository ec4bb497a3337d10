"""``${VAR}`` / ``${VAR:-default}`` expansion anywhere in a value (origin.md bug 11)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sensorpipe.config import ConfigExpansionError, load_pipeline_config
from sensorpipe.config.expansion import expand_value
from tests.sensorpipe.config.conftest import Mutation, assert_names


def test_placeholder_inside_a_longer_string() -> None:
    assert expand_value("s3://${BUCKET}/raw", {"BUCKET": "b1"}, file="f") == "s3://b1/raw"


def test_several_placeholders_in_one_value() -> None:
    env = {"A": "x", "B": "y"}
    assert expand_value("${A}-${B}.${A}", env, file="f") == "x-y.x"


def test_default_used_when_unset_or_empty_and_ignored_when_set() -> None:
    assert expand_value("${NOPE:-fallback}", {}, file="f") == "fallback"
    assert expand_value("${EMPTY:-fallback}", {"EMPTY": ""}, file="f") == "fallback"
    assert expand_value("${SET:-fallback}", {"SET": "v"}, file="f") == "v"
    assert expand_value("pre-${NOPE:-}-post", {}, file="f") == "pre--post"


def test_double_dollar_escapes_a_literal_placeholder() -> None:
    assert expand_value("$${HOME}/x", {"HOME": "/root"}, file="f") == "${HOME}/x"
    assert expand_value("$${A}${A}", {"A": "1"}, file="f") == "${A}1"


def test_nested_mappings_and_lists_are_expanded_and_other_types_untouched() -> None:
    value = {"a": ["${X}", {"b": "${X}${X}"}], "n": 5, "t": True, "z": None}
    expanded = expand_value(value, {"X": "q"}, file="f")
    assert expanded == {"a": ["q", {"b": "qq"}], "n": 5, "t": True, "z": None}


def test_missing_variable_names_file_key_and_variable() -> None:
    with pytest.raises(ConfigExpansionError) as info:
        expand_value({"buckets": {"prefix": "p-${NOT_SET_ANYWHERE}"}}, {}, file="conf.yaml")
    error = info.value
    assert error.file == "conf.yaml"
    assert error.key == "buckets.prefix"
    assert "NOT_SET_ANYWHERE" in str(error)
    assert "not set" in error.problem


def test_missing_variable_inside_a_list_names_the_index() -> None:
    with pytest.raises(ConfigExpansionError) as info:
        expand_value({"filters": [{"value": "ok"}, {"value": "${GONE}"}]}, {}, file="f")
    assert info.value.key == "filters[1].value"


def test_malformed_placeholder_is_an_error_not_literal_text() -> None:
    with pytest.raises(ConfigExpansionError) as info:
        expand_value({"a": "x-${ SPACED}"}, {"SPACED": "v"}, file="f")
    assert info.value.key == "a"
    assert "malformed placeholder" in info.value.problem


def test_expansion_through_the_loader_inside_longer_values(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    def mutate(data: dict[str, object]) -> None:
        data["buckets"] = {"prefix": "${TEAM}-${STAGE:-dev}"}
        data["windowing"] = {"output_prefix": "win-${WINDOW:-1m}/${TEAM}"}

    path = write_pipeline_config(mutate)
    config = load_pipeline_config(path, env={"TEAM": "ops"})
    assert config.buckets.name("raw") == "ops-dev-raw"
    assert config.windowing.output_prefix == "win-1m/ops"


def test_numbers_from_placeholders_are_typed(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    def mutate(data: dict[str, object]) -> None:
        data["queues"] = {"visibility_timeout_seconds": "${VIS:-45}"}

    config = load_pipeline_config(write_pipeline_config(mutate), env={})
    assert config.queues.visibility_timeout_seconds == 45


def test_unset_variable_through_the_loader_names_file_and_key(
    write_pipeline_config: Callable[[Mutation], Path],
) -> None:
    def mutate(data: dict[str, object]) -> None:
        data["source"] = {"path": "/data/${EDGE_NODE}/sensor.db"}

    path = write_pipeline_config(mutate)
    with pytest.raises(ConfigExpansionError) as info:
        load_pipeline_config(path, env={})
    assert_names(info.value, path, "source.path", "EDGE_NODE", "not set")
