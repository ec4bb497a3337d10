"""Against LocalStack with a real notifier process: the 100,000-reading stream gives
exactly the reference bursts, and redeliveries and replays notify nothing more."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorpipe.aws import s3_client
from sensorpipe.envelope import Envelope
from tests.services.notifier.live import (
    as_bursts,
    late_keys,
    live_run,
    metric,
    read_notifications,
    send,
    settle,
    start_notifier,
)
from tests.services.notifier.stream import key_of

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
SENT = "sensorpipe_notifier_notifications_total"


def rebatched(envelopes: list[Envelope], run: str) -> list[Envelope]:
    """The same readings under new batch ids, as a replay from the archive produces."""
    return [e.with_records(e.records, batch_id=f"{run}-{e.batch_id}") for e in envelopes]


def test_stream_bursts_match_the_reference_and_replays_add_none(
    localstack: str, tmp_path: Path
) -> None:
    pipeline, stream, reference = live_run(tmp_path, localstack, seed=11)
    queue = pipeline.config.queues.notify_shard_names()[0]
    bursts = sum(len(v) for v in reference.values())
    assert bursts >= 30 and len(reference) == 5

    # A fresh queue has no crashed predecessor: no recovery hold needed.
    notifier = start_notifier(pipeline, tmp_path / "logs", hold_s=0)
    try:
        send(pipeline, queue, stream.envelopes)
        send(pipeline, queue, stream.envelopes[40:60])  # delivered twice, as SQS may
        settle(pipeline, [notifier])
        notes = read_notifications(pipeline)
        assert as_bursts(notes) == reference
        assert len({n["burst_id"] for n in notes}) == bursts
        late = late_keys(pipeline)
        assert (
            {key_of(r) for r in stream.late}
            <= late
            <= {key_of(r) for r in stream.late} | (stream.duplicated)
        )

        send(pipeline, queue, stream.envelopes[:12])  # a replay of the same messages
        send(pipeline, queue, rebatched(stream.envelopes[100:112], "replay"))
        settle(pipeline, [notifier])
        assert read_notifications(pipeline) == []
        assert metric(notifier, SENT, outcome="sent") == bursts
    finally:
        notifier.terminate()

    # The state is lost (a new deployment) and everything is replayed: the same burst
    # ids come out, and the durable ledger, not SQS's 5-minute window, stops them.
    s3 = s3_client()
    archival = pipeline.bucket("archival")
    for item in s3.list_objects_v2(Bucket=archival, Prefix="notifier-state/")["Contents"]:
        s3.delete_object(Bucket=archival, Key=item["Key"])
    again = start_notifier(pipeline, tmp_path / "logs", hold_s=0)
    try:
        send(pipeline, queue, rebatched(stream.envelopes, "replay2"))
        settle(pipeline, [again])
        assert read_notifications(pipeline) == []
        assert metric(again, SENT, outcome="sent") == 0
        assert metric(again, SENT, outcome="already_sent") == bursts
    finally:
        again.terminate()
