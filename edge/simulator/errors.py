"""Errors of the sensor simulator."""

from __future__ import annotations

from sensorpipe.errors import SensorPipeError


class SimulatorError(SensorPipeError):
    """The simulator cannot run as asked (bad option, unusable database)."""
