"""Burst detection per location over event time (the definition: docs/NOTIFICATIONS.md).

Per location, take the distinct anomalous readings (identity: ``reading_key``) in order of
(event time, reading key). With k = min_anomalies, W = window and C = cool-down:

- a burst starts at the first anomaly ``a`` after the cool-down bound B (initially none)
  such that the k-th anomaly counted from ``a`` lies at most W after ``a``;
- its members are every anomaly from ``a`` up to and including that k-th anomaly's time
  (ties at the end included), its window is [first member, last member];
- B becomes last member + C: no burst may start at or before it.

Decisions are made only once they cannot change: a burst when its last member is at or
before the shard's watermark, a "no burst from here" when ``a`` + W is. The watermark
follows the sources' progress in the order they wrote their batches (sensorpipe.stateful),
so no delivery order makes an anomaly late; one at or before the watermark decisions were
already made at (its source wrote it more than the grace late) is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sensorpipe.records import event_time_us, reading_key
from services.notifier.config import BurstRules


class UnusableRecord(ValueError):
    """A record the notifier cannot place: no location, no timestamp, not anomalous."""


@dataclass(slots=True)
class Anomaly:
    key: str
    at_us: int
    record: dict[str, Any]
    batch_id: str
    scenario: str

    @property
    def order(self) -> tuple[int, str]:
        return (self.at_us, self.key)

    @classmethod
    def from_record(cls, record: dict[str, Any], batch_id: str, scenario: str) -> Anomaly:
        data = record.get("sensor_data")
        if not isinstance(data, dict):
            raise UnusableRecord("record has no 'sensor_data' object")
        quality = record.get("quality")
        if not isinstance(quality, dict) or quality.get("anomalous") is not True:
            raise UnusableRecord("record is not marked anomalous (quality.anomalous)")
        location = data.get("location")
        if not isinstance(location, str) or not location.strip():
            raise UnusableRecord("sensor_data.location is missing or empty")
        timestamp = data.get("timestamp")
        if not isinstance(timestamp, str):
            raise UnusableRecord("sensor_data.timestamp is missing or not a string")
        at_us = event_time_us(timestamp)
        if at_us is None:
            raise UnusableRecord(f"sensor_data.timestamp {timestamp[:64]!r} is not ISO-8601")
        return cls(reading_key(data), at_us, record, batch_id, scenario)

    @property
    def location(self) -> str:
        return str(self.record["sensor_data"]["location"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "at_us": self.at_us,
            "batch_id": self.batch_id,
            "scenario": self.scenario,
            "record": self.record,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Anomaly:
        return cls(
            data["key"], int(data["at_us"]), data["record"], data["batch_id"], data["scenario"]
        )


class Admission(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the same reading is already pending
    LATE = "late"  # at or before the watermark: its part of the timeline is decided
    COOLDOWN = "cooldown"  # inside a burst's cool-down: can start or join nothing


@dataclass(frozen=True, slots=True)
class Burst:
    location: str
    members: tuple[Anomaly, ...]

    @property
    def start(self) -> Anomaly:
        return self.members[0]

    @property
    def end(self) -> Anomaly:
        return self.members[-1]


@dataclass(slots=True)
class Detection:
    bursts: list[Burst] = field(default_factory=list)
    no_burst: list[Anomaly] = field(default_factory=list)
    cooled: list[Anomaly] = field(default_factory=list)


@dataclass(slots=True)
class LocationState:
    """What the notifier must remember about one location: the cool-down bound and the
    anomalies not decided yet (checkpointed with the shard)."""

    location: str
    cooldown_until_us: int | None = None
    pending: dict[str, Anomaly] = field(default_factory=dict)

    def admit(self, anomaly: Anomaly, *, decided_us: int | None) -> Admission:
        """Take one anomaly; late if at or before the watermark decisions were made at."""
        if anomaly.key in self.pending:
            return Admission.DUPLICATE
        if decided_us is not None and anomaly.at_us <= decided_us:
            return Admission.LATE
        if self.cooldown_until_us is not None and anomaly.at_us <= self.cooldown_until_us:
            return Admission.COOLDOWN
        self.pending[anomaly.key] = anomaly
        return Admission.ACCEPTED

    def detect(self, rules: BurstRules, watermark_us: int) -> Detection:
        """Make every decision the watermark allows; decided anomalies leave ``pending``."""
        found = Detection()
        if not self.pending:
            return found
        wm = watermark_us
        ordered = sorted(self.pending.values(), key=lambda a: a.order)
        i = 0
        while i < len(ordered):
            first = ordered[i]
            kth = i + rules.min_anomalies - 1
            if kth < len(ordered) and ordered[kth].at_us - first.at_us <= rules.window_us:
                end_us = ordered[kth].at_us
                if end_us > wm:
                    break  # an unseen earlier anomaly could still move the start
                j = kth + 1
                while j < len(ordered) and ordered[j].at_us == end_us:
                    j += 1
                found.bursts.append(Burst(self.location, tuple(ordered[i:j])))
                self.cooldown_until_us = end_us + rules.cooldown_us
                i = j
                while i < len(ordered) and ordered[i].at_us <= self.cooldown_until_us:
                    found.cooled.append(ordered[i])
                    i += 1
            elif first.at_us + rules.window_us <= wm:
                found.no_burst.append(first)
                i += 1
            else:
                break
        for decided in ordered[:i]:
            del self.pending[decided.key]
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "cooldown_until_us": self.cooldown_until_us,
            "pending": [a.to_dict() for a in sorted(self.pending.values(), key=lambda a: a.order)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocationState:
        pending = [Anomaly.from_dict(p) for p in data.get("pending", [])]
        return cls(
            location=data["location"],
            cooldown_until_us=data.get("cooldown_until_us"),
            pending={a.key: a for a in pending},
        )
