"""Bulk statistics and Chan merges against plain Python (statistics module)."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np

from sensorpipe.records import METRICS
from services.aggregator.statistics import Moments, group_moments, merge, summary

K = len(METRICS)


def _values(rng: random.Random, rows: int) -> np.ndarray:
    values = np.array([[rng.gauss(20, 4) for _ in range(rows)] for _ in range(K)])
    for _ in range(rows // 5):  # some missing (readings.py turns every non-finite to NaN)
        values[rng.randrange(K), rng.randrange(rows)] = math.nan
    return values


def _oracle(values: list[float]) -> dict[str, float | int | None]:
    kept = [v for v in values if math.isfinite(v)]
    return {
        "count": len(kept),
        "mean": statistics.fmean(kept) if kept else None,
        "min": min(kept) if kept else None,
        "max": max(kept) if kept else None,
        "stddev": statistics.stdev(kept) if len(kept) > 1 else None,
    }


def _close(a: float | int | None, b: float | int | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def test_group_moments_and_summary_match_plain_python() -> None:
    rng = random.Random(1)
    rows, groups = 400, 17
    values = _values(rng, rows)
    group = np.array([rng.randrange(groups) for _ in range(rows)])
    group[:groups] = np.arange(groups)  # every group non-empty
    moments = group_moments(values, group, groups)
    for g in range(groups):
        members = np.flatnonzero(group == g)
        figures = summary(moments.take(g), len(members))
        for k, name in enumerate(METRICS):
            want = _oracle(values[k, members].tolist())
            got = figures[name]
            assert got["missing"] == len(members) - int(want["count"] or 0)
            for field in ("count", "mean", "min", "max", "stddev"):
                assert _close(got[field], want[field]), (g, name, field)


def test_chan_merge_equals_computing_everything_at_once() -> None:
    rng = random.Random(2)
    values = _values(rng, 300)
    whole = group_moments(values, np.zeros(300, dtype=np.int64), 1).take(0)
    merged = Moments.empty()
    for lo, hi in ((0, 0), (0, 1), (1, 120), (120, 121), (121, 300)):
        if hi > lo:
            part = group_moments(values[:, lo:hi], np.zeros(hi - lo, dtype=np.int64), 1)
            merged = merge(merged, part.take(0))
    assert np.array_equal(merged.n, whole.n)
    assert np.allclose(merged.mean, whole.mean, rtol=1e-13)
    assert np.allclose(merged.m2, whole.m2, rtol=1e-11)
    assert np.array_equal(merged.min, whole.min) and np.array_equal(merged.max, whole.max)


def test_a_group_s_figures_do_not_depend_on_the_other_rows_of_its_batch() -> None:
    """The same readings of a window give bit-identical figures whatever else the batch
    holds and wherever in it they sit (one shard or three, split or not)."""
    rng = random.Random(3)
    mine = _values(rng, 37)
    alone = group_moments(mine, np.zeros(37, dtype=np.int64), 1).take(0)
    others = _values(rng, 500)
    for offset in (0, 1, 3, 250, 500):
        batch = np.concatenate([others[:, :offset], mine, others[:, offset:]], axis=1)
        group = np.ones(batch.shape[1], dtype=np.int64)
        group[offset : offset + 37] = 0
        within = group_moments(batch, group, 2).take(0)
        for field in ("n", "mean", "m2", "min", "max"):
            assert np.array_equal(getattr(within, field), getattr(alone, field)), (offset, field)
