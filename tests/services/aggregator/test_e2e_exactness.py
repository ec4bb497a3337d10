"""100,000 simulated readings through a real aggregator process on LocalStack.

50 sensors, 5 locations, shuffled within a few seconds, 2 % exact duplicates and 1 %
rows the source wrote 3 minutes behind the others (beyond the 2 minutes allowed, most
of them). The windows must equal an independent computation (statistics.mean / stdev
over the de-duplicated readings) to 1e-9 relative, revisions included; every reading
beyond the allowed lateness must be in the late side output exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services.aggregator.dataset import LOCATIONS, Expected, Stream
from tests.services.aggregator.e2e import assert_exact, e2e_pipeline, run_to_completion

pytestmark = pytest.mark.integration


def test_one_aggregator_gives_the_independent_windows(
    localstack: str, tmp_path: Path, stream: Stream, expected: Expected
) -> None:
    assert len(stream.rows) == 100_000
    assert len({r["sensor_id"] for r in stream.rows}) == 50
    assert len({r["location"] for r in stream.rows}) == len(LOCATIONS)
    assert len(stream.records) == 102_000  # 2,000 duplicates
    assert len(stream.late_keys) == 1_000
    assert 0 < len(expected.late) < 1_000  # some late rows are still within the allowance
    assert any(w["revision"] > 0 for w in expected.windows.values())
    pipeline = e2e_pipeline(tmp_path, localstack, shards=1)
    out = run_to_completion(pipeline, stream, tmp_path / "logs", shards=1)
    assert_exact(out, stream, expected)
