"""Typed configuration: the pipeline config and the validation spec."""

from sensorpipe.config.errors import (
    ConfigError,
    ConfigExpansionError,
    ConfigFileError,
    ConfigValidationError,
)
from sensorpipe.config.loading import default_file, load_pipeline_config, load_validation_spec
from sensorpipe.config.pipeline import (
    BucketKind,
    Destination,
    FilterRule,
    PipelineConfig,
    ScenarioRoute,
)
from sensorpipe.config.spec import FieldSpec, ValidationSpec

__all__ = [
    "BucketKind",
    "ConfigError",
    "ConfigExpansionError",
    "ConfigFileError",
    "ConfigValidationError",
    "Destination",
    "FieldSpec",
    "FilterRule",
    "PipelineConfig",
    "ScenarioRoute",
    "ValidationSpec",
    "default_file",
    "load_pipeline_config",
    "load_validation_spec",
]
