"""Anomaly marking from the spec's ``anomaly_detection``: anomalous is not invalid.

A valid reading is anomalous when the sensor flags itself (``use_sensor_flag``) or a
metric lies beyond its configured threshold. The reasons say which, for the notifier:
``sensor_flag:<anomaly_type>``, ``<metric> below <low>``, ``<metric> above <high>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from sensorpipe.config.spec import AnomalyDetection

NO_REASONS: tuple[str, ...] = ()
Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]


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

    def reasons_of_columns(
        self,
        selected: Mask,
        flagged: Mask,
        kind_of: Callable[[int], Any],
        metric: Callable[[str], Floats],
    ) -> dict[int, list[str]]:
        """:meth:`reasons` for the ``selected`` rows of a batch held as columns, by row,
        only the rows that have any: ``flagged`` says where ``anomaly_flag == 1``,
        ``kind_of(row)`` gives a row's ``anomaly_type``, ``metric(name)`` a metric's
        values (NaN where missing, and no row it is asked about holds NaN: they are
        validated)."""
        any_reason = np.zeros(len(selected), dtype=np.bool_)
        if self._use_flag:
            any_reason |= flagged
        sides: list[tuple[Mask, Mask, str, str]] = []
        for name, low, high, below, above in self._limits:
            values = metric(name)
            low_side, high_side = values < low, values > high
            sides.append((low_side, high_side, below, above))
            any_reason |= low_side | high_side
        found: dict[int, list[str]] = {}
        for row in np.flatnonzero(any_reason & selected).tolist():
            reasons: list[str] = []
            if self._use_flag and flagged[row]:
                kind = kind_of(row)
                reasons.append(f"sensor_flag:{kind}" if kind else "sensor_flag")
            for low_side, high_side, below, above in sides:
                if low_side[row]:
                    reasons.append(below)
                elif high_side[row]:
                    reasons.append(above)
            found[row] = reasons
        return found
