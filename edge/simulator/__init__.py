"""A realistic sensor simulator writing the sensor-log-generator SQLite layout.

Many sensors at several locations, Gaussian values, anomalies that are actually visible,
and optional invalid, late and duplicate rows, all reproducible from a seed.
"""

from edge.simulator.errors import SimulatorError
from edge.simulator.schema import COLUMNS, SENSOR_TABLES, open_database
from edge.simulator.simulation import Manifest, Simulation, SimulationOptions

__all__ = [
    "COLUMNS",
    "SENSOR_TABLES",
    "Manifest",
    "Simulation",
    "SimulationOptions",
    "SimulatorError",
    "open_database",
]
