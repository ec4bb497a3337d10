"""Two notify shards, each with its own notifier process (locations split by a stable
hash, every source's progress sent to both), give the same notifications as one shard:
the reference bursts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.records import stable_shard
from tests.services.notifier.live import (
    Feeder,
    Inbox,
    as_bursts,
    check_late,
    live_source,
    metric,
    notifier_pipeline,
    plan,
    send_warm_up,
    start_notifiers,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
SENT = "sensorpipe_notifier_notifications_total"


def comparable(note: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the shard count: all but the carrying messages' ids
    (``b.s1`` with two shards) and the ledger's bucket (each pipeline has its own)."""
    return {k: v for k, v in note.items() if k not in ("batch_ids", "record")}


def test_two_shards_give_the_same_bursts_as_one(localstack: str, tmp_path: Path) -> None:
    live = live_source(31)
    per_shard = {0: 0, 1: 0}
    for location, bursts in live.expected.items():
        per_shard[stable_shard(location, 2)] += len(bursts)
    assert min(per_shard.values()) > 0  # both shards have work
    one = notifier_pipeline(tmp_path / "one", localstack, shards=1)
    two = notifier_pipeline(tmp_path / "two", localstack, shards=2)
    processes = start_notifiers(
        [
            (one, tmp_path / "logs-one", 0),
            (two, tmp_path / "logs-two", 0),
            (two, tmp_path / "logs-two", 1),
        ]
    )
    single, pair = processes[:1], processes[1:]
    try:
        rounds = {1: plan(live, 1, seed=31), 2: plan(live, 2, seed=31)}
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(send_warm_up, (one, two), (rounds[1], rounds[2])))
        feeders = [
            Feeder(pipeline, rounds[shards][1:], pause_s=0.05, per_send=3).start()
            for shards, pipeline in ((1, one), (2, two))
        ]
        for feeder in feeders:
            feeder.join()
        with ThreadPoolExecutor(2) as pool:
            waits = [
                pool.submit(Inbox(one).wait_for, live.bursts, single),
                pool.submit(Inbox(two).wait_for, live.bursts, pair),
            ]
        notes_one, notes_two = (w.result() for w in waits)
        assert as_bursts(notes_one) == live.expected
        assert as_bursts(notes_two) == live.expected
        by_id = {n["burst_id"]: comparable(n) for n in notes_one}
        assert {n["burst_id"]: comparable(n) for n in notes_two} == by_id
        assert len(by_id) == live.bursts
        for shard, process in enumerate(pair):
            assert metric(process, SENT, outcome="sent") == per_shard[shard]
        check_late(one, live)
        check_late(two, live)
    finally:
        for process in processes:
            process.terminate()
