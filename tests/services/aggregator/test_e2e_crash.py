"""Stops in the middle of the 100,000-reading run: first a graceful SIGTERM, then
kill -9 (no clean-up at all), each followed by a restart. The windows must still equal
the independent computation, revisions included: nothing missing, nothing doubled,
every late reading in the side output exactly once. The restarted process resumes from
the shard's checkpoint at once: it writes windows again within seconds, long before
one visibility timeout of messages the killed one held could come back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sensorpipe.devstack.processes import ServiceProcess
from tests.services.aggregator.dataset import Expected, Stream
from tests.services.aggregator.e2e import (
    assert_exact,
    e2e_pipeline,
    metric_sum,
    run_to_completion,
    start_aggregator,
)

pytestmark = pytest.mark.integration

WINDOWS = "sensorpipe_aggregator_windows_total"
OPEN = "sensorpipe_aggregator_open_windows"
COMMITS = "sensorpipe_checkpoint_duration_seconds_count"


def test_sigterm_then_kill_9_mid_run_give_the_same_windows(
    localstack: str, tmp_path: Path, stream: Stream, expected: Expected
) -> None:
    pipeline = e2e_pipeline(tmp_path, localstack, shards=1)
    logs = tmp_path / "logs"
    seen: dict[str, dict[str, float]] = {}
    resumed_in: list[float] = []

    def wait_for(process: ServiceProcess, done_before: float, share: float) -> str:
        deadline = time.monotonic() + 90
        while True:
            metrics = process.metrics_text()
            if done_before + metric_sum(metrics, WINDOWS) >= share * len(expected.windows):
                return metrics
            assert time.monotonic() < deadline, "the aggregator made no progress"
            time.sleep(0.2)

    def restart(processes: list[ServiceProcess]) -> None:
        started = time.monotonic()
        processes[0] = start_aggregator(pipeline, 0, logs)
        while metric_sum(processes[0].metrics_text(), WINDOWS) == 0:
            assert time.monotonic() - started < 60, "the restarted aggregator wrote nothing"
            time.sleep(0.1)
        resumed_in.append(time.monotonic() - started)

    def interrupt(processes: list[ServiceProcess]) -> None:
        metrics = wait_for(processes[0], 0, 0.1)
        assert processes[0].terminate() == 0  # SIGTERM: commits, hands the rest back
        seen["sigterm"] = {k: metric_sum(metrics, k) for k in (WINDOWS, OPEN, COMMITS)}
        restart(processes)
        metrics = wait_for(processes[0], seen["sigterm"][WINDOWS], 0.35)
        processes[0].kill()  # SIGKILL: no commit, no hand-back
        seen["kill"] = {k: metric_sum(metrics, k) for k in (WINDOWS, OPEN, COMMITS)}
        restart(processes)

    out = run_to_completion(pipeline, stream, logs, shards=1, during=interrupt)
    # Both stops really were mid-run: windows open, checkpoints written before.
    for stop in ("sigterm", "kill"):
        assert seen[stop][OPEN] > 0 and seen[stop][COMMITS] > 0, (stop, seen[stop])
    assert seen["sigterm"][WINDOWS] + seen["kill"][WINDOWS] < len(expected.windows)
    assert_exact(out, stream, expected)
    # Resumed from the checkpoint: windows written within seconds of each restart, not
    # after the 5 s visibility timeout plus a recovery wait.
    assert len(resumed_in) == 2 and max(resumed_in) < 15, resumed_in
    log = (logs / "aggregator-shard-0.log").read_text()
    assert "resumed from" in log
