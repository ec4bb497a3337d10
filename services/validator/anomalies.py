"""Anomaly marking from the spec's ``anomaly_detection``: anomalous is not invalid.

A valid reading is anomalous when the sensor flags itself (``use_sensor_flag``) or a
metric lies beyond its configured threshold. The reasons say which, for the notifier:
``sensor_flag:<anomaly_type>``, ``<metric> below <low>``, ``<metric> above <high>``.
"""

from __future__ import annotations

import math
from typing import Any

from sensorpipe.config.spec import AnomalyDetection

NO_REASONS: tuple[str, ...] = ()


class AnomalyDetector:
    def __init__(self, settings: AnomalyDetection) -> None:
        self._use_flag = settings.use_sensor_flag
        self._limits: tuple[tuple[str, float, float, str, str], ...] = tuple(
            (
                metric,
                -math.inf if t.low is None else t.low,
                math.inf if t.high is None else t.high,
                f"{metric} below {t.low:g}" if t.low is not None else "",
                f"{metric} above {t.high:g}" if t.high is not None else "",
            )
            for metric, t in settings.thresholds.items()
        )

    def reasons(self, data: dict[str, Any]) -> list[str]:
        """Why a *validated* reading is anomalous; empty when it is not. (The spec makes
        every threshold metric numeric, so a valid value is a number or missing.)"""
        found: list[str] = []
        if self._use_flag and data.get("anomaly_flag") == 1:
            kind = data.get("anomaly_type")
            found.append(f"sensor_flag:{kind}" if kind else "sensor_flag")
        get = data.get
        for metric, low, high, below, above in self._limits:
            value = get(metric)
            if value is None:
                continue
            if value < low:
                found.append(below)
            elif value > high:
                found.append(above)
        return found
