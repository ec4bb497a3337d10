"""The 100,000-reading stream shared by the end-to-end tests (built once per session)."""

from __future__ import annotations

import pytest

from tests.services.aggregator.dataset import (
    Expected,
    Stream,
    expected_windows,
    make_rows,
    make_stream,
)
from tests.services.aggregator.e2e import ALLOWED_S, GRACE_S

SENSORS, PER_SENSOR = 50, 2000  # 100,000 readings, 4 a second per sensor


@pytest.fixture(scope="package")
def stream() -> Stream:
    rows = make_rows(sensors=SENSORS, per_sensor=PER_SENSOR, interval_s=0.25, seed=1)
    # Late rows are written 3 minutes behind (the grace is 20 s, 2 minutes are allowed);
    # duplicates follow their original within 2 minutes, so some meet an open window and
    # some a written one.
    return make_stream(rows, late_by_s=180, duplicate_spread_s=120)


@pytest.fixture(scope="package")
def expected(stream: Stream) -> Expected:
    return expected_windows(stream, grace_s=GRACE_S, allowed_s=ALLOWED_S)
