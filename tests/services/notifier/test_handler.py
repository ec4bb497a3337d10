"""The notifier handler against the shared in-memory AWS (tests/moto_stack.py):
publishing, the ledger, state, side outputs."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope, encode
from sensorpipe.runtime import ACK, Message, Reject, Retry
from services.notifier.config import BurstRules, ResolvedSettings
from services.notifier.handler import NotifierHandler
from tests.moto_stack import MotoStack, moto_stack
from tests.services.notifier.reference import expected_bursts
from tests.services.notifier.stream import START, key_of, reading, simulate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingSQS:
    """Passes every call through, counting the sends to the notifications queue."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.sends = 0
        self.fail_sends = 0

    def send_message(self, **kwargs: Any) -> Any:
        if self.fail_sends:
            self.fail_sends -= 1
            raise self._client.exceptions.QueueDoesNotExist(
                {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessage"
            )
        self.sends += 1
        return self._client.send_message(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class World:
    def __init__(self, stack: MotoStack) -> None:
        config = stack.config
        self.config = config
        self.s3 = stack.context.s3
        self.sqs = CountingSQS(stack.context.sqs)
        self.clock = Clock()
        self.fifo_url = self.sqs.get_queue_url(QueueName=config.queues.notifications)["QueueUrl"]
        self.archival = config.buckets.name("archival")
        self.error = config.buckets.name("error")

    def handler(
        self, *, hold_s: float = 0.0, shard: int = 0, grace_s: float = 10
    ) -> NotifierHandler:
        settings = ResolvedSettings(
            rules=BurstRules.from_seconds(3, 60, 120, grace_s),
            idle_flush_s=5,
            recovery_hold_s=hold_s,
            remembered_deliveries=256,
            state_prefix="notifier-state",
            record_prefix="notifications",
        )
        sqs: Any = self.sqs  # the counting pass-through stands in for the client
        return NotifierHandler(
            self.config, settings, shard=shard, sqs=sqs, s3=self.s3, clock=self.clock
        )

    def notifications(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.fifo_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not got:
                return out
            for m in got:
                out.append({**orjson.loads(m["Body"]), "_attributes": m["MessageAttributes"]})
                self.sqs.delete_message(QueueUrl=self.fifo_url, ReceiptHandle=m["ReceiptHandle"])

    def keys(self, bucket: str, prefix: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def jsonl(self, bucket: str, key: str) -> list[dict[str, Any]]:
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return [orjson.loads(line) for line in gzip.decompress(body).splitlines()]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    config = PipelineConfig(
        buckets={"prefix": "nt-handler"}, queues={"prefix": "nthandler", "notify_shards": 2}
    )
    with moto_stack(monkeypatch, config, service="notifier") as stack:
        yield World(stack)


def message(envelope: Envelope, n: int = 0, *, receive_count: int = 1) -> Message:
    encoded = encode(envelope, compress=True)
    receipt = f"r{n}-{envelope.batch_id}"
    return Message(f"m{n}", receipt, encoded.body, encoded.attributes, receive_count)


def envelope(batch_id: str, seconds: list[float], location: str = "Chicago") -> Envelope:
    records = [
        reading(location, f"SENSOR_{i:03d}", START + timedelta(seconds=s), i, batch_id=batch_id)
        for i, s in enumerate(seconds)
    ]
    return Envelope(batch_id, "notification", 1, records)


def test_a_burst_is_published_once_with_all_it_needs(world: World) -> None:
    handler = world.handler()
    outcomes = handler.handle([message(envelope("b1", [0, 20, 40, 50, 300]))])
    assert outcomes == [ACK]
    [note] = world.notifications()
    assert note["location"] == "Chicago"
    assert note["anomaly_count"] == 3
    assert note["window"]["start"] == "2026-11-22T01:00:00.000+00:00"
    assert note["window"]["end"] == "2026-11-22T01:00:40.000+00:00"
    assert note["sensor_ids"] == ["SENSOR_000", "SENSOR_001", "SENSOR_002"]
    assert note["job_ids"] and note["batch_ids"] == ["b1"]
    assert [r["lineage"]["source_row_id"] for r in note["readings"]] == [0, 1, 2]
    assert all(r["quality"]["anomalous"] for r in note["readings"])
    attributes = note["_attributes"]
    assert attributes["burst-id"]["StringValue"] == note["burst_id"]
    ledger_key = f"notifications/Chicago/{note['burst_id']}.json"
    assert world.keys(world.archival, "notifications/") == [ledger_key]
    assert note["record"] == f"s3://{world.archival}/{ledger_key}"
    assert world.keys(world.archival, "notifier-state/") == ["notifier-state/Chicago.json"]


def test_redelivery_restart_and_replay_never_send_twice(world: World) -> None:
    first = world.handler()
    batch = [message(envelope("b1", [0, 20, 40])), message(envelope("b2", [45, 300]), 1)]
    first.handle(batch)
    assert world.sqs.sends == 1
    first.handle(batch)  # redelivered to the same process
    world.handler().handle(batch)  # redelivered to a restarted one (state from S3)
    # A replay with new batch ids into a notifier whose state was wiped: the burst is
    # found again with the same id, and the ledger stops it (past SQS's 5-minute window).
    world.s3.delete_object(Bucket=world.archival, Key="notifier-state/Chicago.json")
    replay = [message(envelope("replay-1", [0, 20, 40, 45, 300]))]
    world.handler().handle(replay)
    assert world.sqs.sends == 1
    assert len(world.notifications()) == 1


def test_late_and_unusable_records_go_to_the_error_bucket(world: World) -> None:
    handler = world.handler()
    handler.handle([message(envelope("b1", [0, 200, 400]))])
    late = envelope("b2", [100, 101, 102])
    broken = envelope("b3", [500])
    broken.records[0]["quality"]["anomalous"] = False
    elsewhere = envelope("b4", [500], location="Texas Wind Farm")  # shard 1's location
    outcomes = handler.handle([message(late), message(broken, 1), message(elsewhere, 2)])
    assert outcomes == [ACK, ACK, ACK]
    [late_key] = world.keys(world.error, "late-anomalies/")
    assert late_key.endswith("/b2.jsonl.gz") and "year=2026/month=11/day=22/hour=01" in late_key
    entries = world.jsonl(world.error, late_key)
    assert [e["reading_key"] for e in entries] == [key_of(r) for r in late.records]
    assert all(e["reason"].startswith("late") for e in entries)
    unusable = [
        e
        for k in world.keys(world.error, "unusable-anomalies/")
        for e in world.jsonl(world.error, k)
    ]
    reasons = sorted(e["reason"] for e in unusable)
    assert reasons[0].startswith("misrouted: location belongs to notify shard 1")
    assert "not marked anomalous" in reasons[1]
    assert world.notifications() == []


def test_poison_is_rejected_and_a_failed_send_retries_without_loss(world: World) -> None:
    handler = world.handler()
    poison = Message("p", "rp", "{not json", {"content-encoding": "identity"})
    world.sqs.fail_sends = 1
    good = message(envelope("b1", [0, 10, 20, 200]))
    outcomes = handler.handle([poison, good])
    assert isinstance(outcomes[0], Reject)
    assert isinstance(outcomes[1], Retry)
    assert world.keys(world.archival, "notifier-state/") == []  # nothing half-done persisted
    again = message(envelope("b1", [0, 10, 20, 200]), receive_count=2)
    assert handler.handle([again]) == [ACK]
    world.clock.now += 10  # the hold after the failure is over
    handler.on_tick()
    assert len(world.notifications()) == 1


def test_idle_location_is_flushed_and_recovery_hold_delays_decisions(world: World) -> None:
    handler = world.handler(hold_s=7)
    handler.handle([message(envelope("b1", [0, 10, 20]))])  # watermark frozen: no decision
    handler.on_tick()
    assert world.sqs.sends == 0
    world.clock.now += 7
    handler.on_tick()  # hold over, but 20 - grace < 20: still waiting for readings
    assert world.sqs.sends == 0
    world.clock.now += 5
    handler.on_tick()  # quiet for the idle period: everything seen is final
    assert world.sqs.sends == 1


def test_a_failed_batch_holds_decisions_until_its_retry_is_back(world: World) -> None:
    handler = world.handler()
    world.sqs.fail_sends = 1
    failed = envelope("b1", [0, 10, 20, 200])
    assert isinstance(handler.handle([message(failed)])[0], Retry)
    # Newer input overtakes the retry; without the hold it would make b1 late.
    assert handler.handle([message(envelope("b2", [400, 410]), 1)]) == [ACK]
    assert handler.handle([message(failed, receive_count=2)]) == [ACK]
    assert world.sqs.sends == 0  # still holding
    world.clock.now += 10
    handler.on_tick()
    [note] = world.notifications()
    assert note["window"]["start"] == "2026-11-22T01:00:00.000+00:00"
    assert world.keys(world.error, "late-anomalies/") == []


def test_during_a_hold_only_redelivered_input_is_judged_by_the_old_watermark(
    world: World,
) -> None:
    handler = world.handler(hold_s=7)
    handler.handle([message(envelope("b1", [0, 200, 400]))])
    handler.handle([message(envelope("b2", [100], location="Chicago"), 1)])  # fresh: late
    redelivered = envelope("b3", [150, 160, 170])
    handler.handle([message(redelivered, 2, receive_count=2)])  # from before a crash
    [late_key] = world.keys(world.error, "late-anomalies/")
    assert late_key.endswith("/b2.jsonl.gz")
    world.clock.now += 7
    handler.on_tick()
    [note] = world.notifications()
    assert note["window"]["start"].endswith("T01:02:30.000+00:00")


def test_a_second_consumer_of_the_same_shard_is_refused(world: World) -> None:
    one, two = world.handler(), world.handler()
    one.handle([message(envelope("b1", [0]))])
    two.handle([message(envelope("b2", [5]))])  # loads the state written by one
    outcomes = one.handle([message(envelope("b3", [10]))])  # its ETag is stale now
    assert isinstance(outcomes[0], Retry) and "changed by another process" in outcomes[0].reason
    assert one.handle([message(envelope("b3", [10]))]) == [ACK]  # re-read, then fine


def test_an_oversized_notification_keeps_every_reading_in_the_ledger(world: World) -> None:
    handler = world.handler()
    seconds = [0.0] + [30.0] * 400 + [100.0]  # 401 members: ties at the third one's time
    handler.handle([message(envelope("big", seconds))])
    [note] = world.notifications()
    assert note["anomaly_count"] == 401
    assert 0 < note["readings_included"] < 401 == len(note["reading_keys"])
    ledger = world.s3.get_object(Bucket=world.archival, Key=note["record"].split("/", 3)[3])
    assert len(orjson.loads(ledger["Body"].read())["readings"]) == 401


def test_the_simulated_stream_gives_the_reference_bursts(world: World) -> None:
    stream = simulate(readings=40_000, shards=2)
    handlers = {0: world.handler(shard=0), 1: world.handler(shard=1)}
    for i, env in enumerate(stream.envelopes):
        assert handlers[env.meta["shard"]].handle([message(env, i)]) == [ACK]
    world.clock.now += 10
    for handler in handlers.values():
        handler.on_tick()
    got: dict[str, list[tuple[str, ...]]] = {}
    for note in world.notifications():
        got.setdefault(note["location"], []).append(tuple(note["reading_keys"]))
    expected = expected_bursts(stream.on_time, min_anomalies=3, window_s=60, cooldown_s=120)
    assert sum(len(v) for v in expected.values()) >= 10
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}
    late_keys = {
        e["reading_key"]
        for k in world.keys(world.error, "late-anomalies/")
        for e in world.jsonl(world.error, k)
    }
    assert (
        {key_of(r) for r in stream.late}
        <= late_keys
        <= {key_of(r) for r in stream.late} | stream.duplicated
    )
