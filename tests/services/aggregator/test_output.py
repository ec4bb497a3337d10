"""Late side-output lines explain themselves, whatever watermark the process has."""

from __future__ import annotations

import math
from typing import Any

from services.aggregator.output import LateLines
from services.aggregator.windows import Reading, WindowId


def _reading() -> Reading:
    row: dict[str, Any] = {"id": 7, "sensor_id": "S1", "timestamp": "2026-01-01T00:00:05.000+00:00"}
    return Reading("S1|2026-01-01T00:00:05.000+00:00", "S1", 1767225605.0, row["timestamp"],
                   {"sensor_data": row})  # fmt: skip


def test_late_line_without_a_process_watermark_names_the_message_as_the_reason() -> None:
    # A redelivered message can be judged late by its own newer readings before this
    # process has seen the sensor at all (watermark -inf); that must not crash.
    lines = LateLines(window_seconds=60, grace_s=20)
    line = lines.line(_reading(), "after_watermark", {"batch_id": "b1"},
                      WindowId("S1", 1767225600), -math.inf)  # fmt: skip
    assert "its own message" in line["detail"]
    assert "2026-01-01T00:01:00.000Z" in line["detail"]


def test_late_line_quotes_the_process_watermark_when_there_is_one() -> None:
    lines = LateLines(window_seconds=60, grace_s=20)
    line = lines.line(_reading(), "after_watermark", {"batch_id": "b1"},
                      WindowId("S1", 1767225600), 1767225700.0)  # fmt: skip
    assert "watermark (latest reading minus 20 s grace, 2026-01-01T00:01:40.000Z)" in line["detail"]
