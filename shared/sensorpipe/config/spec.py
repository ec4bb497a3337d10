"""Typed model of ``sensor_validation_spec_v2.yaml``: what a valid reading is.

The validator service interprets it; this module only says what the file may contain
so that a bad spec stops start-up with the key named.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensorpipe.config.errors import FieldProblem

_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FieldType = Literal["string", "integer", "number", "boolean", "timestamp"]


class FieldSpec(_Strict):
    """One field of a reading. ``required`` means present and not null."""

    type: FieldType
    required: bool = False
    min: float | None = None
    max: float | None = None
    enum: list[Any] | None = None
    pattern: str | None = None
    unit: str | None = None
    description: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _range_order(self) -> FieldSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise FieldProblem("min", f"min ({self.min}) is greater than max ({self.max})")
        if (self.min is not None or self.max is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise FieldProblem(
                "min" if self.min is not None else "max",
                f"min/max only apply to numeric fields, not {self.type}",
            )
        return self


CrossFieldKind = Literal[
    "anomaly_type_requires_flag",  # anomaly_flag = 1  <=>  anomaly_type is set
    "status_code_matches_flag",  # status_code = 1  <=>  anomaly_flag = 1
]


class CrossFieldRule(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    kind: CrossFieldKind
    description: str = ""


class Threshold(_Strict):
    """A value outside [low, high] marks a reading anomalous (not invalid)."""

    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _order(self) -> Threshold:
        if self.low is None and self.high is None:
            raise ValueError("a threshold needs low, high or both")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise FieldProblem("low", f"low ({self.low}) is greater than high ({self.high})")
        return self


class AnomalyDetection(_Strict):
    use_sensor_flag: bool = True
    thresholds: dict[str, Threshold] = Field(default_factory=dict)


class TimestampPolicy(_Strict):
    max_future_skew_seconds: float = Field(default=300, ge=0)
    require_timezone: bool = True


class StringPolicy(_Strict):
    """Control characters (C0: U+0000-U+001F, and DEL) in a text field are invalid unless
    allowed: a NUL or a newline in a sensor id or location breaks log lines, CSV exports
    and terminal output downstream, and no real name holds one. Emoji, right-to-left
    marks and other printable or formatting characters stay valid."""

    allow_control_characters: bool = False


class ValidationSpec(_Strict):
    spec_version: str
    name: str = "sensor-readings"
    description: str = ""
    timestamp_field: str = "timestamp"
    timestamps: TimestampPolicy = TimestampPolicy()
    strings: StringPolicy = StringPolicy()
    fields: dict[str, FieldSpec] = Field(min_length=1)
    cross_field_rules: list[CrossFieldRule] = Field(default_factory=list)
    anomaly_detection: AnomalyDetection = AnomalyDetection()

    @field_validator("spec_version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.match(value):
            raise ValueError(
                f"spec_version {value!r} is not semantic versioning (MAJOR.MINOR.PATCH)"
            )
        return value

    @model_validator(mode="after")
    def _references_exist(self) -> ValidationSpec:
        if self.timestamp_field not in self.fields:
            raise FieldProblem(
                "timestamp_field", f"timestamp_field {self.timestamp_field!r} is not in fields"
            )
        if self.fields[self.timestamp_field].type != "timestamp":
            raise FieldProblem(
                f"fields.{self.timestamp_field}.type",
                f"field {self.timestamp_field!r} must have type 'timestamp'",
            )
        for metric in self.anomaly_detection.thresholds:
            spec = self.fields.get(metric)
            if spec is None or spec.type not in ("integer", "number"):
                raise FieldProblem(
                    f"anomaly_detection.thresholds.{metric}",
                    f"threshold on {metric!r}, which is not a numeric field of the spec",
                )
        return self
