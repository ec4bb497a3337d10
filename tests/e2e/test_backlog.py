"""An edge node's backlog: 6 hours of a 50-sensor fleet uploaded at once through the
whole pipeline, two aggregator shards. A backlog delivers minutes of event time per
second, out of order across stages and shards; lateness is judged in the source's order,
so every window is exactly the independent computation and nothing is late."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorpipe.devstack.processes import ServiceProcess
from tests.conftest import make_pipeline
from tests.e2e.order import (
    depth,
    expectation,
    log_problems,
    metric,
    outcome,
    wait_for,
    window_problems,
)
from tests.e2e.stack import SERVICES, Stack

pytestmark = pytest.mark.e2e

HOURS, SENSORS, EVERY_S = 6, 50, 15


def test_a_six_hour_backlog_through_two_shards_is_exact_and_nothing_is_late(
    localstack: str, tmp_path: Path
) -> None:
    pipeline = make_pipeline(
        tmp_path,
        localstack,
        {
            "windowing": {"grace_seconds": 10, "idle_flush_seconds": 3},
            "queues": {"visibility_timeout_seconds": 10, "aggregate_shards": 2},
            "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1},
        },
    )
    stack = Stack(pipeline, tmp_path)
    rows = HOURS * 3600 * SENSORS // EVERY_S
    data = stack.simulate(
        "backlog", 11, rows, "2026-10-30T00:00:00+00:00", sensors=SENSORS, locations=5,
        rate=SENSORS / EVERY_S, invalid=0.01, anomalies=0.002,
        extra=("--late-fraction", "0.02", "--late-delay", "1", "8",
               "--duplicate-fraction", "0.01"),
    )  # fmt: skip
    expected = expectation(
        data, {"min_anomalies": 3, "window_seconds": 60, "cooldown_seconds": 300}
    )
    assert len(expected.windows) > 0.98 * HOURS * 60 * SENSORS  # some minutes lost rows
    stack.set_scenario("aggregated")
    for service in SERVICES:
        stack.start(service)
    aggregators = [
        ServiceProcess(
            "services.aggregator", pipeline.env, tmp_path / "logs", ["--shard", str(i)]
        ).start()
        for i in range(2)
    ]
    try:
        stack.upload(data, "uploader-state", batch_size=2000)  # the default batch size
        aggregate = pipeline.config.queues.aggregate_shard_names()
        wait_for(lambda: depth(pipeline, aggregate) == 0, 600, "the backlog through")
        wait_for(
            lambda: all(metric(p, "sensorpipe_aggregator_open_windows") == 0 for p in aggregators),
            120,
            "the last windows written",
        )
        assert all(metric(p, "sensorpipe_aggregator_windows_total") > 0 for p in aggregators)
        assert [p.terminate() for p in aggregators] == [0, 0]
    finally:
        stack.stop_all()
        for p in aggregators:
            if p.process is not None and p.process.poll() is None:
                p.kill()
    assert not log_problems(tmp_path / "logs")
    got = outcome(pipeline)
    problems = window_problems(got.windows(), expected.windows)
    assert not problems, problems[:10]
    assert got.late == 0, "a reading of the backlog was judged late"
    assert all(doc["revision"] == 0 for doc in got.windows().values())
