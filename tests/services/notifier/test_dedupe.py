"""One burst, one notification (services/notifier/dedupe.py): the ledger in the archival
bucket stops a second send of a burst, whoever finds it again (the same process, another
one, a replay after the checkpoint was lost); a failed send is retried without loss."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from sensorpipe.envelope import Envelope
from sensorpipe.store import MemoryObjectStore
from services.notifier.bursts import Anomaly, Burst
from services.notifier.config import BurstRules
from services.notifier.dedupe import NotificationLedger, NotificationSender, Published
from services.notifier.message import build_body, burst_id, encode_body
from tests.services.notifier.harness import FakeFifo, World, counter, messages
from tests.services.notifier.stream import START, reading, routed, simulate, us

RULES = BurstRules.from_seconds(3, 60, 120, 10)


def burst(location: str = "São Paulo") -> Burst:
    members = [
        Anomaly.from_record(
            reading(location, f"S{i}", START + timedelta(seconds=10 * i), i, batch_id="b1"),
            "b1",
            "notification",
        )
        for i in range(3)
    ]
    return Burst(location, tuple(members))


def sender(store: MemoryObjectStore, fifo: FakeFifo, max_body_bytes: int = 256 * 1024) -> Any:
    ledger = NotificationLedger(store, "notifications")
    url = fifo.get_queue_url(QueueName="t-notifications.fifo")["QueueUrl"]
    return NotificationSender(fifo.client(), url, ledger, max_body_bytes=max_body_bytes)


def test_a_burst_is_sent_once_and_recorded_in_the_ledger() -> None:
    store, fifo = MemoryObjectStore("archival"), FakeFifo()
    found = burst()
    identity = burst_id(found.location, found.start.key)
    one = sender(store, fifo)
    body = build_body(found, RULES, one.ledger.uri(found.location, identity))
    assert one.publish(found, body) is Published.SENT
    [sent] = fifo.sent
    assert sent.body.encode() == encode_body(body)
    assert sent.dedup_id == identity == body["burst_id"]
    assert sent.group_id == "S%C3%A3o%20Paulo"  # the location, percent-encoded
    assert sent.attributes["burst-id"] == identity
    assert sent.attributes["location"] == "São Paulo"
    assert sent.attributes["anomaly-count"] == "3"
    assert sent.attributes["window-start"] == "2026-11-22T01:00:00.000+00:00"
    assert sent.attributes["window-end"] == "2026-11-22T01:00:20.000+00:00"
    key = f"notifications/S%C3%A3o%20Paulo/{identity}.json"
    assert body["record"] == f"memory://archival/{key}"
    assert store.objects[key].body == encode_body(body)
    assert store.objects[key].metadata["location"] == "S%C3%A3o%20Paulo"
    # Found again: by the same sender, or by another process with the same bucket.
    assert one.publish(found, body) is Published.ALREADY_SENT
    assert sender(store, fifo).publish(found, body) is Published.ALREADY_SENT
    assert len(fifo.sent) == 1


def test_a_failed_send_is_retried_at_the_next_commit_without_loss() -> None:
    world = World()
    shard = world.shard()
    world.fifo.fail_next = 1
    records = [
        reading("Chicago", f"S{i}", START + timedelta(seconds=10 * i), i, batch_id="b")
        for i in range(3)
    ]
    envelope = Envelope(
        "edge-x-00000",
        "notification",
        1,
        records,
        position=None,
        max_event_us=us(START + timedelta(seconds=100)),
    )
    received = messages([envelope])
    shard.handler.handle(received)  # decided; the commit fails on the send
    assert world.fifo.sent == [] and world.ledger() == {}
    assert world.archival.get("_checkpoints/notifier-shard-0.json") is None
    assert shard.acks.acked == []  # the input is not acknowledged
    shard.handler.on_tick()  # the next commit publishes it
    [sent] = world.fifo.sent
    assert orjson.loads(sent.body)["reading_keys"] == [
        f"S{i}|2026-11-22T01:00:{10 * i:02d}.000000Z" for i in range(3)
    ]
    assert len(world.ledger()) == 1
    assert shard.acks.acked == received
    shard.handler.on_tick()
    assert len(world.fifo.sent) == 1


def test_a_replay_after_the_checkpoint_was_lost_sends_nothing_again() -> None:
    source = simulate(8, sensors=16, duplicate_rate=0.0)
    world = World()
    shard = world.shard()
    shard.feed(messages(e for b in source.batches for _, e in routed(b, 1)))
    shard.finish()
    sent = len(world.fifo.sent)
    assert sent >= 5
    # A new deployment without the checkpoint; the archive is replayed under new batch
    # ids and without positions (sensorpipe-replay archive): the same bursts, same ids.
    del world.archival.objects["_checkpoints/notifier-shard-0.json"]
    already = counter("sensorpipe_notifier_notifications_total", outcome="already_sent")
    again = world.shard()
    replay = [
        Envelope(
            f"replay-{b.batch_id}",
            "notification",
            1,
            b.anomalies,
            max_event_us=max(t for t, _ in b.rows),
        )
        for b in source.batches
    ]
    again.feed(messages(replay))
    again.finish()
    assert len(world.fifo.sent) == sent
    assert counter("sensorpipe_notifier_notifications_total", outcome="already_sent") == (
        already + sent
    )
