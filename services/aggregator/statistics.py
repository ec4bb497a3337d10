"""Mergeable statistics, computed in bulk: per group of readings at once, merged by Chan.

A batch's readings are grouped by (sensor, window); each group's count, mean, M2 (sum
of squared deviations), min and max per metric come from a few numpy calls over the
whole batch (two passes: sums, then deviations from the group mean, each a ``reduceat``
over the group's rows), and are merged into
the window's running totals with Chan et al.'s formula, elementwise for many windows at
once. Both are deterministic in the order of the rows, and the sequencer hands the
aggregator each source batch whole and in the source's row order, so a window's figures
come out bit for bit the same however its readings were split into messages or shards.

``m2`` is kept in the output too, so rollups (hourly from 1-minute windows) can merge
windows exactly with the same formula. A value is missing when it is null or absent: it
is excluded and counted as ``missing`` (a reading with any other value that is not a
finite number within range is set aside as unusable before it gets here: readings.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from sensorpipe.records import METRICS

K = len(METRICS)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(slots=True)
class Moments:
    """Per-metric statistics of one or many groups, stacked: ``data[0..4]`` are the
    count, mean, M2, min and max, each of shape (..., K) (one array, so taking or putting
    rows of many windows is one copy, not five)."""

    data: Floats  # (5, ..., K); counts are floats, so the merge stays in one dtype

    @classmethod
    def of(cls, n: Floats, mean: Floats, m2: Floats, low: Floats, high: Floats) -> Moments:
        return cls(np.stack((n, mean, m2, low, high)))

    @classmethod
    def empty(cls, shape: tuple[int, ...] = ()) -> Moments:
        data = np.zeros((5, *shape, K))
        data[3] = math.inf
        data[4] = -math.inf
        return cls(data)

    @property
    def n(self) -> Floats:
        return cast(Floats, self.data[0])

    @property
    def mean(self) -> Floats:
        return cast(Floats, self.data[1])

    @property
    def m2(self) -> Floats:
        return cast(Floats, self.data[2])

    @property
    def min(self) -> Floats:
        return cast(Floats, self.data[3])

    @property
    def max(self) -> Floats:
        return cast(Floats, self.data[4])

    def take(self, rows: Ints | int) -> Moments:
        """A copy of some rows (one row: arrays of shape (K,))."""
        taken = self.data[:, rows]  # a view for one row, a copy for many
        return Moments(taken.copy() if np.ndim(rows) == 0 else taken)

    def row(self, i: int) -> Moments:
        """Row ``i`` of many groups' statistics (a view: shape (K,))."""
        return Moments(self.data[:, i])

    def put(self, rows: Ints, other: Moments) -> None:
        self.data[:, rows] = other.data


def group_moments(values: Floats, starts: Ints) -> Moments:
    """Statistics per group of consecutive rows: ``values`` is (rows, K), finite or NaN
    for missing; group g is rows ``starts[g]`` up to the next start (every group
    non-empty, ``starts[0] == 0``).

    Each (group, metric) is reduced over its own rows only (``reduceat``), so the result
    depends on the group's values and their order, not on where they sit in the batch
    or what else it holds."""
    counts = np.diff(np.r_[starts, len(values)])
    ok = ~np.isnan(values)  # the caller's missing values are NaN
    n = np.add.reduceat(ok.astype(np.float64), starts, axis=0)
    total = np.add.reduceat(np.where(ok, values, 0.0), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / n, 0.0)
    deviation = np.where(ok, values - np.repeat(mean, counts, axis=0), 0.0)
    m2 = np.add.reduceat(deviation * deviation, starts, axis=0)
    # Missing values as +-inf: what min and max report where a group has no value.
    low = np.minimum.reduceat(np.where(ok, values, math.inf), starts, axis=0)
    high = np.maximum.reduceat(np.where(ok, values, -math.inf), starts, axis=0)
    return Moments.of(n, mean, m2, low, high)


def merge(a: Moments, b: Moments) -> Moments:
    """Chan et al.: the statistics of both sets of values, elementwise."""
    n = a.n + b.n
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, b.n / n, 0.0)
        delta = b.mean - a.mean
        mean = np.where(b.n > 0, a.mean + delta * share, a.mean)
        m2 = np.where(b.n > 0, a.m2 + b.m2 + delta * delta * a.n * share, a.m2)
    return Moments.of(n, mean, m2, np.fmin(a.min, b.min), np.fmax(a.max, b.max))


def summary(moments: Moments, records: int) -> dict[str, dict[str, Any]]:
    """One window's figures per metric: count, missing, mean, min, max, sample stddev
    (n - 1) and m2; None where there is no value to report. (Five numbers per figure:
    plain Python is quicker here than numpy's per-call cost.)"""
    out: dict[str, dict[str, Any]] = {}
    for name, n, mean, m2, low, high in zip(METRICS, *moments.data.tolist(), strict=True):
        count = int(n)
        if count:
            out[name] = {
                "count": count,
                "missing": records - count,
                "mean": mean,
                "min": low,
                "max": high,
                "stddev": math.sqrt(max(m2 / (count - 1), 0.0)) if count > 1 else None,
                "m2": m2,
            }
        else:
            out[name] = dict(_NONE, missing=records)
    return out


_NONE = {"count": 0, "mean": None, "min": None, "max": None, "stddev": None, "m2": None}


def from_summary(metrics: dict[str, Any]) -> Moments:
    """The statistics of a written window (its ``metrics``), to merge more into."""
    out = Moments.empty()
    for k, name in enumerate(METRICS):
        figures = metrics.get(name) or {}
        count = int(figures.get("count") or 0)
        if count:
            out.n[k] = count
            out.mean[k] = float(figures["mean"])
            out.m2[k] = float(figures["m2"])
            out.min[k] = float(figures["min"])
            out.max[k] = float(figures["max"])
    return out
