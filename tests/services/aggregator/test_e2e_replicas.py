"""Two aggregator replicas (two shards, keyed by sensor) give the same output as one:
the same windows, keys and statistics as the independent computation that the
single-replica test matches, and the same late rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.services.aggregator.dataset import Stream
from tests.services.aggregator.e2e import (
    assert_exact,
    e2e_pipeline,
    metric_sum,
    run_to_completion,
)

pytestmark = pytest.mark.integration


def test_two_replicas_give_the_same_windows_as_one(
    localstack: str, tmp_path: Path, stream: Stream, expected: dict[Any, Any]
) -> None:
    pipeline = e2e_pipeline(tmp_path, localstack, shards=2)
    out = run_to_completion(pipeline, stream, tmp_path / "logs", shards=2)
    assert_exact(out, stream, expected)
    # Both replicas did part of the work; together exactly the on-time readings.
    windowed = [
        metric_sum(m, "sensorpipe_records_processed_total", outcome="windowed") for m in out.metrics
    ]
    assert all(n > 0 for n in windowed)
    assert sum(windowed) == len(stream.rows) - len(stream.late_keys)
