"""The validation spec compiled once into plain Python checks.

Per field one closure does the type check and then every constraint of that field, so a
valid value costs one call and a few comparisons (no pydantic, no allocation). Every
error of a record is reported, each as ``{field, rule, value, expected, message}``; a
value of the wrong type is reported once (its range or pattern is not checked).

Rule names: ``record_shape``, ``required``, ``type``, ``finite`` (NaN or an infinity in
a numeric field), ``range`` (the spec's limits, or an integer beyond 64 bits),
``control_character`` (a C0 control character or DEL in a string, unless the spec's
``strings.allow_control_characters``), ``enum``, ``pattern``, ``timestamp_format``,
``timestamp_range`` (outside years 1-9999 in UTC), ``timestamp_timezone``,
``timestamp_future``, and the names of the spec's cross-field rules. Booleans are never
numbers, and numbers in strings ("21.5") are type errors. Timestamps are read by
``sensorpipe.records.read_timestamp``, the definition every later stage reads with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from sensorpipe.config.spec import CrossFieldRule, FieldSpec, ValidationSpec
from sensorpipe.objects import json_safe
from sensorpipe.records import TimestampError, read_timestamp
from services.validator.fastpath import CONTROL_CHARACTER, generate_all_valid

FieldError = dict[str, Any]
# A field check gets the value (never None) and the latest acceptable epoch second.
FieldCheck = Callable[[Any, float], list[FieldError] | None]
RecordCheck = Callable[[dict[str, Any]], FieldError | None]


def field_error(field: str, rule: str, value: Any, expected: str, message: str) -> FieldError:
    """One error; its value as JSON can write it (``objects.json_safe``)."""
    return {
        "field": field,
        "rule": rule,
        "value": json_safe(value),
        "expected": expected,
        "message": message,
    }


_TYPE_NAMES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "timestamp": "ISO-8601 timestamp string",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _is_type(kind: str) -> Callable[[Any], bool]:
    if kind == "integer":
        return lambda v: type(v) is int  # never bool (JSON true is not 1)
    if kind == "number":
        return lambda v: type(v) is float or type(v) is int
    if kind == "boolean":
        return lambda v: type(v) is bool
    return lambda v: type(v) is str  # string, timestamp


# What every later stage can carry: orjson writes non-finite floats as null and refuses
# integers beyond 64 bits, so such a value would be lost, or stop its batch, downstream.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _representable(name: str) -> Callable[[Any], FieldError | None]:
    def check(v: Any) -> FieldError | None:
        if type(v) is float:
            if math.isfinite(v):
                return None
            text = json_safe(v)
            return field_error(
                name, "finite", v, "a finite number", f"{name} is {text}, not a finite number"
            )
        if INT64_MIN <= v <= INT64_MAX:
            return None
        return field_error(
            name,
            "range",
            v,
            f"an integer of 64 bits ({INT64_MIN} .. {INT64_MAX})",
            f"{name} {v} does not fit in 64 bits",
        )

    return check


def control_character(value: str) -> re.Match[str] | None:
    """The first C0 control character (or DEL) of ``value``; printable text has none."""
    return None if value.isprintable() else CONTROL_CHARACTER.search(value)


def _no_control(name: str) -> Callable[[Any], FieldError | None]:
    def check(v: str) -> FieldError | None:
        found = control_character(v)
        if found is None:
            return None
        return field_error(
            name,
            "control_character",
            v,
            "no control characters (U+0000-U+001F, U+007F)",
            f"{name} holds control character U+{ord(found.group()):04X} at position "
            f"{found.start()}: remove it or replace it by a visible character",
        )

    return check


def _constraints(
    name: str, spec: FieldSpec, *, allow_control: bool = False
) -> list[Callable[[Any], FieldError | None]]:
    """The checks that follow a passed type check, in the order they are reported."""
    checks: list[Callable[[Any], FieldError | None]] = []
    if spec.type == "string" and not allow_control:
        checks.append(_no_control(name))
    if spec.min is not None or spec.max is not None:
        lo = -math.inf if spec.min is None else spec.min
        hi = math.inf if spec.max is None else spec.max
        parts = [f">= {spec.min:g}" if spec.min is not None else "", ""]
        parts[1] = f"<= {spec.max:g}" if spec.max is not None else ""
        expected = " and ".join(p for p in parts if p)

        def in_range(v: Any) -> FieldError | None:
            if lo <= v <= hi:
                return None
            return field_error(name, "range", v, expected, f"{name} {v} is out of range")

        checks.append(in_range)
    if spec.enum is not None:
        allowed = list(spec.enum)
        expected_enum = f"one of {allowed}"

        def in_enum(v: Any) -> FieldError | None:
            if v in allowed:
                return None
            return field_error(name, "enum", v, expected_enum, f"{name} {v!r} is not allowed")

        checks.append(in_enum)
    if spec.pattern is not None:
        search = re.compile(spec.pattern).search
        expected_pattern = f"matches {spec.pattern}"

        def matches(v: Any) -> FieldError | None:
            if search(v) is not None:
                return None
            return field_error(
                name, "pattern", v, expected_pattern, f"{name} {v!r} does not match the pattern"
            )

        checks.append(matches)
    return checks


def _timestamp_check(
    name: str, require_timezone: bool, skew_s: float
) -> Callable[[str, float], FieldError | None]:
    """Accepts exactly what ``records.read_timestamp`` reads (the aggregator, the notifier
    and the partitions read with it), zoned if the spec says so, not too far ahead."""

    def check(v: str, latest: float) -> FieldError | None:
        try:
            stamp = read_timestamp(v)
        except TimestampError as exc:
            if exc.problem == "range":
                return field_error(
                    name,
                    "timestamp_range",
                    v,
                    "a UTC instant within years 0001-9999",
                    f"{name} {exc.reason}",
                )
            return field_error(
                name,
                "timestamp_format",
                v,
                "ISO-8601 date and time (YYYY-MM-DDTHH:MM[:SS[.fff]] and Z or ±HH:MM)",
                f"{name} {exc.reason}",
            )
        if require_timezone and not stamp.zoned:
            return field_error(
                name,
                "timestamp_timezone",
                v,
                "a UTC offset (Z or +HH:MM)",
                f"{name} {v!r} has no timezone",
            )
        if stamp.at_us > latest * 1_000_000:
            return field_error(
                name,
                "timestamp_future",
                v,
                f"not later than {skew_s:g} s after processing time",
                # No "now" in the message: a redelivery must write the same bytes.
                f"{name} {v} is more than {skew_s:g} s in the future",
            )
        return None

    return check


def compile_field(
    name: str,
    spec: FieldSpec,
    *,
    require_timezone: bool,
    skew_s: float,
    allow_control: bool = False,
) -> FieldCheck:
    is_type = _is_type(spec.type)
    expected_type = _TYPE_NAMES[spec.type]
    constraints = tuple(_constraints(name, spec, allow_control=allow_control))
    # A number that is not finite or too large is reported once (like a wrong type).
    representable = _representable(name) if spec.type in ("integer", "number") else None
    timestamp = (
        _timestamp_check(name, require_timezone, skew_s) if spec.type == "timestamp" else None
    )

    def check(value: Any, latest: float) -> list[FieldError] | None:
        if not is_type(value):
            message = f"{name} is {_json_type(value)}, expected {expected_type}"
            return [field_error(name, "type", value, expected_type, message)]
        if representable is not None:
            unfit = representable(value)
            if unfit is not None:
                return [unfit]
        found: list[FieldError] | None = None
        for constraint in constraints:
            error = constraint(value)
            if error is not None:
                found = [error] if found is None else [*found, error]
        if timestamp is not None:
            error = timestamp(value, latest)
            if error is not None:
                found = [error] if found is None else [*found, error]
        return found

    return check


def _present(value: Any) -> bool:
    return value is not None and value != ""


def compile_cross_field(rule: CrossFieldRule) -> RecordCheck:
    """Cross-field rules read fields that already passed their own checks."""
    name = rule.name
    if rule.kind == "anomaly_type_requires_flag":

        def type_requires_flag(data: dict[str, Any]) -> FieldError | None:
            flag, kind = data.get("anomaly_flag"), data.get("anomaly_type")
            if (flag == 1) == _present(kind):
                return None
            return field_error(
                "anomaly_type",
                name,
                {"anomaly_flag": flag, "anomaly_type": kind},
                "anomaly_type set exactly when anomaly_flag is 1",
                f"anomaly_flag is {flag} but anomaly_type is {kind!r}",
            )

        return type_requires_flag

    def status_matches_flag(data: dict[str, Any]) -> FieldError | None:
        flag, status = data.get("anomaly_flag"), data.get("status_code")
        if (flag == 1) == (status == 1):
            return None
        return field_error(
            "status_code",
            name,
            {"anomaly_flag": flag, "status_code": status},
            "status_code 1 exactly when anomaly_flag is 1",
            f"status_code is {status} but anomaly_flag is {flag}",
        )

    return status_matches_flag


_CROSS_FIELD_INPUTS = {
    "anomaly_type_requires_flag": ("anomaly_flag", "anomaly_type"),
    "status_code_matches_flag": ("anomaly_flag", "status_code"),
}


class CompiledSpec:
    """``errors(sensor_data, latest_epoch)``: every problem of one reading, [] if none.

    A generated all-in-one predicate answers "valid?" for the common case; only a
    reading it refuses goes through the per-field checks that describe each error.
    """

    def __init__(
        self, spec: ValidationSpec, *, max_future_skew_seconds: float | None = None
    ) -> None:
        self.spec_version = spec.spec_version
        self.timestamp_field = spec.timestamp_field
        self.max_future_skew_seconds = (
            spec.timestamps.max_future_skew_seconds
            if max_future_skew_seconds is None
            else max_future_skew_seconds
        )
        policy = spec.timestamps
        checks = {
            name: compile_field(
                name,
                fs,
                require_timezone=policy.require_timezone,
                skew_s=self.max_future_skew_seconds,
                allow_control=spec.strings.allow_control_characters,
            )
            for name, fs in spec.fields.items()
        }
        self.checks = checks
        self._fields: tuple[tuple[str, bool, FieldCheck], ...] = tuple(
            (name, fs.required, checks[name]) for name, fs in spec.fields.items()
        )
        self._cross: tuple[tuple[RecordCheck, tuple[str, ...]], ...] = tuple(
            (compile_cross_field(rule), _CROSS_FIELD_INPUTS[rule.kind])
            for rule in spec.cross_field_rules
        )
        self.all_valid = generate_all_valid(spec, checks, [rule for rule, _ in self._cross])

    def errors(self, data: Any, latest: float) -> list[FieldError]:
        if type(data) is dict and self.all_valid(data, latest):
            return []
        return self.describe_errors(data, latest)

    def describe_errors(self, data: Any, latest: float) -> list[FieldError]:
        """Every error of the reading, field by field (the slow, complete path)."""
        if not isinstance(data, dict):
            return [
                field_error(
                    "sensor_data",
                    "record_shape",
                    data,
                    "an object with the reading's fields",
                    f"sensor_data is {_json_type(data)}, expected an object",
                )
            ]
        errors: list[FieldError] = []
        get = data.get
        for name, required, check in self._fields:
            value = get(name)
            if value is None:
                if required:
                    errors.append(
                        field_error(
                            name,
                            "required",
                            value,
                            "present and not null",
                            f"{name} is {'null' if name in data else 'missing'}",
                        )
                    )
                continue
            found = check(value, latest)
            if found is not None:
                errors.extend(found)
        failed = {e["field"] for e in errors} if errors else ()
        for rule, inputs in self._cross:
            if failed and any(f in failed for f in inputs):
                continue  # an input is already wrong; the rule would only echo that
            error = rule(data)
            if error is not None:
                errors.append(error)
        return errors
