"""kill -9 of the notifier in the middle of a live stream, then a restart: it resumes
from the shard's checkpoint and the notifications are exactly the reference bursts,
none missing, none sent twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services.notifier.live import (
    Inbox,
    as_bursts,
    check_late,
    feed_warm_up_then_rest,
    in_flight,
    ledger_keys,
    live_source,
    metric,
    notifier_pipeline,
    plan,
    start_notifier,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
SENT = "sensorpipe_notifier_notifications_total"


def test_kill_9_mid_run_and_a_restart_give_the_same_bursts_none_twice(
    localstack: str, tmp_path: Path
) -> None:
    live = live_source(23)
    pipeline = notifier_pipeline(tmp_path, localstack)
    queue = pipeline.config.queues.notify_shard_names()[0]
    logs = tmp_path / "logs"
    first = start_notifier(pipeline, logs)
    second = None
    feeder = feed_warm_up_then_rest(pipeline, plan(live, 1, seed=23), pause_s=0.25)
    try:

        def mid_run() -> bool:  # notifications out, messages received and not acknowledged
            return metric(first, SENT, outcome="sent") >= 3 and in_flight(pipeline, queue) > 0

        wait_until(mid_run, 40, "notifications sent while messages are in flight")
        first.kill()  # SIGKILL: held messages unacknowledged, outputs maybe half written
        assert feeder.running, "the kill must land while input is still arriving"
        recorded = ledger_keys(pipeline)  # bursts the killed process sent and recorded
        assert 3 <= len(recorded) < live.bursts
        second = start_notifier(pipeline, logs)
        feeder.join()
        notes = Inbox(pipeline).wait_for(live.bursts, [second])
        assert as_bursts(notes) == live.expected
        assert len({n["burst_id"] for n in notes}) == len(notes) == live.bursts
        assert len(ledger_keys(pipeline)) == live.bursts
        # The restarted process sent exactly the bursts not recorded before the kill.
        assert metric(second, SENT, outcome="sent") == live.bursts - len(recorded)
        check_late(pipeline, live)
        log = second.log_file.read_text()
        assert (
            f"resumed from s3://{pipeline.bucket('archival')}/_checkpoints/notifier-shard-0.json"
            in log
        )
    finally:
        first.kill()
        if second is not None:
            second.terminate()
