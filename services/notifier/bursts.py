"""Burst detection per location over event time (the definition: docs/NOTIFICATIONS.md).

Per location, take the distinct anomalous readings (identity: ``reading_key``) in order of
(event time, reading key). With k = min_anomalies, W = window and C = cool-down:

- a burst starts at the first anomaly ``a`` after the cool-down bound B (initially none)
  such that the k-th anomaly counted from ``a`` lies at most W after ``a``;
- its members are every anomaly from ``a`` up to and including that k-th anomaly's time
  (ties at the end included), its window is [first member, last member];
- B becomes last member + C: no burst may start at or before it.

Decisions are made only once they cannot change: a burst when its last member is at or
before the location's watermark, a "no burst from here" when ``a`` + W is. The watermark
is (latest event time seen at the location) - grace, or that latest time itself after the
location went quiet; an anomaly at or before the watermark when it arrives is late.
So any arrival order in which no anomaly is later than the grace gives the same bursts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sensorpipe.objects import parse_event_time
from sensorpipe.records import reading_key
from services.notifier.config import BurstRules

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class UnusableRecord(ValueError):
    """A record the notifier cannot place: no location, no timestamp, not anomalous."""


def event_time_us(timestamp: str) -> int:
    """Exact integer microseconds since the epoch (floats would blur the 60 s edge)."""
    return (parse_event_time(timestamp) - _EPOCH) // _MICROSECOND


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
        try:
            at_us = event_time_us(timestamp)
        except ValueError as exc:
            raise UnusableRecord(f"sensor_data.timestamp {timestamp!r} is not ISO-8601") from exc
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
    """Everything the notifier must remember about one location (persisted as JSON)."""

    location: str
    max_seen_us: int | None = None
    watermark_us: int | None = None
    cooldown_until_us: int | None = None
    pending: dict[str, Anomaly] = field(default_factory=dict)
    deliveries: deque[str] = field(default_factory=deque)

    def admit(self, anomaly: Anomaly) -> Admission:
        """Take one anomaly, judged against the watermark as it stands."""
        return self.admit_judged(anomaly, late_at_or_before=self.watermark_us)

    def admit_judged(self, anomaly: Anomaly, *, late_at_or_before: int | None) -> Admission:
        """Take one anomaly, late if at or before the given bound. The bound must not be
        below the watermark of any decision made (the handler's hold ensures it)."""
        if anomaly.key in self.pending:
            return Admission.DUPLICATE
        if late_at_or_before is not None and anomaly.at_us <= late_at_or_before:
            return Admission.LATE
        if self.cooldown_until_us is not None and anomaly.at_us <= self.cooldown_until_us:
            return Admission.COOLDOWN
        self.pending[anomaly.key] = anomaly
        return Admission.ACCEPTED

    def saw(self, at_us: int) -> None:
        if self.max_seen_us is None or at_us > self.max_seen_us:
            self.max_seen_us = at_us

    def advance(self, grace_us: int) -> None:
        """Move the watermark to latest-seen minus grace (it never moves back)."""
        if self.max_seen_us is not None:
            self._raise_watermark(self.max_seen_us - grace_us)

    def flush_idle(self) -> None:
        """The location went quiet: everything seen so far is final."""
        if self.max_seen_us is not None:
            self._raise_watermark(self.max_seen_us)

    def _raise_watermark(self, to_us: int) -> None:
        if self.watermark_us is None or to_us > self.watermark_us:
            self.watermark_us = to_us

    def remember_delivery(self, fingerprint: str, limit: int) -> None:
        self.deliveries.append(fingerprint)
        while len(self.deliveries) > limit:
            self.deliveries.popleft()

    def detect(self, rules: BurstRules) -> Detection:
        """Make every decision the watermark allows; decided anomalies leave ``pending``."""
        found = Detection()
        if self.watermark_us is None or not self.pending:
            return found
        wm = self.watermark_us
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
            "version": 1,
            "location": self.location,
            "max_seen_us": self.max_seen_us,
            "watermark_us": self.watermark_us,
            "cooldown_until_us": self.cooldown_until_us,
            "pending": [a.to_dict() for a in sorted(self.pending.values(), key=lambda a: a.order)],
            "deliveries": list(self.deliveries),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocationState:
        pending = [Anomaly.from_dict(p) for p in data.get("pending", [])]
        return cls(
            location=data["location"],
            max_seen_us=data.get("max_seen_us"),
            watermark_us=data.get("watermark_us"),
            cooldown_until_us=data.get("cooldown_until_us"),
            pending={a.key: a for a in pending},
            deliveries=deque(data.get("deliveries", [])),
        )
