"""Helpers to write variations of the packaged default files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sensorpipe.config import ConfigError, default_file

Mutation = Callable[[dict[str, Any]], None]


def default_data(name: str) -> dict[str, Any]:
    data = yaml.safe_load(default_file(name).read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture
def write_pipeline_config(tmp_path: Path) -> Callable[[Mutation], Path]:
    """Write the default pipeline config after ``mutate`` changed it; returns the path."""

    def write(mutate: Mutation) -> Path:
        data = default_data("pipeline-config-v2.yaml")
        mutate(data)
        path = tmp_path / "pipeline-config-v2.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[Mutation], Path]:
    def write(mutate: Mutation) -> Path:
        data = default_data("sensor_validation_spec_v2.yaml")
        mutate(data)
        path = tmp_path / "sensor_validation_spec_v2.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def assert_names(error: ConfigError, file: Path, key: str | None, *problem_words: str) -> None:
    """The error names the file, the key path and the problem, in its fields and its text."""
    text = str(error)
    assert error.file == str(file)
    assert str(file) in text
    if key is not None:
        assert error.key == key, f"key {error.key!r} != {key!r} in: {text}"
        assert f"'{key}'" in text
    for word in problem_words:
        assert word.lower() in error.problem.lower(), f"{word!r} not in {error.problem!r}"
        assert word.lower() in text.lower()
