"""The pipeline controller: atomic, audited scenario switching over SQLite.

The uploader reads ``PipelineController(db).active()`` at the start of every batch and
stamps ``scenario`` and ``config_version`` on it; operators switch with the
``pipeline-controller`` command; the dashboard reads ``history()`` and ``watch()``.
"""

from sensorpipe.controller.errors import (
    ControllerError,
    CorruptConfigRowError,
    DatabaseLockedError,
    DatabaseUnavailableError,
    EmptyConfigError,
    InvalidInputError,
    InvalidLimitError,
    InvalidOperatorError,
    InvalidReasonError,
    InvalidScenarioNameError,
    UnknownScenarioError,
    UnsupportedSchemaError,
)
from sensorpipe.controller.models import ActiveScenario, Change, SetResult
from sensorpipe.controller.schema import SCHEMA_VERSION
from sensorpipe.controller.store import DEFAULT_LOCK_TIMEOUT_S, PipelineController
from sensorpipe.controller.validation import SCENARIO_NAME_PATTERN

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_S",
    "SCENARIO_NAME_PATTERN",
    "SCHEMA_VERSION",
    "ActiveScenario",
    "Change",
    "ControllerError",
    "CorruptConfigRowError",
    "DatabaseLockedError",
    "DatabaseUnavailableError",
    "EmptyConfigError",
    "InvalidInputError",
    "InvalidLimitError",
    "InvalidOperatorError",
    "InvalidReasonError",
    "InvalidScenarioNameError",
    "PipelineController",
    "SetResult",
    "UnknownScenarioError",
    "UnsupportedSchemaError",
]
