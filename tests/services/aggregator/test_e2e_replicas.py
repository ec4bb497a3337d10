"""Two aggregator shards (two processes, keyed by sensor) give the same output as one:
the windows, revisions and statistics of the independent computation that the
one-process test matches, and the same late readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services.aggregator.dataset import Expected, Stream
from tests.services.aggregator.e2e import (
    assert_exact,
    e2e_pipeline,
    metric_sum,
    run_to_completion,
)

pytestmark = pytest.mark.integration


def test_two_shards_give_the_same_windows_as_one(
    localstack: str, tmp_path: Path, stream: Stream, expected: Expected
) -> None:
    pipeline = e2e_pipeline(tmp_path, localstack, shards=2)
    out = run_to_completion(pipeline, stream, tmp_path / "logs", shards=2)
    assert_exact(out, stream, expected)
    # Both shards did part of the work; together exactly the windowed readings.
    folded = [
        metric_sum(m, "sensorpipe_records_processed_total", outcome="fold")
        + metric_sum(m, "sensorpipe_records_processed_total", outcome="revise")
        for m in out.metrics
    ]
    assert all(n > 0 for n in folded)
    assert sum(folded) == len(stream.rows) - len(expected.late)
