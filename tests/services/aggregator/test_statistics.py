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
    """(rows, K) readings, some missing (readings.py turns every non-finite to NaN)."""
    values = np.array([[rng.gauss(20, 4) for _ in range(K)] for _ in range(rows)])
    for _ in range(rows // 5):
        values[rng.randrange(rows), rng.randrange(K)] = math.nan
    return values


_ONE = np.zeros(1, dtype=np.int64)  # one group: starts at row 0


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
    cuts = sorted(rng.sample(range(1, rows), groups - 1))  # every group non-empty
    bounds = [0, *cuts, rows]
    moments = group_moments(values, np.array(bounds[:-1], dtype=np.int64))
    for g in range(groups):
        members = range(bounds[g], bounds[g + 1])
        figures = summary(moments.take(g), len(members))
        for k, name in enumerate(METRICS):
            want = _oracle([float(values[i, k]) for i in members])
            got = figures[name]
            assert got["missing"] == len(members) - int(want["count"] or 0)
            for field in ("count", "mean", "min", "max", "stddev"):
                assert _close(got[field], want[field]), (g, name, field)


def test_chan_merge_equals_computing_everything_at_once() -> None:
    rng = random.Random(2)
    values = _values(rng, 300)
    whole = group_moments(values, _ONE).take(0)
    merged = Moments.empty()
    for lo, hi in ((0, 0), (0, 1), (1, 120), (120, 121), (121, 300)):
        if hi > lo:
            part = group_moments(values[lo:hi], _ONE)
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
    alone = group_moments(mine, _ONE).take(0)
    others = _values(rng, 500)
    for offset in (0, 1, 3, 250, 500):
        batch = np.concatenate([others[:offset], mine, others[offset:]])
        # Others before and after as groups of their own (where there are any).
        starts = sorted({0, offset, offset + 37} - {len(batch)})
        moments = group_moments(batch, np.array(starts, dtype=np.int64))
        within = moments.take(starts.index(offset))
        for field in ("n", "mean", "m2", "min", "max"):
            assert np.array_equal(getattr(within, field), getattr(alone, field)), (offset, field)
