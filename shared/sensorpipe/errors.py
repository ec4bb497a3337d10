"""The root of every exception this project raises on purpose.

Each subpackage defines its own specific subclasses next to the code that raises them;
they all carry the context an operator needs (what, where, why, what to do).
"""

from __future__ import annotations


class SensorPipeError(Exception):
    """Root exception of the sensorpipe library and its services."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")
