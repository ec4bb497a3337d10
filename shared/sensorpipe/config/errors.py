"""Configuration errors: every one names the file, the key path and the problem.

A bad per-process setting (a ``SENSORPIPE_...`` variable or a flag) is a
:class:`SettingsError`, reported the same way: the variable or flag, its value, the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sensorpipe.errors import SensorPipeError


class FieldProblem(ValueError):
    """Raised by a model validator to pin a cross-field problem on one key.

    Pydantic reports a model validator's error at the model's own path; ``key`` (relative
    to that model, dotted) lets the loader name the exact key instead.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(problem)


class ConfigError(SensorPipeError):
    """A configuration file cannot be used; start-up must stop."""

    def __init__(
        self,
        problem: str,
        *,
        file: Path | str | None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else "<defaults>"
        self.key = key
        self.problem = problem
        where = self.file if key is None else f"{self.file}: key '{key}'"
        super().__init__(f"{where}: {problem}", hint=hint)


class ConfigFileError(ConfigError):
    """The file is missing, unreadable or not valid YAML."""


class ConfigExpansionError(ConfigError):
    """A ``${VAR}`` placeholder has no value and no default."""


class ConfigValidationError(ConfigError):
    """The YAML parsed but a value has the wrong type, range or shape.

    ``problems`` holds every (key path, problem) pair found, not only the first.
    """

    def __init__(self, problems: list[tuple[str, str]], *, file: Path | str | None) -> None:
        self.problems = problems
        first_key, first_problem = problems[0]
        summary = first_problem
        if len(problems) > 1:
            others = "; ".join(f"'{k}': {p}" for k, p in problems[1:])
            summary = f"{first_problem} (and {len(problems) - 1} more: {others})"
        super().__init__(
            summary,
            file=file,
            key=first_key,
            hint="fix the value in the file or override it with a SENSORPIPE__... variable",
        )


@dataclass(frozen=True)
class SettingProblem:
    """One bad per-process setting: where it came from, what it was, what is wrong."""

    source: str  # the environment variable (SENSORPIPE_...) or the flag (--shard)
    value: str | None
    problem: str

    def __str__(self) -> str:
        given = self.source if self.value is None else f"{self.source}={self.value}"
        return f"{given}: {self.problem}"


class SettingsError(SensorPipeError):
    """A per-process setting (environment variable or flag) is unusable; start-up stops.

    Reported like :class:`ConfigValidationError`: the first problem, then
    ``(and N more: ...)`` with the others, on one line.
    """

    def __init__(self, problems: list[SettingProblem]) -> None:
        self.problems = problems
        summary = str(problems[0])
        if len(problems) > 1:
            others = "; ".join(str(p) for p in problems[1:])
            summary = f"{summary} (and {len(problems) - 1} more: {others})"
        super().__init__(summary)
