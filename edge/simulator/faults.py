"""Faults a real edge database contains: invalid rows, late rows, duplicates.

Each invalid row breaks exactly one rule of the validation spec, named in the manifest
with the name the validator reports (``required``, ``type``, ``range``,
``timestamp_format``, ``timestamp_timezone``, ``timestamp_future`` or a cross-field
rule name), so tests can check that the validator rejects it for that reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Row = dict[str, Any]

INVALID_KINDS: tuple[str, ...] = (
    "missing_field",
    "wrong_type",
    "absurd_value",
    "bad_timestamp",
    "flag_mismatch",
)
_REQUIRED = ("temperature", "humidity", "location", "status_code", "anomaly_flag")
_WRONG_TYPES: tuple[tuple[str, Any], ...] = (
    ("temperature", "hot"),
    ("temperature", "23,5 C"),
    ("humidity", "n/a"),
    ("voltage", "ERR"),
    ("status_code", "OK"),
)
_ABSURD: tuple[tuple[str, float], ...] = (
    ("temperature", 9999.0),
    ("temperature", -273.5),
    ("humidity", 250.0),
    ("humidity", -40.0),
    ("pressure", 1.0e7),
    ("voltage", 480.0),
    ("vibration", -3.0),
)


@dataclass(frozen=True, slots=True)
class InvalidFault:
    kind: str
    field: str
    rule: str
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "field": self.field, "rule": self.rule}


class FaultInjector:
    """Decides, per reading, whether it is broken, late or duplicated (seeded)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        invalid_fraction: float,
        late_fraction: float,
        duplicate_fraction: float,
        late_delay_s: tuple[float, float],
    ) -> None:
        self._rng = rng
        self.invalid_fraction = invalid_fraction
        self.late_fraction = late_fraction
        self.duplicate_fraction = duplicate_fraction
        self.late_delay_s = late_delay_s

    def choose(self) -> str | None:
        """``"invalid"``, ``"late"`` or None; one draw per reading keeps runs reproducible."""
        draw = self._rng.random()
        if draw < self.invalid_fraction:
            return "invalid"
        if draw < self.invalid_fraction + self.late_fraction:
            return "late"
        return None

    def duplicate(self) -> bool:
        return self._rng.random() < self.duplicate_fraction

    def late_delay(self) -> float:
        return round(self._rng.uniform(*self.late_delay_s), 3)

    def break_row(self, row: Row, event_time: datetime) -> InvalidFault:
        """Make ``row`` invalid in one way, in place; returns what was broken."""
        rng = self._rng
        kind = rng.choice(INVALID_KINDS)
        if kind == "missing_field":
            name = rng.choice(_REQUIRED)
            fault = InvalidFault(kind, name, "required", None)
        elif kind == "wrong_type":
            name, text = rng.choice(_WRONG_TYPES)
            fault = InvalidFault(kind, name, "type", text)
        elif kind == "absurd_value":
            name, number = rng.choice(_ABSURD)
            fault = InvalidFault(kind, name, "range", number)
        elif kind == "bad_timestamp":
            fault = _bad_timestamp(rng, event_time)
        else:
            # The sensor reports a fault status without flagging an anomaly.
            row["anomaly_flag"] = 0
            row["anomaly_type"] = None
            fault = InvalidFault(kind, "status_code", "status_code_matches_flag", 1)
        row[fault.field] = fault.value
        return fault


def _bad_timestamp(rng: random.Random, event_time: datetime) -> InvalidFault:
    variant = rng.randrange(4)
    if variant == 0:
        return InvalidFault("bad_timestamp", "timestamp", "timestamp_format", "not-a-timestamp")
    if variant == 1:
        impossible = event_time.strftime("%Y-13-45T25:61:%S.000+00:00")
        return InvalidFault("bad_timestamp", "timestamp", "timestamp_format", impossible)
    if variant == 2:
        naive = event_time.strftime("%Y-%m-%d %H:%M:%S")
        return InvalidFault("bad_timestamp", "timestamp", "timestamp_timezone", naive)
    # A fixed far-future year (a leap year, so 29 February survives) keeps runs reproducible.
    future = event_time.replace(year=2996).isoformat(timespec="milliseconds")
    return InvalidFault("bad_timestamp", "timestamp", "timestamp_future", future)
