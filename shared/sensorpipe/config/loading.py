"""Read a YAML file safely, expand placeholders, validate into a typed model.

Whatever goes wrong becomes a :class:`ConfigError` naming the file, the key path and
the problem, so a service refuses to start with a message an operator can act on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sensorpipe.config.errors import ConfigFileError, ConfigValidationError, FieldProblem
from sensorpipe.config.expansion import expand_value
from sensorpipe.config.overrides import apply_env_overrides
from sensorpipe.config.pipeline import PipelineConfig
from sensorpipe.config.spec import ValidationSpec

PIPELINE_CONFIG_ENV = "SENSORPIPE_PIPELINE_CONFIG"
VALIDATION_SPEC_ENV = "SENSORPIPE_VALIDATION_SPEC"
PIPELINE_CONFIG_FILE = "pipeline-config-v2.yaml"
VALIDATION_SPEC_FILE = "sensor_validation_spec_v2.yaml"

ModelT = TypeVar("ModelT", bound=BaseModel)


def default_file(name: str) -> Path:
    """Path of a packaged default file (the embedded default configuration)."""
    return Path(str(resources.files("sensorpipe.config") / "defaults" / name))


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse ``path`` with ``yaml.safe_load``; the top level must be a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(
            "file not found", file=path, hint="check the path or the *_CONFIG variable"
        ) from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read file: {exc.strerror}", file=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"not UTF-8 text ({exc.reason})", file=path) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(f"invalid YAML{where}: {problem}", file=path) from exc
    if data is None:
        raise ConfigFileError("file is empty", file=path)
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"top level must be a mapping of keys, found {type(data).__name__}", file=path
        )
    return data


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _validation_error(
    exc: ValidationError, path: Path | None, sources: Mapping[str, str]
) -> ConfigValidationError:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc: tuple[int | str, ...] = tuple(p for p in err["loc"] if p not in ("function-after",))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            loc = (*loc, *cause.key.split("."))
        message = err["msg"].removeprefix("Value error, ")
        if "[key]" in loc:  # pydantic's marker for a bad mapping key (not its value)
            loc = tuple(p for p in loc if p != "[key]")
            message = f"not an allowed key name: {message}"
        if err["type"] == "extra_forbidden":
            message = "unknown key (typo? it is not part of the schema)"
        key = _key_path(loc)
        source = next((v for k, v in sources.items() if key == k or key.startswith(k + ".")), None)
        if source is not None:
            message += f" (value from environment variable {source})"
        problems.append((key, message))
    return ConfigValidationError(problems, file=path)


def _load(
    model: type[ModelT], path: Path, env: Mapping[str, str] | None, *, overrides: bool
) -> ModelT:
    environ = os.environ if env is None else env
    data = expand_value(read_yaml_mapping(path), environ, file=path)
    sources: dict[str, str] = {}
    if overrides:
        data, sources = apply_env_overrides(data, environ, file=path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, path, sources) from None


def _resolve(
    path: Path | str | None, env_name: str, default_name: str, env: Mapping[str, str] | None
) -> Path:
    if path is not None:
        return Path(path)
    from_env = (os.environ if env is None else env).get(env_name)
    return Path(from_env) if from_env else default_file(default_name)


def load_pipeline_config(
    path: Path | str | None = None, *, env: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Load ``pipeline-config-v2.yaml`` (argument, else $SENSORPIPE_PIPELINE_CONFIG,
    else the packaged default). ``env`` (default ``os.environ``) feeds both the
    ``${VAR}`` placeholders and the ``SENSORPIPE__...`` overrides."""
    resolved = _resolve(path, PIPELINE_CONFIG_ENV, PIPELINE_CONFIG_FILE, env)
    return _load(PipelineConfig, resolved, env, overrides=True)


def load_validation_spec(
    path: Path | str | None = None,
    *,
    config: PipelineConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> ValidationSpec:
    """Load the validation spec: argument, else the pipeline config's
    ``validation.spec_path``, else $SENSORPIPE_VALIDATION_SPEC, else the packaged default."""
    if path is None and config is not None and config.validation.spec_path:
        path = config.validation.spec_path
    resolved = _resolve(path, VALIDATION_SPEC_ENV, VALIDATION_SPEC_FILE, env)
    return _load(ValidationSpec, resolved, env, overrides=False)
