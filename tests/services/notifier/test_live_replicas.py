"""Two notifier replicas, each consuming its own notify shard (locations split by a
stable hash), give exactly the notifications of one: the reference bursts."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorpipe.records import stable_shard
from tests.services.notifier.live import (
    as_bursts,
    live_run,
    metric,
    read_notifications,
    send,
    settle,
    start_notifier,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_two_replicas_sharded_by_location_equal_one(localstack: str, tmp_path: Path) -> None:
    # The same readings as the one-replica test, split between two shards.
    pipeline, stream, reference = live_run(tmp_path, localstack, seed=11, shards=2)
    queues = pipeline.config.queues.notify_shard_names()
    per_shard = {0: 0, 1: 0}
    for location, bursts in reference.items():
        per_shard[stable_shard(location, 2)] += len(bursts)
    assert min(per_shard.values()) > 0  # both replicas have work

    replicas = [start_notifier(pipeline, tmp_path / "logs", shard=s, hold_s=0) for s in (0, 1)]
    try:
        for shard, queue in enumerate(queues):
            send(pipeline, queue, [e for e in stream.envelopes if e.meta["shard"] == shard])
        settle(pipeline, replicas)
        notes = read_notifications(pipeline)
        assert as_bursts(notes) == reference
        assert len(notes) == sum(per_shard.values())
        for shard, replica in enumerate(replicas):
            sent = metric(replica, "sensorpipe_notifier_notifications_total", outcome="sent")
            assert sent == per_shard[shard]
    finally:
        for replica in replicas:
            replica.terminate()
