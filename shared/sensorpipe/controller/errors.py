"""Errors of the pipeline controller.

Every error names the database file it concerns and says what to do. Subclasses of
``InvalidInputError`` mean the caller asked for something invalid (the CLI exits 2);
every other ``ControllerError`` is a runtime problem with the database (the CLI exits 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sensorpipe.errors import SensorPipeError


class ControllerError(SensorPipeError):
    """Root of every error the pipeline controller raises on purpose."""

    def __init__(self, message: str, *, db_path: Path | str | None, hint: str | None = None):
        self.db_path = str(db_path) if db_path is not None else None
        where = f"{self.db_path}: " if self.db_path is not None else ""
        super().__init__(f"{where}{message}", hint=hint)


class InvalidInputError(ControllerError):
    """The request itself is invalid; nothing was read or written."""


class InvalidScenarioNameError(InvalidInputError):
    """A scenario name does not match the allowed pattern (e.g. it contains SQL)."""

    def __init__(self, scenario: str, *, pattern: str, db_path: Path | str | None = None):
        self.scenario = scenario
        super().__init__(
            f"scenario name {scenario!r} is not a valid name",
            db_path=db_path,
            hint=f"scenario names must match {pattern}",
        )


class UnknownScenarioError(InvalidInputError):
    """A well-formed scenario name that is neither built in nor in the pipeline config."""

    def __init__(
        self, scenario: str, *, valid: Iterable[str], db_path: Path | str | None = None
    ) -> None:
        self.scenario = scenario
        self.valid = sorted(valid)
        super().__init__(
            f"unknown scenario {scenario!r}",
            db_path=db_path,
            hint=f"valid scenarios: {', '.join(self.valid)}; add new ones to the pipeline config",
        )


class InvalidOperatorError(InvalidInputError):
    """``--by`` is empty, blank or too long: every change must name who made it."""


class InvalidReasonError(InvalidInputError):
    """``--reason`` is too long or the extra metadata is not a JSON object."""


class InvalidLimitError(InvalidInputError):
    """A history limit or polling interval outside its allowed range."""


class DatabaseUnavailableError(ControllerError):
    """The database file cannot be used: missing directory, read-only, corrupt, unreadable."""


class DatabaseLockedError(ControllerError):
    """Another process held the write lock for longer than the lock timeout."""

    def __init__(self, *, db_path: Path | str, waited_s: float, attempts: int) -> None:
        self.waited_s = waited_s
        self.attempts = attempts
        super().__init__(
            f"database is locked: gave up after {attempts} attempts over {waited_s:.1f} s",
            db_path=db_path,
            hint="another process holds a long write transaction; find it "
            "(e.g. `fuser` on the file) or retry with a longer lock timeout",
        )


class UnsupportedSchemaError(ControllerError):
    """``pipeline_config`` exists in a layout this version neither uses nor can migrate."""


class CorruptConfigRowError(ControllerError):
    """A row of ``pipeline_config`` holds a value that cannot be parsed."""

    def __init__(self, *, db_path: Path | str, row_id: int, problem: str) -> None:
        self.row_id = row_id
        super().__init__(
            f"pipeline_config row {row_id}: {problem}",
            db_path=db_path,
            hint="the row was edited outside the controller; fix it by hand or restore a backup",
        )


class EmptyConfigError(ControllerError):
    """``pipeline_config`` has no row at all, so no scenario is active."""
