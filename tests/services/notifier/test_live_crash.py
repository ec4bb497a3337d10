"""kill -9 of the notifier in the middle of the stream, then a restart: the same
notifications as the reference, none missing, none doubled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sensorpipe.aws import s3_client
from tests.services.notifier.live import (
    as_bursts,
    in_flight,
    late_keys,
    live_run,
    metric,
    read_notifications,
    send,
    settle,
    start_notifier,
    wait_until,
)
from tests.services.notifier.stream import key_of

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_kill_9_mid_run_and_restart_changes_nothing(localstack: str, tmp_path: Path) -> None:
    pipeline, stream, reference = live_run(tmp_path, localstack, seed=23)
    queue = pipeline.config.queues.notify_shard_names()[0]
    bursts = sum(len(v) for v in reference.values())

    first = start_notifier(pipeline, tmp_path / "logs", hold_s=0)  # a fresh queue

    def feed() -> None:  # a live stream: ten envelopes every 0.3 s
        for start in range(0, len(stream.envelopes), 10):
            send(pipeline, queue, stream.envelopes[start : start + 10])
            time.sleep(0.3)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        sent = "sensorpipe_notifier_notifications_total"

        def mid_batch() -> bool:  # some notifications out and messages in flight
            return metric(first, sent, outcome="sent") >= 8 and in_flight(pipeline, queue) > 0

        # Generous: on a loaded 2-core CI machine the first notifications take longer.
        wait_until(mid_batch, 90, "notifications sent while messages are in flight")
        first.kill()  # SIGKILL: received messages unacknowledged, states maybe half written
        assert feeder.is_alive(), "the kill must land while input is still arriving"
        # The default recovery hold (visibility timeout + 2 s) makes the restart safe:
        # what the killed process had received comes back before any decision.
        second = start_notifier(pipeline, tmp_path / "logs")
        feeder.join()
        settle(pipeline, [second])
    finally:
        feeder.join()
        first.kill()
    try:
        notes = read_notifications(pipeline)
        ids = sorted(n["burst_id"] for n in notes)
        assert len(ids) == len(set(ids)) == bursts, f"{len(ids)} read, {bursts} expected"
        assert as_bursts(notes) == reference
        late = late_keys(pipeline)
        assert (
            {key_of(r) for r in stream.late}
            <= late
            <= {key_of(r) for r in stream.late} | (stream.duplicated)
        )
        ledger = s3_client().list_objects_v2(
            Bucket=pipeline.bucket("archival"), Prefix="notifications/"
        )
        assert ledger["KeyCount"] == bursts
    finally:
        second.terminate()
