"""Errors of the edge uploader."""

from __future__ import annotations

from sensorpipe.errors import SensorPipeError


class UploaderError(SensorPipeError):
    """Root of the uploader's own errors."""


class SourceError(UploaderError):
    """The sensor database cannot be read (missing, locked, not SQLite, no table)."""


class UnknownTableError(SourceError):
    def __init__(self, table: str, allowed: tuple[str, ...]) -> None:
        self.table = table
        super().__init__(
            f"table {table!r} is not an accepted sensor table",
            hint=f"use one of {list(allowed)} (--table or source.table_name)",
        )


class CheckpointError(UploaderError):
    """The checkpoint file cannot be read or written."""


class StampError(UploaderError):
    """The active scenario cannot be read or has no route in the pipeline config."""
