"""Running statistics against a direct computation (statistics.mean / stdev)."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from services.aggregator.statistics import MetricsPartial, RunningStats, numeric


def _close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-300)


def _direct(values: list[float]) -> tuple[float, float, float, float]:
    return statistics.mean(values), statistics.stdev(values), min(values), max(values)


@pytest.mark.parametrize("offset", [0.0, 1e6, -273.15])
def test_welford_matches_direct_computation(offset: float) -> None:
    rng = random.Random(7)
    values = [offset + rng.gauss(20, 3) for _ in range(5000)]
    stats = RunningStats()
    for v in values:
        stats.add(v)
    mean, stdev, lo, hi = _direct(values)
    assert stats.count == len(values)
    assert _close(stats.mean, mean, 1e-12)
    assert stats.stddev is not None and _close(stats.stddev, stdev, 1e-9)
    assert (stats.min, stats.max) == (lo, hi)


def test_merge_of_partials_equals_the_whole() -> None:
    rng = random.Random(11)
    values = [rng.uniform(-50, 150) for _ in range(10_000)]
    whole = RunningStats()
    for v in values:
        whole.add(v)
    # Uneven partials, merged in a shuffled order, some of them empty.
    cuts = sorted(rng.sample(range(1, len(values)), 40))
    bounds = [0, *cuts, len(values)]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        part = RunningStats()
        for v in values[lo:hi]:
            part.add(v)
        parts.append(part)
    parts.append(RunningStats())
    rng.shuffle(parts)
    merged = RunningStats()
    for part in parts:
        merged.merge(part)
    assert merged.count == whole.count
    assert _close(merged.mean, whole.mean, 1e-12)
    assert _close(merged.m2, whole.m2, 1e-12)
    assert merged.variance is not None and whole.variance is not None
    assert _close(merged.variance, whole.variance, 1e-12)
    assert (merged.min, merged.max) == (whole.min, whole.max)
    assert _close(merged.variance, statistics.variance(values), 1e-12)


def test_merge_into_empty_and_of_empty() -> None:
    a = RunningStats()
    for v in (1.0, 2.0, 4.0):
        a.add(v)
    empty = RunningStats()
    empty.merge(a)
    assert (empty.count, empty.mean, empty.m2, empty.min, empty.max) == (
        a.count,
        a.mean,
        a.m2,
        a.min,
        a.max,
    )
    before = (a.count, a.mean, a.m2)
    a.merge(RunningStats())
    assert (a.count, a.mean, a.m2) == before


def test_fewer_than_two_values_have_no_stddev() -> None:
    stats = RunningStats()
    assert stats.stddev is None
    stats.add(3.5)
    assert stats.stddev is None and stats.mean == 3.5


def test_missing_values_are_excluded_and_counted_per_metric() -> None:
    partial = MetricsPartial()
    rows: list[dict[str, object]] = [
        {"temperature": 20.0, "humidity": None, "pressure": 1000, "vibration": "x"},
        {"temperature": 22.0, "humidity": 40.0, "pressure": float("nan"), "voltage": True},
        {"temperature": 24.0, "humidity": 50.0, "pressure": 1010.0, "voltage": 12.0},
    ]
    for row in rows:
        partial.add(row)
    summary = partial.summary()
    assert partial.records == 3
    assert summary["temperature"]["count"] == 3 and summary["temperature"]["missing"] == 0
    assert summary["temperature"]["stddev"] == pytest.approx(2.0, rel=1e-12)
    assert summary["humidity"]["count"] == 2 and summary["humidity"]["missing"] == 1
    assert summary["humidity"]["mean"] == pytest.approx(45.0, rel=1e-12)
    assert summary["pressure"]["count"] == 2  # NaN is missing; the int counts
    assert summary["vibration"] == {
        "count": 0,
        "missing": 3,
        "mean": None,
        "min": None,
        "max": None,
        "stddev": None,
        "m2": None,
    }
    assert summary["voltage"]["count"] == 1  # a bool is not a measurement
    assert summary["voltage"]["stddev"] is None


def test_numeric_rejects_non_numbers() -> None:
    assert numeric(1) == 1.0
    assert numeric(2.5) == 2.5
    for bad in (None, "3", True, float("inf"), float("nan"), [1]):
        assert numeric(bad) is None


def test_metrics_partial_merge_matches_whole() -> None:
    rng = random.Random(3)
    rows: list[dict[str, float | None]] = [
        {
            "temperature": rng.gauss(20, 2),
            "humidity": None if rng.random() < 0.1 else rng.gauss(50, 5),
            "pressure": rng.gauss(1013, 4),
            "vibration": rng.gauss(2.5, 0.5),
            "voltage": rng.gauss(12, 0.2),
        }
        for _ in range(3000)
    ]
    whole, left, right = MetricsPartial(), MetricsPartial(), MetricsPartial()
    for i, row in enumerate(rows):
        whole.add(row)
        (left if i % 3 else right).add(row)
    left.merge(right)
    a, b = whole.summary(), left.summary()
    assert left.records == whole.records
    for name in a:
        assert a[name]["count"] == b[name]["count"]
        assert a[name]["missing"] == b[name]["missing"]
        for field in ("mean", "stddev", "m2"):
            assert _close(a[name][field], b[name][field], 1e-12), (name, field)
        values = [v for r in rows if (v := r[name]) is not None]
        assert _close(b[name]["mean"], statistics.mean(values), 1e-12)
        assert _close(b[name]["stddev"], statistics.stdev(values), 1e-9)
