"""Mergeable running statistics: Welford's update per value, Chan's merge per partial.

A message's readings are folded into a small partial per (sensor, window) and merged
into the window's running total, so batches combine exactly (up to float rounding, about
1e-15 relative) whatever their order or size. ``m2`` (the sum of squared deviations) is
kept in the output too, so downstream rollups (hourly from 1-minute windows) can merge
windows exactly with the same formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sensorpipe.records import METRICS


@dataclass(slots=True)
class RunningStats:
    """count, mean, M2, min and max of one metric."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: RunningStats) -> None:
        """Chan et al.: combine two partials as if every value had been added here."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            self.min, self.max = other.min, other.max
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def variance(self) -> float | None:
        """Sample variance (n - 1); None below two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else None

    @property
    def stddev(self) -> float | None:
        variance = self.variance
        return math.sqrt(max(variance, 0.0)) if variance is not None else None


def numeric(value: Any) -> float | None:
    """The reading's value as a float, or None when it is missing (null, absent,
    not a number, NaN or infinite): missing values are excluded and counted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(slots=True)
class MetricsPartial:
    """Statistics of every metric over a set of readings, plus how many readings."""

    records: int = 0
    metrics: dict[str, RunningStats] = field(
        default_factory=lambda: {name: RunningStats() for name in METRICS}
    )

    def add(self, sensor_data: Mapping[str, Any]) -> None:
        # The hot path: RunningStats.add inlined, numeric() reduced to type checks.
        self.records += 1
        get = sensor_data.get
        for name, s in self.metrics.items():
            raw: Any = get(name)
            kind = type(raw)
            if kind is float or kind is int:
                value: float = raw
                if value - value != 0:  # NaN or infinite
                    continue
            elif raw is None:
                continue
            else:
                checked = numeric(raw)  # int/float subclasses; anything else is missing
                if checked is None:
                    continue
                value = checked
            s.count += 1
            delta = value - s.mean
            s.mean += delta / s.count
            s.m2 += delta * (value - s.mean)
            if value < s.min:
                s.min = value
            if value > s.max:
                s.max = value

    def merge(self, other: MetricsPartial) -> None:
        self.records += other.records
        for name, stats in self.metrics.items():
            stats.merge(other.metrics[name])

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per metric: count, missing, mean, min, max, sample stddev and m2 (None where
        there is no value to report)."""
        out: dict[str, dict[str, Any]] = {}
        for name, s in self.metrics.items():
            has = s.count > 0
            out[name] = {
                "count": s.count,
                "missing": self.records - s.count,
                "mean": s.mean if has else None,
                "min": s.min if has else None,
                "max": s.max if has else None,
                "stddev": s.stddev,
                "m2": s.m2 if has else None,
            }
        return out
