"""Against LocalStack with a real notifier process: three sources' positioned batches,
as the router sends them (progress envelopes included, some split, some delivered
twice), give exactly the reference bursts; late rows go to the error bucket; parts
delivered again after they were applied notify nothing more."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from sensorpipe.aws import s3_client
from tests.services.notifier.live import (
    IDLE_S,
    Inbox,
    as_bursts,
    check_late,
    checkpoint,
    feed_warm_up_then_rest,
    ledger_keys,
    live_source,
    metric,
    notifier_pipeline,
    plan,
    queue_empty,
    send,
    start_notifier,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
SENT = "sensorpipe_notifier_notifications_total"
PARTS = "sensorpipe_sequencer_parts_total"


def test_a_positioned_stream_gives_exactly_the_reference_bursts(
    localstack: str, tmp_path: Path
) -> None:
    live = live_source(11)
    assert live.bursts >= 10 and len(live.expected) == 5
    pipeline = notifier_pipeline(tmp_path, localstack)
    queue = pipeline.config.queues.notify_shard_names()[0]
    rounds = plan(live, 1, seed=11)
    assert any(e.records == [] for r in rounds for _, e in r)  # progress envelopes
    assert any(e.position and e.position.part for r in rounds for _, e in r)  # pieces
    notifier = start_notifier(pipeline, tmp_path / "logs")
    try:
        feed_warm_up_then_rest(pipeline, rounds, pause_s=0.05, per_send=3).join()
        inbox = Inbox(pipeline)
        notes = inbox.wait_for(live.bursts, [notifier])
        assert as_bursts(notes) == live.expected
        assert len({n["burst_id"] for n in notes}) == len(notes) == live.bursts
        check_late(pipeline, live)
        # The ledger holds every notification in full, under the key the body names.
        assert len(ledger_keys(pipeline)) == live.bursts
        note = notes[0]
        key = note["record"].removeprefix(f"s3://{pipeline.bucket('archival')}/")
        stored = s3_client().get_object(Bucket=pipeline.bucket("archival"), Key=key)
        assert orjson.loads(stored["Body"].read())["reading_keys"] == note["reading_keys"]
        # The shard's checkpoint: every source applied to its last batch.
        data = checkpoint(pipeline, 0)
        assert data is not None
        last = {b.stream: b.seq for b in live.source.batches}
        assert {k: s["next"] for k, s in data["streams"]["streams"].items()} == {
            k: seq + 1 for k, seq in last.items()
        }
        assert all(loc["pending"] == [] for loc in data["state"]["locations"])
        assert metric(notifier, SENT, outcome="sent") == live.bursts

        # Old parts delivered again: recognised as applied, acknowledged, no notification.
        applied = metric(notifier, PARTS, verdict="applied")
        again = [s for r in rounds[1:13] for s in r]
        send(pipeline, again)
        wait_until(lambda: queue_empty(pipeline, queue), 30, "the copies acknowledged")
        time.sleep(IDLE_S + 1)
        assert inbox.read() == 0
        assert metric(notifier, PARTS, verdict="applied") - applied == len(again)
        assert metric(notifier, SENT, outcome="sent") == live.bursts
    finally:
        notifier.terminate()
