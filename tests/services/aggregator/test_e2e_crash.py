"""Stops in the middle of the 100,000-reading run: first a graceful SIGTERM (open windows
are not flushed; their messages go back), then kill -9 (no clean-up at all), each
followed by a restart. The windows must still equal the independent computation:
nothing missing, nothing doubled, every late row in the side output exactly once.

The restarted processes find a backlog of redeliveries; their recovery gate must wait
until every polled batch is folded before any window closes (a batch still in the
receiver's hands once cost one message's readings here, about one run in four)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.devstack.processes import ServiceProcess
from tests.services.aggregator.dataset import Stream
from tests.services.aggregator.e2e import (
    assert_exact,
    e2e_pipeline,
    metric_sum,
    run_to_completion,
    start_aggregator,
)

pytestmark = pytest.mark.integration

CLOSED = "sensorpipe_aggregator_windows_closed_total"
HELD = "sensorpipe_aggregator_held_messages"
OPEN = "sensorpipe_aggregator_open_windows"


def test_sigterm_then_kill_9_mid_run_give_the_same_windows(
    localstack: str, tmp_path: Path, stream: Stream, expected: dict[Any, Any]
) -> None:
    pipeline = e2e_pipeline(tmp_path, localstack, shards=1)
    logs = tmp_path / "logs"
    seen: dict[str, dict[str, float]] = {}

    def wait_for(process: ServiceProcess, closed_before: float, share: float) -> str:
        deadline = time.monotonic() + 90
        while True:
            metrics = process.metrics_text()
            if closed_before + metric_sum(metrics, CLOSED) >= share * len(expected):
                return metrics
            assert time.monotonic() < deadline, "the aggregator made no progress"
            time.sleep(0.2)

    def interrupt(processes: list[ServiceProcess]) -> None:
        metrics = wait_for(processes[0], 0, 0.1)
        assert processes[0].terminate() == 0  # SIGTERM: hands its messages back
        seen["sigterm"] = {k: metric_sum(metrics, k) for k in (CLOSED, HELD, OPEN)}
        processes[0] = start_aggregator(pipeline, 0, logs)
        metrics = wait_for(processes[0], seen["sigterm"][CLOSED], 0.35)
        processes[0].kill()  # SIGKILL: no flush, no hand-back
        seen["kill"] = {k: metric_sum(metrics, k) for k in (CLOSED, HELD, OPEN)}
        processes[0] = start_aggregator(pipeline, 0, logs)

    out = run_to_completion(pipeline, stream, logs, shards=1, during=interrupt)
    # Both stops really were mid-run: windows open, messages folded but not yet acked.
    for stop in ("sigterm", "kill"):
        assert seen[stop][HELD] > 0 and seen[stop][OPEN] > 0, (stop, seen[stop])
    assert seen["sigterm"][CLOSED] + seen["kill"][CLOSED] < len(expected)
    assert_exact(out, stream, expected)
    log = (logs / "aggregator-shard-0.log").read_text()
    assert re.search(r"[1-9]\d* held message\(s\) go back to the queue", log), log[-2000:]
