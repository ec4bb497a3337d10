"""Gaussian readings and visible anomalies.

Units follow the validation spec (°C, %RH, hPa, mm/s², V). Normal values are Gaussian
around a per-sensor baseline and clamped to a normal band that lies inside the spec's
anomaly thresholds. Unlike the original generator, anomalies are not clamped back into
that band: a spike lands beyond the anomaly threshold, a trend walks out of the band and
ends beyond it, and anomalies last several readings instead of being independent events.
Every anomalous reading carries anomaly_flag = status_code = 1 and its anomaly_type.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from edge.simulator.fleet import Sensor

ANOMALY_TYPES: tuple[str, ...] = ("spike", "trend", "pattern", "noise")
_ANOMALY_WEIGHTS: tuple[float, ...] = (0.35, 0.25, 0.2, 0.2)


@dataclass(frozen=True, slots=True)
class MetricProfile:
    mean: float
    std_dev: float
    normal: tuple[float, float]  # normal band: inside the spec's anomaly thresholds
    physical: tuple[float, float]  # what any value is clamped to: inside the spec's ranges
    spike_high: tuple[float, float]  # beyond the high anomaly threshold
    spike_low: tuple[float, float] | None  # beyond the low threshold (None: no low side)
    decimals: int


PROFILES: dict[str, MetricProfile] = {
    "temperature": MetricProfile(22.0, 2.0, (14, 30), (-45, 120), (45, 60), (-20, -5), 2),
    "humidity": MetricProfile(50.0, 8.0, (20, 80), (0, 100), (93, 99.5), (1, 7), 2),
    "pressure": MetricProfile(1013.0, 4.0, (995, 1030), (310, 1190), (1070, 1100), (900, 940), 2),
    "vibration": MetricProfile(2.5, 0.5, (0.5, 5), (0, 95), (10, 25), None, 3),
    "voltage": MetricProfile(12.0, 0.15, (11.6, 12.4), (0.5, 47), (13.5, 15), (9, 10.5), 3),
}
_TREND_METRICS = ("temperature", "humidity", "pressure", "voltage")
_NOISE_METRICS = ("temperature", "humidity", "voltage")


@dataclass(frozen=True, slots=True)
class Anomaly:
    type: str
    metrics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    values: dict[str, float]
    anomaly: Anomaly | None


@dataclass(slots=True)
class _Episode:
    type: str
    metrics: tuple[str, ...]
    length: int
    step: int = 0
    direction: int = 1
    targets: dict[str, float] = field(default_factory=dict)
    phase: float = 0.0


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


class ReadingGenerator:
    """Produces the next reading of a sensor; deterministic for a given ``rng``."""

    def __init__(self, rng: random.Random, anomaly_probability: float) -> None:
        self._rng = rng
        self._p = anomaly_probability
        self._episodes: dict[str, _Episode] = {}
        self._baselines: dict[str, dict[str, float]] = {}

    def next(self, sensor: Sensor) -> Reading:
        values = self._normal(sensor)
        episode = self._episodes.get(sensor.sensor_id)
        if episode is None and self._rng.random() < self._p:
            episode = self._start(sensor.sensor_id)
        if episode is None:
            return Reading(values, None)
        self._apply(episode, values)
        episode.step += 1
        if episode.step >= episode.length:
            del self._episodes[sensor.sensor_id]
        rounded = {m: round(v, PROFILES[m].decimals) for m, v in values.items()}
        return Reading(rounded, Anomaly(episode.type, episode.metrics))

    def _normal(self, sensor: Sensor) -> dict[str, float]:
        baseline = self._baselines.get(sensor.sensor_id)
        if baseline is None:
            # Each sensor sits a little off the fleet mean, as real devices do.
            baseline = {
                m: p.mean + self._rng.uniform(-0.5, 0.5) * p.std_dev for m, p in PROFILES.items()
            }
            self._baselines[sensor.sensor_id] = baseline
        return {
            m: round(_clamp(self._rng.gauss(baseline[m], p.std_dev), p.normal), p.decimals)
            for m, p in PROFILES.items()
        }

    def _start(self, sensor_id: str) -> _Episode:
        rng = self._rng
        kind = rng.choices(ANOMALY_TYPES, weights=_ANOMALY_WEIGHTS)[0]
        if kind == "spike":
            metric = rng.choice(tuple(PROFILES))
            episode = _Episode(kind, (metric,), length=1)
            episode.targets[metric] = self._beyond_threshold(metric)
        elif kind == "trend":
            metric = rng.choice(_TREND_METRICS)
            episode = _Episode(kind, (metric,), length=rng.randint(6, 20))
            episode.targets[metric] = self._beyond_threshold(metric)
        elif kind == "pattern":
            episode = _Episode(kind, ("temperature", "humidity"), length=rng.randint(8, 24))
            episode.phase = rng.uniform(0, 2 * math.pi)
        else:
            episode = _Episode(kind, _NOISE_METRICS, length=rng.randint(3, 10))
        self._episodes[sensor_id] = episode
        return episode

    def _beyond_threshold(self, metric: str) -> float:
        profile = PROFILES[metric]
        if profile.spike_low is not None and self._rng.random() < 0.5:
            return self._rng.uniform(*profile.spike_low)
        return self._rng.uniform(*profile.spike_high)

    def _apply(self, episode: _Episode, values: dict[str, float]) -> None:
        rng = self._rng
        if episode.type == "spike":
            values.update(episode.targets)
        elif episode.type == "trend":
            # Walks linearly from the edge of the normal band to beyond the threshold.
            progress = (episode.step + 1) / episode.length
            for metric, target in episode.targets.items():
                profile = PROFILES[metric]
                edge = profile.normal[1] if target > profile.mean else profile.normal[0]
                values[metric] = edge + progress * (target - edge)
        elif episode.type == "pattern":
            # Temperature and humidity oscillate in opposite phase, swinging past the band.
            angle = episode.phase + 2 * math.pi * episode.step / 8
            for metric, sign in (("temperature", 1.0), ("humidity", -1.0)):
                profile = PROFILES[metric]
                amplitude = 1.6 * (profile.normal[1] - profile.mean)
                swing = profile.mean + sign * amplitude * math.sin(angle)
                values[metric] = _clamp(swing, profile.physical)
        else:
            for metric in episode.metrics:
                profile = PROFILES[metric]
                noisy = values[metric] + rng.gauss(0, 6 * profile.std_dev)
                values[metric] = _clamp(noisy, profile.physical)
