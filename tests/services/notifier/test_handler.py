"""The notifier handler (services/notifier/handler.py: its stage run by the shared
sequencer) over in-memory stores and a fake FIFO queue, driven the way the consumer loop
drives it. The bursts equal the independent reference whatever the delivery order,
splitting, duplication, sharding, restarts and crashes; lateness follows the sources'
order; the checkpoint is per shard and conditional."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest

from sensorpipe.envelope import Envelope, Position
from sensorpipe.records import stable_shard
from sensorpipe.runtime import HOLD, Message, Reject
from sensorpipe.stateful import checkpoint_key
from tests.moto_stack import message_of
from tests.services.notifier.harness import (
    GRACE_S,
    ODD_LOCATIONS,
    RULE,
    World,
    counter,
    messages,
)
from tests.services.notifier.reference import expected_bursts
from tests.services.notifier.stream import (
    LOCATIONS,
    START,
    Source,
    SourceBatch,
    key_of,
    random_split,
    reading,
    routed,
    simulate,
    us,
    warm_up_first,
)

Bursts = dict[str, list[tuple[str, ...]]]
ORDERS = ["in order", "shuffled", "reversed", "split", "duplicated", "resplit duplicates"]
SAME_PARTS = {"in order", "shuffled", "reversed", "duplicated"}  # every batch whole


def reference(source: Source) -> Bursts:
    found = expected_bursts(
        source.on_time,
        min_anomalies=RULE["min_anomalies"],
        window_s=RULE["window_seconds"],
        cooldown_s=RULE["cooldown_seconds"],
    )
    return {k: sorted(v) for k, v in found.items()}


@functools.cache
def one_source(seed: int) -> Source:
    """One source, with rows its source wrote minutes late and rows written twice."""
    return simulate(seed, sensors=16, late_rows=12, duplicate_rate=0.08, grace_s=GRACE_S)


@functools.cache
def three_sources(seed: int) -> Source:
    """Three sources sharing the locations; nothing written late (with several sources,
    whether a row written late is late depends on how far the others got)."""
    return simulate(seed, streams=3, sensors=8, duplicate_rate=0.05, grace_s=GRACE_S)


def sizes(rng: random.Random) -> Iterator[int]:
    while True:
        yield rng.randint(1, 10)


def deliveries(
    source: Source, order: str, *, shards: int = 1, seed: int = 0
) -> list[list[Message]]:
    """Per shard, the messages as SQS might deliver the router's output of ``source``.

    Every source's batch 0 comes first (see stream.warm_up_first), then the rest in
    ``order``: whole batches in source order, shuffled or reversed; split in random
    pieces, shuffled; or with ~30% of the parts delivered again, soon or long after
    (``resplit``: the copy split differently from the first delivery)."""
    rng = random.Random(seed)
    first, rest = warm_up_first(source.batches)
    if order == "in order":
        rest.sort(key=lambda b: (b.seq, b.stream))

    def parts(batch: SourceBatch, split: bool) -> list[tuple[int, Envelope]]:
        return routed(
            batch, shards, pieces=random_split(rng, 3, len(batch.rows)) if split else ("",)
        )

    split = order in ("split", "resplit duplicates")
    out: list[list[Message]] = []
    for shard in range(shards):
        head = [e for b in first for s, e in parts(b, False) if s == shard]
        pieces = [e for b in rest for s, e in parts(b, split) if s == shard]
        if order in ("shuffled", "split", "duplicated", "resplit duplicates"):
            rng.shuffle(pieces)
        elif order == "reversed":
            pieces.reverse()
        delivered = messages(head + pieces)
        if order in ("duplicated", "resplit duplicates"):
            for index in sorted(rng.sample(range(len(pieces)), len(pieces) // 3), reverse=True):
                piece = pieces[index]
                if order == "resplit duplicates":
                    assert piece.position is not None
                    batch = next(
                        b
                        for b in rest
                        if (b.stream, b.seq) == (piece.position.stream, piece.position.seq)
                    )
                    copies = [e for s, e in parts(batch, True) if s == shard]
                else:
                    copies = [piece]
                at = len(head) + index + 1 + rng.choice([0, 3, len(pieces) // 2])
                delivered[at:at] = messages(copies)
        out.append(delivered)
    return out


def run(source: Source, order: str, *, shards: int = 1, seed: int = 0) -> World:
    world = World()
    rng = random.Random(seed)
    for shard, delivered in enumerate(deliveries(source, order, shards=shards, seed=seed)):
        process = world.shard(shard, shards=shards)
        process.feed(delivered, sizes(rng))
        process.finish()
        assert process.handler.held_count() == 0
        assert process.unsettled() == []  # every message acknowledged, copies too
    return world


def without_batch_ids(body: str) -> dict[str, Any]:
    """A notification without ``batch_ids``: those name the messages that carried the
    members, which differ with the split (``b.0``) and the shard count (``b.s1``)."""
    note = dict(orjson.loads(body))
    note.pop("batch_ids")
    return note


@functools.cache
def in_order_run(seed: int) -> World:
    return run(one_source(seed), "in order", seed=seed)


# -- delivery order, splitting, duplicates -----------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("order", ORDERS)
def test_one_source_any_delivery_gives_the_reference_bursts(order: str, seed: int) -> None:
    source = one_source(seed)
    expected = reference(source)
    assert sum(map(len, expected.values())) >= 5, "the source must hold bursts"
    assert source.late and source.duplicated
    world = run(source, order, seed=seed)
    assert world.bursts() == expected
    baseline = in_order_run(seed).bodies()
    bodies = world.bodies()
    assert bodies.keys() == baseline.keys()  # the same burst ids
    if order in SAME_PARTS:
        assert bodies == baseline  # byte for byte
    else:
        assert {k: without_batch_ids(v) for k, v in bodies.items()} == {
            k: without_batch_ids(v) for k, v in baseline.items()
        }
    # Late is judged in the source's order: exactly the rows written more than the
    # grace late, plus copies of readings decided already.
    late = world.late_keys()
    assert {key_of(r) for r in source.late} == late - source.duplicated
    locations = world.checkpoint()["state"]["locations"]
    assert all(loc["pending"] == [] for loc in locations)  # everything decided


@pytest.mark.parametrize("seed", [4, 5])
@pytest.mark.parametrize("order", ["shuffled", "reversed", "resplit duplicates"])
def test_several_sources_and_shards_give_the_reference_bursts(order: str, seed: int) -> None:
    source = three_sources(seed)
    expected = reference(source)
    assert len(source.streams) == 3 and len(expected) == 5
    assert source.late == []
    one, two = run(source, order, seed=seed), run(source, order, shards=2, seed=seed)
    assert one.bursts() == expected
    assert two.bursts() == expected
    assert {k: without_batch_ids(v) for k, v in one.bodies().items()} == {
        k: without_batch_ids(v) for k, v in two.bodies().items()
    }
    assert one.late_keys() <= source.duplicated
    # One checkpoint per shard, in the archival bucket, each knowing every source.
    assert sorted(k for k in two.archival.objects if k.startswith("_checkpoints/")) == [
        "_checkpoints/notifier-shard-0.json",
        "_checkpoints/notifier-shard-1.json",
    ]
    for shard in (0, 1):
        streams = two.checkpoint(shard)["streams"]["streams"]
        assert sorted(streams) == source.streams
        last = {b.stream: b.seq for b in source.batches}
        assert {name: s["next"] for name, s in streams.items()} == {
            name: seq + 1 for name, seq in last.items()
        }


def test_a_part_redelivered_after_it_was_applied_is_not_applied_again() -> None:
    source = one_source(1)
    world = World()
    shard = world.shard()
    applied_batches: list[SourceBatch] = []
    for b in source.batches:  # until some anomalies are decided and some are not
        shard.feed(messages(e for _, e in routed(b, 1)))
        applied_batches.append(b)
        state = world.checkpoint()["state"]
        if world.fifo.sent and any(loc["pending"] for loc in state["locations"]):
            break
    batches = applied_batches
    assert len(shard.acks.acked) == len(batches)
    before = orjson.dumps(world.checkpoint()["state"])
    decided = len(world.fifo.sent)
    applied = counter("sensorpipe_sequencer_parts_total", service="notifier", verdict="applied")
    outcomes = {
        o: counter("sensorpipe_notifier_anomalies_total", outcome=o)
        for o in ("duplicate", "late", "cooldown")
    }
    # Re-read: re-applying would find the pending anomalies duplicates, the decided late.
    again = [e for b in batches[1:] for _, e in routed(b, 1)]  # whole, as before
    again += [e for b in batches[1:] for _, e in routed(b, 1, pieces=("0", "10", "11"))]
    shard.feed(messages(again))
    after = counter("sensorpipe_sequencer_parts_total", service="notifier", verdict="applied")
    assert after - applied == len(again)
    for outcome, value in outcomes.items():
        assert counter("sensorpipe_notifier_anomalies_total", outcome=outcome) == value, outcome
    assert orjson.dumps(world.checkpoint()["state"]) == before
    assert world.error_lines("late-anomalies") == {}
    assert len(world.fifo.sent) == decided
    assert len(shard.acks.acked) == len(batches) + len(again)  # copies acknowledged


def test_parts_collected_twice_are_applied_once() -> None:
    batch = one_source(1).batches[1]
    assert len(batch.anomalies) >= 1
    world = World()
    shard = world.shard()
    whole = routed(batch, 1)[0][1]
    halves = [e for _, e in routed(batch, 1, pieces=("0", "1"))]
    warm = routed(one_source(1).batches[0], 1)[0][1]
    duplicates = counter("sensorpipe_notifier_anomalies_total", outcome="duplicate")
    # Half of batch 1, the same half again, the whole of it, the other half; then batch 0.
    shard.feed(messages([halves[0], halves[0], whole, halves[1], warm]), [5])
    assert counter("sensorpipe_notifier_anomalies_total", outcome="duplicate") == duplicates
    state = world.checkpoint()["state"]
    pending = [a["key"] for loc in state["locations"] for a in loc["pending"]]
    assert sorted(pending) == sorted({key_of(r) for r in batch.anomalies})
    assert len(shard.acks.acked) == 5


# -- lateness, unusable records, idle, several sources -----------------------------------------

STREAM = "edge-test-g1"
PARTITION = "year=2026/month=11/day=22/hour=01"


def batch(
    seq: int, records: list[dict[str, Any]], *, newest_s: float, stream: str = STREAM
) -> Envelope:
    """Batch ``seq`` of ``stream`` as the router sends it to a notify shard: ``records``
    are the shard's anomalies (maybe none), ``newest_s`` the time of the batch's newest
    reading of any kind, in seconds after START."""
    return Envelope(
        f"{stream}-{seq:05d}",
        "notification",
        1,
        records,
        position=Position(stream, seq),
        max_event_us=us(START + timedelta(seconds=newest_s)),
    )


def anomaly(seconds: float, sensor: str, location: str = "Chicago") -> dict[str, Any]:
    at = START + timedelta(seconds=seconds)
    return reading(location, sensor, at, round(seconds * 1000), batch_id="b")


def keys(*records: dict[str, Any]) -> tuple[str, ...]:
    return tuple(key_of(r) for r in records)


def test_anomalies_written_more_than_the_grace_late_go_to_late_anomalies() -> None:
    world = World()
    shard = world.shard()
    lone = anomaly(0, "S1")
    shard.feed(messages([batch(0, [lone], newest_s=100)]))  # watermark 100 - 10 s = 90 s
    late = [anomaly(40, "S6"), anomaly(45, "S7"), anomaly(50, "S8"), anomaly(90, "S3")]
    fresh = [anomaly(90.001, "S4"), anomaly(95, "S5")]
    shard.feed(messages([batch(1, [late[0], fresh[0], *late[1:], fresh[1]], newest_s=101)]))
    last = anomaly(100, "S9")
    shard.feed(messages([batch(2, [last], newest_s=102)]))
    shard.finish()
    # 0, 40, 45 would be a burst had the late ones been taken in.
    assert world.bursts() == {"Chicago": [keys(*fresh, last)]}
    [(key, entries)] = world.error_lines("late-anomalies").items()
    assert key == f"late-anomalies/{PARTITION}/{STREAM}-b000000001-n0.jsonl.gz"
    assert [e["reading_key"] for e in entries] == list(keys(*late))
    assert [e["record"] for e in entries] == late
    assert {e["location"] for e in entries} == {"Chicago"}
    assert {e["watermark"] for e in entries} == {"2026-11-22T01:01:30.000+00:00"}
    assert all(e["reason"].startswith("late: at or before the watermark") for e in entries)
    metadata = world.errors.objects[key].metadata
    assert metadata["count"] == "4" and metadata["batch-id"] == f"{STREAM}-00001"


def test_unusable_and_misrouted_records_go_to_unusable_anomalies() -> None:
    elsewhere = next(loc for loc in LOCATIONS if stable_shard(loc, 2) == 1)
    here = next(loc for loc in LOCATIONS if stable_shard(loc, 2) == 0)
    normal = anomaly(1, "S1", here)
    normal["quality"]["anomalous"] = False
    no_location = anomaly(2, "S2", here)
    del no_location["sensor_data"]["location"]
    bad_time = anomaly(3, "S3", here)
    bad_time["sensor_data"]["timestamp"] = "yesterday"
    misrouted = anomaly(4, "S4", elsewhere)
    good = anomaly(5, "S5", here)
    records = [normal, no_location, bad_time, {"quality": {"anomalous": True}}, misrouted, good]
    world = World()
    shard = world.shard(0, shards=2)
    shard.feed(messages([batch(0, records, newest_s=6)]))
    shard.finish()
    [(key, entries)] = world.error_lines("unusable-anomalies").items()
    assert key == f"unusable-anomalies/{PARTITION}/{STREAM}-b000000000-n0.jsonl.gz"
    reasons = [e["reason"] for e in entries]
    assert reasons == [
        "record is not marked anomalous (quality.anomalous)",
        "sensor_data.location is missing or empty",
        "sensor_data.timestamp 'yesterday' is not ISO-8601",
        "record has no 'sensor_data' object",
        "misrouted: location belongs to notify shard 1, this is shard 0",
    ]
    assert [e["record"] for e in entries] == records[:5]
    assert world.error_lines("late-anomalies") == {}
    assert world.fifo.sent == []


def test_idle_flush_decides_a_quiet_sources_anomalies_after_the_restart_quiet_time() -> None:
    world = World()
    shard = world.shard(idle_flush_seconds=2)
    burst = [anomaly(0, "S1"), anomaly(10, "S2"), anomaly(20, "S3")]
    shard.feed(messages([batch(0, [*burst, anomaly(24, "S4")], newest_s=25)]))
    assert world.fifo.sent == []  # watermark 25 - 10 s: 20 might still get company
    world.clock.now += 3  # quiet for longer than the idle time, but just started
    shard.handler.on_tick()
    assert world.fifo.sent == []
    world.clock.now += 8  # one visibility timeout + 5 s after the start
    shard.handler.on_tick()
    assert world.bursts() == {"Chicago": [keys(*burst)]}
    state = world.checkpoint()["state"]
    assert state["decided_us"] == us(START + timedelta(seconds=25))  # lifted by 0
    [chicago] = state["locations"]
    assert chicago["pending"] == [] and chicago["cooldown_until_us"] == us(
        START + timedelta(seconds=20 + RULE["cooldown_seconds"])
    )
    # What the quiet source sent was final: a reading at the idle watermark is late now.
    at_watermark, after = anomaly(25, "S5", "Denver"), anomaly(25.001, "S6", "Denver")
    shard.feed(messages([batch(1, [at_watermark, after], newest_s=26)]))
    assert world.late_keys() == {key_of(at_watermark)}
    # The source is active again (watermark 26 - 10 s), but decisions made stay made.
    behind = anomaly(20, "S7", "Denver")
    shard.feed(messages([batch(2, [behind], newest_s=27)]))
    assert world.late_keys() == {key_of(at_watermark), key_of(behind)}
    assert world.checkpoint()["state"]["decided_us"] == us(START + timedelta(seconds=25))


def test_a_lagging_source_holds_the_decisions_back() -> None:
    world = World()
    shard = world.shard()
    a, b = "edge-a-g1", "edge-b-g1"
    shard.feed(messages([batch(0, [], newest_s=0, stream=a), batch(0, [], newest_s=0, stream=b)]))
    ahead = [anomaly(10, "A1"), anomaly(20, "A2"), anomaly(30, "A3")]
    shard.feed(messages([batch(1, ahead, newest_s=1000, stream=a)]))
    shard.feed(messages([batch(1, [], newest_s=15, stream=b)]))  # progress, no anomaly
    assert world.checkpoint()["state"]["decided_us"] == us(START + timedelta(seconds=5))
    assert world.fifo.sent == []
    lagging = anomaly(25, "B1")  # on time for its source: 25 > 15 - 10
    shard.feed(messages([batch(2, [lagging], newest_s=40, stream=b)]))
    assert world.bursts() == {"Chicago": [keys(ahead[0], ahead[1], lagging)]}
    assert world.error_lines("late-anomalies") == {}


def test_poison_is_rejected_and_the_rest_held() -> None:
    world = World()
    shard = world.shard()
    poison = Message("p", "rp", "{not json", {"content-encoding": "identity"})
    good = message_of(batch(0, [anomaly(0, "S1")], newest_s=1))
    outcomes = shard.handler.handle([poison, good])
    assert isinstance(outcomes[0], Reject) and "not a batch envelope" in outcomes[0].reason
    assert outcomes[1] == HOLD


# -- restarts, crashes, a second process ----------------------------------------------------------


@pytest.mark.parametrize("cut", [5, 40, 111, 230])
def test_a_restart_from_the_checkpoint_gives_the_uninterrupted_bursts(cut: int) -> None:
    source = three_sources(4)
    baseline = run(source, "shuffled", seed=4)
    [delivered] = deliveries(source, "shuffled", seed=4)
    world = World()
    first = world.shard()
    first.feed(delivered[:cut], [3])
    assert first.acks.acked  # committed and acknowledged
    redelivered = first.unsettled()  # kill -9: these come back after the visibility timeout
    assert redelivered or cut == 5
    second = world.shard()
    resumed = {name: s.next for name, s in second.handler.book.streams.items()}
    checkpoint = world.checkpoint()["streams"]["streams"]
    assert resumed == {name: s["next"] for name, s in checkpoint.items()}
    assert sum(resumed.values()) > 0
    second.feed([*delivered[cut : cut + 20], *redelivered, *delivered[cut + 20 :]])
    second.finish()
    assert world.bodies() == baseline.bodies()
    # Only copies of readings can be late here: whether a copy meets its original still
    # pending (a duplicate) or decided (late) depends on how far the other sources got.
    assert world.late_keys() <= source.duplicated


def test_a_crash_between_publishing_and_the_checkpoint_sends_nothing_twice() -> None:
    source = three_sources(5)
    baseline = run(source, "shuffled", seed=5)
    [delivered] = deliveries(source, "shuffled", seed=5)
    world = World()
    world.archival.fail_keys = {checkpoint_key("notifier", 0)}
    first = world.shard()
    first.feed(delivered[:60])
    sent_before = len(world.fifo.sent)
    world.archival.failing = True  # outputs are written, the checkpoint is not
    fed = 60
    while len(world.fifo.sent) == sent_before:
        first.feed(delivered[fed : fed + 5])
        fed += 5
        assert fed < len(delivered), "no burst was published while checkpoints failed"
    sent_unrecorded = len(world.fifo.sent) - sent_before  # in no checkpoint
    redelivered = first.unsettled()
    world.archival.failing = False
    already = counter("sensorpipe_notifier_notifications_total", outcome="already_sent")
    second = world.shard()
    second.feed([*redelivered, *delivered[fed:]])
    second.finish()
    assert world.bodies() == baseline.bodies()  # also: no burst id sent twice
    assert len(world.fifo.sent) == len(baseline.fifo.sent)
    repeated = counter("sensorpipe_notifier_notifications_total", outcome="already_sent")
    assert repeated - already == sent_unrecorded  # found again, stopped by the ledger


def test_a_second_writer_of_the_checkpoint_makes_the_handler_reread_and_hand_back() -> None:
    source = one_source(2)
    envelopes = [e for b in source.batches[:6] for _, e in routed(b, 1)]
    world = World()
    one = world.shard()
    one.feed(messages(envelopes[:2]))
    two = world.shard()  # a second process on the same shard: it reads one's checkpoint
    two.feed(messages(envelopes[2:4]))
    resets = counter("sensorpipe_sequencer_resets_total", service="notifier")
    # one receives a copy of batch 2 (applied by two: one does not know) and batch 4.
    handed = messages([envelopes[2], envelopes[4]])
    one.feed(handed)  # batch 2 applied, then the commit finds the checkpoint changed
    assert counter("sensorpipe_sequencer_resets_total", service="notifier") == resets + 1
    assert one.acks.released == handed  # handed back for redelivery, not acknowledged
    assert one.acks.acked == one.delivered[:2]
    # Re-read: one now stands where two left the shard.
    stream = source.batches[0].stream
    assert one.handler.book.next_of(stream) == 4
    assert one.handler.stage.snapshot() == two.handler.stage.snapshot()
    assert one.handler.held_count() == 0
    redelivered = messages([envelopes[4]])
    one.feed(redelivered)  # applied on the re-read state and committed
    assert one.acks.acked[-1:] == redelivered
    assert world.checkpoint()["streams"]["streams"][stream]["next"] == 5


def test_set_aside_records_are_written_once_per_batch_however_it_was_split() -> None:
    world = World()
    world.archival.fail_keys = {checkpoint_key("notifier", 0)}
    first = world.shard()
    first.feed(messages([batch(0, [anomaly(0, "S1")], newest_s=100)]))
    late = [anomaly(10, "S2"), anomaly(20, "S3"), anomaly(30, "S4"), anomaly(40, "S5")]
    halves = [
        Envelope(
            f"{STREAM}-00001.{i}",
            "notification",
            1,
            late[2 * i : 2 * i + 2],
            position=Position(STREAM, 1, str(i)),
            max_event_us=us(START + timedelta(seconds=101)),
        )
        for i in (0, 1)
    ]
    world.archival.failing = True  # written the late rows, then died before the checkpoint
    first.feed(messages(halves))
    world.archival.failing = False
    second = world.shard()  # gets the batch again, whole (the source sent it again)
    second.feed(messages([batch(1, late, newest_s=101)]))
    lines = world.error_lines("late-anomalies")
    assert list(lines) == [f"late-anomalies/{PARTITION}/{STREAM}-b000000001-n0.jsonl.gz"]
    assert [e["reading_key"] for e in lines[next(iter(lines))]] == list(keys(*late))


def test_a_small_in_flight_limit_still_waits_for_missing_batches() -> None:
    world = World()
    shard = world.shard(max_in_flight=20)  # the least SENSORPIPE_NOTIFIER_MAX_IN_FLIGHT
    skipped = counter("sensorpipe_sequencer_batches_skipped_total", service="notifier")
    burst = [anomaly(0, "S1"), anomaly(10, "S2"), anomaly(20, "S3")]
    later = [batch(seq, [], newest_s=10 * seq) for seq in range(5, 0, -1)]
    shard.feed(messages([*later, batch(0, burst, newest_s=21)]), [1])
    assert counter("sensorpipe_sequencer_batches_skipped_total", service="notifier") == skipped
    assert world.error_lines("late-anomalies") == {}
    assert world.bursts() == {"Chicago": [keys(*burst)]}


def test_a_nul_location_and_a_normal_one_in_one_envelope_are_both_sent() -> None:
    """Issue 11: a burst at a location with a NUL (SQS refused the raw NUL in the
    ``location`` attribute) and a normal location's burst, in one envelope: neither was
    sent and both were acknowledged. Both are sent now, the odd one's attribute
    percent-encoded."""
    odd, normal = "Plant\x00North", "Chicago"
    records = [anomaly(10 * i, f"S{i}", odd) for i in range(3)]
    records += [anomaly(10 * i + 1, f"T{i}", normal) for i in range(3)]
    world = World()
    shard = world.shard()
    shard.feed(messages([batch(0, records, newest_s=100)]))
    shard.finish()
    assert world.fifo.refused == []
    assert set(world.bursts()) == {odd, normal}
    (sent,) = [s for s in world.fifo.sent if s.note["location"] == odd]
    assert sent.attributes["location"] == "Plant%00North"
    assert sent.attributes["percent-encoded"] == "location"
    assert not shard.unsettled()


@pytest.mark.parametrize("location", ODD_LOCATIONS)
def test_a_burst_at_any_location_is_sent_and_recorded_in_the_ledger(location: str) -> None:
    world = World()
    shard = world.shard()
    shard.feed(messages([batch(0, [anomaly(i, f"S{i}", location) for i in range(3)], newest_s=90)]))
    shard.finish()
    assert world.fifo.refused == []
    (sent,) = world.fifo.sent
    assert sent.note["location"] == location  # the body keeps it exactly
    (key,) = world.ledger()
    segments = key.split("/")
    assert len(segments) == 3 and segments[1] not in ("", ".", "..")
    assert len(key.encode()) <= 1024 and key.isascii() and key.isprintable()
    assert orjson.loads(world.ledger()[key].body)["location"] == location
    assert world.checkpoint()["state"] is not None and not shard.unsettled()


def test_a_burst_sqs_refuses_is_kept_in_the_error_bucket_and_the_others_are_sent() -> None:
    refused, normal = "Refused Town", "Chicago"
    records = [anomaly(10 * i, f"S{i}", refused) for i in range(3)]
    records += [anomaly(10 * i + 1, f"T{i}", normal) for i in range(3)]
    world = World()
    world.fifo.refuse_locations = {refused}
    before = counter("sensorpipe_notifier_notifications_total", outcome="unsendable")
    shard = world.shard()
    shard.feed(messages([batch(0, records, newest_s=100)]))
    shard.finish()
    assert set(world.bursts()) == {normal}
    (key,) = [k for k in world.errors.objects if k.startswith("unsendable-notifications/")]
    entry = orjson.loads(world.errors.objects[key].body)
    assert key == f"unsendable-notifications/{PARTITION}/{entry['notification']['burst_id']}.json"
    assert entry["location"] == refused
    assert entry["reason"].startswith("InvalidParameterValue: ")
    assert entry["notification"]["reading_keys"] == list(keys(*records[:3]))
    assert counter("sensorpipe_notifier_notifications_total", outcome="unsendable") == before + 1
    assert len(world.ledger()) == 1  # only what was sent is in the ledger
    assert not shard.unsettled()  # acknowledged: nothing stuck, nothing lost


@pytest.mark.parametrize(
    "stamp",
    [
        "0000-01-01T00:00:00+00:00",
        "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
        "9999-12-31T23:00:00-05:00",  # after 9999 in UTC
        "10000-01-01T00:00:00",
    ],
)
def test_a_timestamp_beyond_the_years_1_to_9999_is_unusable_and_the_batch_goes_on(
    stamp: str,
) -> None:
    """Issue 11: the notifier raised OverflowError on such a reading, and its batch with
    it. It is set aside; its neighbours' burst is sent."""
    odd = anomaly(5, "S9")
    odd["sensor_data"]["timestamp"] = stamp
    records = [anomaly(0, "S0"), odd, anomaly(10, "S1"), anomaly(20, "S2")]
    world = World()
    shard = world.shard()
    shard.feed(messages([batch(0, records, newest_s=100)]))
    shard.finish()
    assert world.bursts() == {"Chicago": [keys(records[0], *records[2:])]}
    [(key, entries)] = world.error_lines("unusable-anomalies").items()
    # No readable time among the entries: filed under the batch's creation time.
    assert key.startswith("unusable-anomalies/year=")
    assert key.endswith(f"/{STREAM}-b000000000-n0.jsonl.gz")
    assert [e["record"] for e in entries] == [odd]
    assert "not ISO-8601" in entries[0]["reason"]
    assert not shard.unsettled()
