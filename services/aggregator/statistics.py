"""Mergeable statistics, computed in bulk: per group of readings at once, merged by Chan.

A batch's readings are grouped by (sensor, window); each group's count, mean, M2 (sum
of squared deviations), min and max per metric come from a few numpy calls over the
whole batch (two passes: sums, then deviations from the group mean), and are merged into
the window's running totals with Chan et al.'s formula, elementwise for many windows at
once. Both are deterministic in the order of the rows, and the sequencer hands the
aggregator each source batch whole and in the source's row order, so a window's figures
come out bit for bit the same however its readings were split into messages or shards.

``m2`` is kept in the output too, so rollups (hourly from 1-minute windows) can merge
windows exactly with the same formula. A value is missing when it is null, absent, not
a number, NaN or infinite: it is excluded and counted as ``missing``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sensorpipe.records import METRICS

K = len(METRICS)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(slots=True)
class Moments:
    """Per-metric statistics of one or many groups: arrays of shape (..., K)."""

    n: Floats  # values counted (floats, so the merge formula stays in one dtype)
    mean: Floats
    m2: Floats
    min: Floats
    max: Floats

    @classmethod
    def empty(cls, shape: tuple[int, ...] = ()) -> Moments:
        full = (*shape, K)
        return cls(
            np.zeros(full),
            np.zeros(full),
            np.zeros(full),
            np.full(full, math.inf),
            np.full(full, -math.inf),
        )

    def take(self, rows: Ints | int) -> Moments:
        """A copy of some rows (one row: arrays of shape (K,))."""
        return Moments(
            self.n[rows].copy(),
            self.mean[rows].copy(),
            self.m2[rows].copy(),
            self.min[rows].copy(),
            self.max[rows].copy(),
        )

    def put(self, rows: Ints, other: Moments) -> None:
        self.n[rows] = other.n
        self.mean[rows] = other.mean
        self.m2[rows] = other.m2
        self.min[rows] = other.min
        self.max[rows] = other.max


def group_moments(values: Floats, groups: Ints, count: int) -> Moments:
    """Statistics per group: ``values`` is (K, rows), finite or NaN for missing,
    ``groups`` the group of each row (0 .. count-1, every group non-empty).

    Sums use ``bincount``, which adds each (group, metric)'s values one after the other
    in row order: the result depends only on the group's own values and their order,
    not on where they sit in the batch (numpy's pairwise sums would)."""
    ok = ~np.isnan(values)  # the caller's missing values are NaN
    bins = (groups[np.newaxis, :] * K + np.arange(K)[:, np.newaxis]).ravel()

    def sums(weights: Floats) -> Floats:
        out = np.bincount(bins, weights=weights.ravel(), minlength=count * K)
        return np.asarray(out, dtype=np.float64).reshape(count, K)

    n = sums(ok.astype(np.float64))
    total = sums(np.where(ok, values, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / n, 0.0)
    deviation = np.where(ok, values - mean.T[:, groups], 0.0)
    m2 = sums(deviation * deviation)
    if len(groups) > 1 and np.any(groups[1:] < groups[:-1]):
        order = np.argsort(groups, kind="stable")
        groups, values, ok = groups[order], values[:, order], ok[:, order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    with np.errstate(invalid="ignore"):
        low = np.fmin.reduceat(values, starts, axis=1).T
        high = np.fmax.reduceat(values, starts, axis=1).T
    low = np.where(n > 0, low, math.inf)
    high = np.where(n > 0, high, -math.inf)
    return Moments(n, mean, m2, low, high)


def merge(a: Moments, b: Moments) -> Moments:
    """Chan et al.: the statistics of both sets of values, elementwise."""
    n = a.n + b.n
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, b.n / n, 0.0)
        delta = b.mean - a.mean
        mean = np.where(b.n > 0, a.mean + delta * share, a.mean)
        m2 = np.where(b.n > 0, a.m2 + b.m2 + delta * delta * a.n * share, a.m2)
    return Moments(n, mean, m2, np.fmin(a.min, b.min), np.fmax(a.max, b.max))


def summary(moments: Moments, records: int) -> dict[str, dict[str, Any]]:
    """One window's figures per metric: count, missing, mean, min, max, sample stddev
    (n - 1) and m2; None where there is no value to report."""
    out: dict[str, dict[str, Any]] = {}
    columns = zip(
        METRICS,
        moments.n.tolist(),
        moments.mean.tolist(),
        moments.m2.tolist(),
        moments.min.tolist(),
        moments.max.tolist(),
        strict=True,
    )
    for name, n, mean, m2, low, high in columns:
        count = int(n)
        has = count > 0
        out[name] = {
            "count": count,
            "missing": records - count,
            "mean": mean if has else None,
            "min": low if has else None,
            "max": high if has else None,
            "stddev": math.sqrt(max(m2 / (count - 1), 0.0)) if count > 1 else None,
            "m2": m2 if has else None,
        }
    return out


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


def numeric(value: Any) -> float:
    """A metric value as a float, NaN when missing (null, absent, not a number, bool,
    NaN or infinite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    number = float(value)
    return number if math.isfinite(number) else math.nan
