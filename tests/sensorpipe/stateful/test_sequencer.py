"""SequencedHandler over a fake stage, an in-memory store, a fake acknowledger and an
injected clock, driven the way the consumer loop drives it.

The fake stage records every batch it is given (its name and its records, in order)
and every ``advance``; its checkpointed state is the list of batches applied, so a
restart shows what was applied once, twice or never. The acknowledger checks, at the
moment of every ``ack``, that the checkpoint in the store already includes the
message's position (the commit came first).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sensorpipe.envelope import Envelope, Position, encode
from sensorpipe.runtime import HOLD, Message, Reject
from sensorpipe.stateful import (
    Batch,
    PrometheusObserver,
    SequencedHandler,
    SequencerSettings,
    StreamBook,
    Timing,
    checkpoint_key,
    read_checkpoint,
)
from sensorpipe.store import Expect, MemoryObjectStore, StoreError

SERVICE = "fake"
KEY = checkpoint_key(SERVICE, 0)
STREAM = "edge-1-tok-g0"
GRACE_US = 5_000_000
IDLE_S = 30.0
GAP_S = 600.0
T0 = 10_000.0
BASE_US = 1_700_000_000_000_000
SIZE = 8  # records per batch


# -- the data ------------------------------------------------------------------------------


def event_us(stream: str, seq: int, index: int) -> int:
    """Event times rise from batch to batch, but not monotonically inside one."""
    offset = sum(map(ord, stream)) % 7
    return BASE_US + (seq * 10 + (index * 3) % SIZE + offset) * 1_000_000


def batch_records(stream: str, seq: int) -> list[dict[str, Any]]:
    return [
        {"stream": stream, "seq": seq, "i": i, "t": event_us(stream, seq, i)} for i in range(SIZE)
    ]


def piece(records: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """The records of a split path: halves as encode_to_fit cuts them."""
    lo, hi = 0, len(records)
    for step in path:
        mid = lo + (hi - lo) // 2
        lo, hi = (lo, mid) if step == "0" else (mid, hi)
    return records[lo:hi]


def batch_max(stream: str, seq: int) -> int:
    return max(event_us(stream, seq, i) for i in range(SIZE))


def envelope(seq: int, part: str = "", stream: str = STREAM) -> Envelope:
    records = piece(batch_records(stream, seq), part)
    return Envelope(
        batch_id=f"{stream}-{seq}" + (f".{part}" if part else ""),
        scenario="raw",
        config_version=1,
        records=records,
        position=Position(stream, seq, part),
        max_event_us=max((r["t"] for r in records), default=None),
    )


def message(env: Envelope, *, compress: bool = False) -> Message:
    encoded = encode(env, compress=compress)
    return Message(
        message_id=str(uuid.uuid4()),
        receipt_handle=str(uuid.uuid4()),
        body=encoded.body,
        attributes=dict(encoded.attributes),
    )


def msg(seq: int, part: str = "", stream: str = STREAM) -> Message:
    return message(envelope(seq, part, stream), compress=(seq + len(part)) % 2 == 0)


def redelivered(m: Message) -> Message:
    """The same SQS message received again: same id and body, a new receipt handle."""
    return Message(
        message_id=m.message_id,
        receipt_handle=str(uuid.uuid4()),
        body=m.body,
        attributes=dict(m.attributes),
        receive_count=m.receive_count + 1,
    )


def unsequenced(name: str, t_us: int) -> Message:
    env = Envelope(
        batch_id=name,
        scenario="raw",
        config_version=1,
        records=[{"replay": name, "t": t_us}],
        max_event_us=t_us,
    )
    return message(env)


def name(seq: int, stream: str = STREAM, pieces: Sequence[str] | None = None) -> str:
    """The batch name the sequencer gives the stage (an independent spelling)."""
    base = f"{stream}-b{seq:09d}"
    if pieces is None:
        return base
    return base + "-p" + "_".join(p or "all" for p in pieces)


def random_split(rng: random.Random, path: str = "", depth: int = 3) -> list[str]:
    if len(path) < depth and rng.random() < 0.5:
        return random_split(rng, path + "0", depth) + random_split(rng, path + "1", depth)
    return [path]


# -- the fakes -----------------------------------------------------------------------------


class FakeStage:
    """Records every call; its state (checkpointed) is the list of batches applied."""

    def __init__(self) -> None:
        self.applied: list[list[Any]] = []  # [name, records] per batch: the state
        self.watermark: int | None = None
        self.events: list[tuple[Any, ...]] = []  # every apply and advance, in order
        self.prepared: list[str] = []
        self.restored: list[dict[str, Any] | None] = []
        self.flushes = 0
        self.fail_prepare = False
        self.fail_flush = False
        self.fail_apply: set[str] = set()
        self._prepared: Batch | None = None

    def restore(self, snapshot: dict[str, Any] | None) -> None:
        self.restored.append(snapshot)
        self.applied = [list(a) for a in (snapshot or {}).get("applied", [])]
        self.watermark = (snapshot or {}).get("watermark")

    def snapshot(self) -> dict[str, Any]:
        return {"applied": self.applied, "watermark": self.watermark}

    def prepare(self, batch: Batch) -> None:
        self.prepared.append(batch.name)
        if self.fail_prepare:
            raise StoreError(f"reading for {batch.name} failed: injected")
        self._prepared = batch

    def apply(self, batch: Batch) -> None:
        # the aggregator's contract: apply gets the very batch prepare saw last
        assert self._prepared is batch, f"{batch.name} applied without being prepared"
        self._prepared = None
        if batch.name in self.fail_apply:
            raise RuntimeError(f"cannot apply {batch.name}: injected")
        records = [r for part in batch.parts for r in part.records]
        self.events.append(("apply", batch.name, records))
        self.applied.append([batch.name, records])

    def advance(self, watermark_us: int) -> bool:
        self.events.append(("advance", watermark_us))
        changed = watermark_us != self.watermark
        self.watermark = watermark_us
        return changed

    def flush(self) -> None:
        if self.fail_flush:
            raise StoreError("writing outputs failed: injected")
        self.flushes += 1

    def applies(self) -> list[tuple[str, list[dict[str, Any]]]]:
        return [(e[1], e[2]) for e in self.events if e[0] == "apply"]

    def names(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "apply"]


def checkpoint(store: MemoryObjectStore) -> dict[str, Any] | None:
    stored = store.get(KEY)
    return None if stored is None else read_checkpoint(stored.body)


def included(data: dict[str, Any], position: Position) -> bool:
    """Whether a checkpoint counts a part as applied (read from its JSON, not through
    the code under test)."""
    stream = data["streams"]["streams"].get(position.stream)
    if stream is None or position.seq >= stream["next"]:
        return False
    if not any(lo <= position.seq < hi for lo, hi in stream["holes"]):
        return True
    pieces = stream["hole_parts"].get(str(position.seq), [])
    return any(position.part.startswith(p) for p in pieces)


@dataclass
class Acks:
    """The consumer loop's side; every ack is checked against the stored checkpoint."""

    store: MemoryObjectStore
    acked: list[Message] = field(default_factory=list)
    released: list[Message] = field(default_factory=list)
    retried: list[Message] = field(default_factory=list)

    def ack(self, messages: list[Message]) -> None:
        data = checkpoint(self.store)
        assert data is not None, "acknowledged before any checkpoint was written"
        for m in messages:
            position = m.envelope().position
            if position is not None:
                assert included(data, position), f"{position} acked, not in the checkpoint"
        self.acked.extend(messages)

    def retry(self, messages: list[Message], reason: str) -> None:
        self.retried.extend(messages)

    def release(self, messages: list[Message]) -> None:
        self.released.extend(messages)

    def acked_handles(self) -> list[str]:
        return [m.receipt_handle for m in self.acked]


@dataclass
class Observed:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def taken(self, verdict: str, count: int) -> None:
        self.calls.append(("taken", verdict, count))

    def held(self, count: int) -> None:
        self.calls.append(("held", count))

    def gap_skipped(self, stream: str, batches: int) -> None:
        self.calls.append(("gap_skipped", stream, batches))

    def committed(self, seconds: float, size: int, watermark_us: int | None) -> None:
        self.calls.append(("committed", watermark_us))

    def reset(self, reason: str) -> None:
        self.calls.append(("reset", reason))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    handler: SequencedHandler
    stage: FakeStage
    store: MemoryObjectStore
    acks: Acks
    clock: Clock
    observed: Observed

    def handle(self, *messages: Message) -> list[Any]:
        outcomes = self.handler.handle(list(messages))
        assert len(outcomes) == len(messages)
        return outcomes

    def tick(self, at: float | None = None) -> None:
        if at is not None:
            self.clock.now = at
        self.handler.on_tick()

    def stored(self) -> dict[str, Any]:
        data = checkpoint(self.store)
        assert data is not None
        return data

    def next_stored(self, stream: str = STREAM) -> int:
        return int(self.stored()["streams"]["streams"][stream]["next"])


def rig(
    store: MemoryObjectStore | None = None,
    *,
    clock: Clock | None = None,
    commit_interval_s: float = 0.0,
    max_held: int = 1_000,
    gap_s: float = GAP_S,
    restart_quiet_s: float = 0.0,
) -> Rig:
    store = store if store is not None else MemoryObjectStore("checkpoints")
    clock = clock or Clock()
    stage, acks, observed = FakeStage(), Acks(store), Observed()
    book = StreamBook(
        Timing(grace_us=GRACE_US, idle_s=IDLE_S, idle_lift_us=60_000_000, gap_timeout_s=gap_s)
    )
    handler = SequencedHandler(
        SERVICE,
        stage,
        book,
        store,
        KEY,
        observed,
        SequencerSettings(commit_interval_s=commit_interval_s, max_held=max_held),
        clock=clock,
        restart_quiet_s=restart_quiet_s,
    )
    handler.bind(acks)
    return Rig(handler, stage, store, acks, clock, observed)


def in_order_events(seqs: Iterable[int], stream: str = STREAM) -> list[tuple[Any, ...]]:
    """What a stage must see for whole batches applied one after another (an
    independent computation of the watermark: greatest event time so far - grace)."""
    events: list[tuple[Any, ...]] = []
    done: int | None = None
    for seq in seqs:
        events.append(("apply", name(seq, stream), batch_records(stream, seq)))
        done = max(batch_max(stream, seq), done or 0)
        events.append(("advance", done - GRACE_US))
    return events


# -- order ---------------------------------------------------------------------------------


def test_in_order_whole_batches_are_applied_and_advanced_one_by_one() -> None:
    r = rig()
    for seq in range(4):
        assert r.handle(msg(seq)) == [HOLD]
    assert r.stage.events == in_order_events(range(4))
    assert r.next_stored() == 4


@pytest.mark.parametrize(
    "order",
    [("0", "10", "11"), ("11", "0", "10"), ("10", "11", "0"), ("11", "10", "0")],
    ids="-".join,
)
def test_parts_split_unevenly_are_applied_whole_once_all_are_in(order: tuple[str, ...]) -> None:
    r = rig()
    for index, part in enumerate(order):
        r.handle(msg(0, part))
        if index < len(order) - 1:
            assert r.stage.events == []
            assert r.acks.acked == []
    # the records in the source's row order, whatever order the parts came in
    assert r.stage.events == in_order_events([0])
    assert len(r.acks.acked) == 3


def test_a_later_batch_waits_for_the_earlier_one() -> None:
    r = rig()
    r.handle(msg(2, "1"), msg(2, "0"), msg(1))
    assert r.stage.events == []
    assert r.handler.held_count() == 3
    r.handle(msg(0, "1"))
    assert r.stage.events == []
    r.handle(msg(0, "0"))
    assert r.stage.events == in_order_events(range(3))
    assert r.handler.held_count() == 0


def test_a_batch_split_differently_on_redelivery_is_applied_once_whole() -> None:
    r = rig()
    # first delivery cut it 0 / 10 / 11; a redelivery cut it 00 / 01 / 1
    r.handle(msg(0, "10"), msg(0, "00"), msg(0, "1"))
    assert r.stage.events == []
    r.handle(msg(0, "01"))  # "0" (= 00 + 01) and "1" cover it
    assert r.stage.events == in_order_events([0])
    r.handle(msg(0, "0"), msg(0, "11"))  # more pieces of it: redeliveries
    assert r.stage.names() == [name(0)]
    assert len(r.acks.acked) == 6


@pytest.mark.parametrize("seed", range(40))
def test_the_stage_sees_what_an_in_order_delivery_gives(seed: int) -> None:
    """Random splits, duplicates, redeliveries split differently, shuffled and received
    in random chunks: the stage's apply/advance sequence equals the in-order run's, and
    every message is acknowledged once, after its commit."""
    rng = random.Random(seed)
    seqs = range(7)
    trees = {seq: random_split(rng) for seq in seqs}

    ordered = rig()
    for seq in seqs:
        for part in trees[seq]:
            ordered.handle(msg(seq, part))
    ordered.tick()

    shuffled = rig()
    delivered = [msg(seq, part) for seq in seqs for part in trees[seq]]
    delivered += [redelivered(rng.choice(delivered)) for _ in range(rng.randrange(6))]
    for seq in rng.sample(list(seqs), k=3):  # split differently the second time
        delivered += [msg(seq, part) for part in random_split(rng)]
    rng.shuffle(delivered)
    rest = list(delivered)
    while rest:
        size = rng.randint(1, 10)
        chunk, rest = rest[:size], rest[size:]
        assert shuffled.handle(*chunk) == [HOLD] * len(chunk)
    shuffled.tick()

    expected = [*in_order_events(seqs), ("advance", batch_max(STREAM, 6) - GRACE_US)]
    assert ordered.stage.events == expected
    assert shuffled.stage.events == expected
    assert sorted(shuffled.acks.acked_handles()) == sorted(m.receipt_handle for m in delivered)
    assert shuffled.acks.released == []
    assert shuffled.handler.held_count() == 0
    assert shuffled.stored()["state"] == ordered.stored()["state"]
    assert shuffled.stored()["streams"] == ordered.stored()["streams"]


def test_two_streams_each_keep_their_own_order() -> None:
    r = rig()
    other = "edge-2-tok-g3"
    r.handle(msg(1, stream=other), msg(1), msg(0, "1", stream=other), msg(0, "1"))
    assert r.stage.events == []
    r.handle(msg(0, "0", stream=other))
    assert r.stage.names() == [name(0, other), name(1, other)]
    # a seen stream without progress (STREAM) holds the watermark back
    assert [e for e in r.stage.events if e[0] == "advance"] == []
    r.handle(msg(0, "0"))
    assert r.stage.names() == [name(0, other), name(1, other), name(0), name(1)]
    low = min(batch_max(STREAM, 1), batch_max(other, 1))
    assert r.stage.events[-1] == ("advance", low - GRACE_US)


def test_input_without_a_position_is_applied_on_arrival() -> None:
    r = rig()
    r.handle(unsequenced("replay-1", BASE_US + 50_000_000))
    assert r.stage.names() == ["replay-1"]
    assert r.stage.events[-1] == ("advance", BASE_US + 50_000_000 - GRACE_US)
    r.handle(msg(0))
    assert r.stage.names() == ["replay-1", name(0)]
    # sequenced progress takes over the watermark
    assert r.stage.events[-1] == ("advance", batch_max(STREAM, 0) - GRACE_US)
    assert len(r.acks.acked) == 2


# -- acknowledgement -----------------------------------------------------------------------


def test_messages_are_acked_only_after_a_commit_that_includes_them() -> None:
    r = rig(commit_interval_s=60.0)
    m0 = msg(0)
    r.handle(m0)  # the first call commits (no commit yet)
    assert r.acks.acked == [m0]
    assert r.next_stored() == 1

    r.clock.now = T0 + 1
    m2, m1 = msg(2), msg(1)
    r.handle(m2)
    r.handle(m1)
    assert r.stage.names() == [name(0), name(1), name(2)]
    assert r.acks.acked == [m0]  # applied, not committed yet
    assert r.next_stored() == 1

    m4 = msg(4)  # held for batch 3
    r.handle(m4)
    r.tick(T0 + 61)  # a tick commits what is pending
    assert r.next_stored() == 3
    assert {m.receipt_handle for m in r.acks.acked} == {
        m0.receipt_handle,
        m1.receipt_handle,
        m2.receipt_handle,
    }
    assert r.handler.held_count() == 1

    r.clock.now = T0 + 62
    m3 = msg(3)
    r.handle(m3)  # within the commit interval: applied, not acked
    assert r.stage.names()[-2:] == [name(3), name(4)]
    assert m3 not in r.acks.acked and m4 not in r.acks.acked
    r.clock.now = T0 + 121
    r.handle()
    assert r.next_stored() == 5
    assert m3 in r.acks.acked and m4 in r.acks.acked


def test_shutdown_commits_what_was_applied_and_leaves_held_messages() -> None:
    r = rig(commit_interval_s=3_600.0)
    r.handle(msg(0))
    r.clock.now = T0 + 1
    m1, m3 = msg(1), msg(3)
    r.handle(m1, m3)
    assert m1 not in r.acks.acked
    r.handler.on_shutdown()
    assert m1 in r.acks.acked
    assert m3 not in r.acks.acked
    assert r.next_stored() == 2
    assert r.handler.held_count() == 1


def test_a_redelivery_of_an_applied_part_is_acked_and_not_applied() -> None:
    r = rig()
    first = [msg(0, "0"), msg(0, "1"), msg(1)]
    r.handle(*first)
    assert r.stage.names() == [name(0), name(1)]
    events = list(r.stage.events)
    again = [redelivered(first[1]), msg(0), msg(0, "01"), redelivered(first[2]), msg(1, "1")]
    assert r.handle(*again) == [HOLD] * len(again)
    assert r.stage.events == events  # nothing applied, nothing advanced
    assert {m.receipt_handle for m in r.acks.acked} >= {m.receipt_handle for m in again}
    assert ("taken", "applied", 1) in r.observed.calls


# -- gaps ----------------------------------------------------------------------------------


def test_a_gap_is_given_up_after_the_timeout_and_the_rest_is_a_hole() -> None:
    r = rig()
    r.handle(msg(0), msg(1, "0"), msg(2), msg(3))
    assert r.stage.names() == [name(0)]  # batch 1 misses its half "1"
    r.tick(T0 + GAP_S - 1)
    assert r.stage.names() == [name(0)]
    r.tick(T0 + GAP_S)
    # what arrived of batch 1 is applied on its own, then the batches after it
    assert r.stage.applies()[1:] == [
        (name(1, pieces=["0"]), piece(batch_records(STREAM, 1), "0")),
        (name(2), batch_records(STREAM, 2)),
        (name(3), batch_records(STREAM, 3)),
    ]
    assert r.observed.of("gap_skipped") == [("gap_skipped", STREAM, 1)]
    # quiet since T0 and no longer waiting: the stream is idle, lifted by a window
    assert r.stage.events[-1] == ("advance", batch_max(STREAM, 3) + 60_000_000)
    stream = r.stored()["streams"]["streams"][STREAM]
    assert stream["next"] == 4
    assert stream["holes"] == [[1, 2]]
    assert stream["hole_parts"] == {"1": ["0"]}
    assert r.handler.held_count() == 0

    r.clock.now = T0 + GAP_S + 100
    late = msg(1, "1")
    r.handle(late)  # the missing half, late: applied on its own, at once
    assert r.stage.applies()[-1] == (name(1, pieces=["1"]), piece(batch_records(STREAM, 1), "1"))
    assert late in r.acks.acked
    count = len(r.stage.events)
    r.handle(redelivered(late), msg(1), msg(1, "0"), msg(1, "11"))  # every piece was seen
    assert len(r.stage.events) == count
    assert r.stored()["streams"]["streams"][STREAM]["holes"] == []


def test_a_batch_that_never_came_is_passed_over_and_applied_when_it_does() -> None:
    r = rig()
    r.handle(msg(0), msg(2))
    r.tick(T0 + GAP_S)
    assert r.stage.names() == [name(0), name(2)]  # nothing of batch 1 to apply
    assert r.stored()["streams"]["streams"][STREAM]["holes"] == [[1, 2]]
    r.clock.now = T0 + 2 * GAP_S
    r.handle(msg(1, "1"))
    r.handle(msg(1, "0"))
    r.handle(msg(1, "1"))  # a copy of a piece applied
    assert r.stage.applies()[2:] == [
        (name(1, pieces=["1"]), piece(batch_records(STREAM, 1), "1")),
        (name(1, pieces=["0"]), piece(batch_records(STREAM, 1), "0")),
    ]
    assert r.stored()["streams"]["streams"][STREAM]["holes"] == []


def test_a_whole_hole_is_named_all() -> None:
    r = rig()
    r.handle(msg(0), msg(2))
    r.tick(T0 + GAP_S)
    r.handle(msg(1))
    assert r.stage.applies()[-1] == (name(1, pieces=[""]), batch_records(STREAM, 1))
    assert name(1, pieces=[""]).endswith("-pall")


def test_a_stream_first_seen_late_waits_a_gap_timeout_for_its_earlier_batches() -> None:
    r = rig()
    r.handle(msg(5))
    r.tick(T0 + GAP_S - 1)
    assert r.stage.events == []
    r.tick(T0 + GAP_S)
    assert r.stage.names() == [name(5)]
    assert r.stored()["streams"]["streams"][STREAM]["holes"] == [[0, 5]]
    assert r.observed.of("gap_skipped") == [("gap_skipped", STREAM, 5)]
    r.handle(msg(3))
    assert r.stage.names()[-1] == name(3, pieces=[""])
    assert r.stored()["streams"]["streams"][STREAM]["holes"] == [[0, 3], [4, 5]]


def test_progress_restarts_the_gap_clock() -> None:
    r = rig()
    r.handle(msg(0), msg(2), msg(4))  # 1 and 3 missing
    r.clock.now = T0 + 300
    r.handle(msg(1))  # 1 arrives: 1 and 2 are applied; 4 still waits, for 3
    assert r.stage.names() == [name(0), name(1), name(2)]
    r.tick(T0 + GAP_S)
    assert r.stage.names() == [name(0), name(1), name(2)]
    r.tick(T0 + 300 + GAP_S - 1)
    assert r.stage.names() == [name(0), name(1), name(2)]
    r.tick(T0 + 300 + GAP_S)
    assert r.stage.names() == [name(0), name(1), name(2), name(4)]


def test_after_giving_up_a_stream_waits_for_nothing_and_can_go_idle() -> None:
    r = rig()
    r.handle(msg(0), msg(2, "0"))  # 1 missing, 2 incomplete
    r.tick(T0 + GAP_S)
    assert r.stage.names() == [name(0), name(2, pieces=["0"])]
    done = max(r["t"] for r in piece(batch_records(STREAM, 2), "0"))
    # quiet since T0 and waiting for nothing now: lifted by a window at once
    assert r.stage.events[-1] == ("advance", done + 60_000_000)
    assert r.handler.book.overdue(T0 + 10 * GAP_S) == []


def test_holding_more_than_max_held_gives_the_gap_up_early() -> None:
    r = rig(max_held=3)
    for seq in (1, 2, 3):
        r.handle(msg(seq))
    assert r.stage.events == []
    assert r.handler.held_count() == 3
    r.handle(msg(4))  # a fourth held message: over the limit, long before the timeout
    assert r.stage.names() == [name(1), name(2), name(3), name(4)]
    assert r.observed.of("gap_skipped") == [("gap_skipped", STREAM, 1)]
    assert r.stored()["streams"]["streams"][STREAM]["holes"] == [[0, 1]]
    r.handle(msg(5))
    assert r.stage.names()[-1] == name(5)
    assert r.handler.held_count() == 0


def test_a_tick_commits_only_what_changed_or_once_a_day() -> None:
    r = rig()
    r.handle(msg(0))
    assert r.stored()["state"]["watermark"] == batch_max(STREAM, 0) - GRACE_US
    puts = r.store.puts
    r.tick(T0 + 1)  # nothing new: no write
    assert r.store.puts == puts
    r.tick(T0 + IDLE_S)  # the quiet stream is lifted: the stage changed, committed
    assert r.store.puts == puts + 1
    assert r.stored()["state"]["watermark"] == batch_max(STREAM, 0) + 60_000_000
    r.tick(T0 + IDLE_S + 3_600)
    assert r.store.puts == puts + 1
    r.tick(T0 + IDLE_S + 86_400)  # a quiet shard still rewrites it daily
    assert r.store.puts == puts + 2


# -- restarts --------------------------------------------------------------------------------


def test_a_restart_resumes_from_the_checkpoint() -> None:
    store, clock = MemoryObjectStore("checkpoints"), Clock()
    first = rig(store, clock=clock, commit_interval_s=60.0)
    m0, m1, m3 = msg(0), msg(1), msg(3)
    first.handle(m0)  # committed
    clock.now = T0 + 1
    first.handle(m1, m3)  # 1 applied, not committed; 3 held
    assert first.stage.names() == [name(0), name(1)]
    # killed: no shutdown. What was not acked comes back, to a new process.
    assert first.acks.acked == [m0]

    clock.now = T0 + 100
    second = rig(store, clock=clock, commit_interval_s=60.0)
    assert second.stage.restored[-1] == {
        "applied": [[name(0), batch_records(STREAM, 0)]],
        "watermark": batch_max(STREAM, 0) - GRACE_US,
    }
    assert second.handler.book.next_of(STREAM) == 1
    second.handle(redelivered(m3), redelivered(m1), msg(0), msg(2))
    assert second.stage.names() == [name(1), name(2), name(3)]  # 0 not again
    second.tick()
    state = second.stored()["state"]
    assert [a[0] for a in state["applied"]] == [name(s) for s in range(4)]
    assert second.next_stored() == 4


def test_a_restart_after_shutdown_redoes_nothing() -> None:
    store = MemoryObjectStore("checkpoints")
    first = rig(store, commit_interval_s=60.0)
    m0, m1 = msg(0, "0"), msg(0, "1")
    first.handle(m0, m1)
    first.handle(msg(1))
    first.handler.on_shutdown()
    second = rig(store, commit_interval_s=60.0)
    second.handle(redelivered(m1), msg(1), msg(2))
    assert second.stage.names() == [name(2)]


def test_a_restart_keeps_holes_and_what_was_applied_of_them() -> None:
    store, clock = MemoryObjectStore("checkpoints"), Clock()
    first = rig(store, clock=clock)
    first.handle(msg(0), msg(1, "1"), msg(2))
    first.tick(T0 + GAP_S)
    assert first.stage.names() == [name(0), name(1, pieces=["1"]), name(2)]
    second = rig(store, clock=clock)
    second.handle(msg(1, "1"), msg(1, "10"), msg(2, "0"))
    assert second.stage.events == []
    second.handle(msg(1, "0"))
    assert second.stage.names() == [name(1, pieces=["0"])]


def test_restart_quiet_time_keeps_streams_from_idling() -> None:
    clock = Clock()
    store = MemoryObjectStore("checkpoints")
    first = rig(store, clock=clock)
    first.handle(msg(0))
    clock.now = T0 + 1_000
    second = rig(store, clock=clock, restart_quiet_s=60.0)
    second.tick(T0 + 1_000 + IDLE_S)  # quiet for idle_s, but within the quiet time
    assert second.stage.events == [("advance", batch_max(STREAM, 0) - GRACE_US)]
    second.tick(T0 + 1_000 + 60)
    assert second.stage.events[-1] == ("advance", batch_max(STREAM, 0) + 60_000_000)


# -- resets ----------------------------------------------------------------------------------


def test_a_conflicting_checkpoint_write_resets_to_the_other_writers_state() -> None:
    store, clock = MemoryObjectStore("checkpoints"), Clock()
    a = rig(store, clock=clock, commit_interval_s=3_600.0)
    a.handle(msg(0))  # a's first commit
    b = rig(store, clock=clock, commit_interval_s=0.0)  # a second process on the shard
    b.handle(msg(1))
    assert b.next_stored() == 2

    mine, held = msg(1), msg(3)
    clock.now = T0 + 10
    a.handle(mine, held)  # a applies its own copy of 1, holds 3: not committed
    assert a.stage.names() == [name(0), name(1)]
    assert a.handler.commit() is False  # b wrote the checkpoint meanwhile
    assert {m.receipt_handle for m in a.acks.released} == {mine.receipt_handle, held.receipt_handle}
    assert mine not in a.acks.acked and held not in a.acks.acked
    assert len(a.observed.of("reset")) == 1
    # state re-read: b's progress and b's stage state
    assert a.handler.book.next_of(STREAM) == 2
    assert a.stage.applied == [
        [name(0), batch_records(STREAM, 0)],
        [name(1), batch_records(STREAM, 1)],
    ]
    assert a.handler.held_count() == 0

    # what a handed back comes again; its next commit is over b's checkpoint
    a.handle(redelivered(mine), redelivered(held), msg(2))
    assert a.stage.names()[-2:] == [name(2), name(3)]
    assert a.handler.commit() is True
    assert a.next_stored() == 4


def test_a_checkpoint_created_by_another_writer_first_resets_too() -> None:
    store = MemoryObjectStore("checkpoints")
    a = rig(store, commit_interval_s=3_600.0)
    b = rig(store)
    b.handle(msg(0))  # b writes the first checkpoint; a expected none
    m = msg(0)
    a.handle(m)  # a's first commit: refused, a resets
    assert a.acks.acked == []
    assert a.acks.released == [m]
    assert len(a.observed.of("reset")) == 1
    assert a.stage.applied == [[name(0), batch_records(STREAM, 0)]]
    assert a.handler.book.next_of(STREAM) == 1


def test_a_batch_that_fails_to_apply_is_retried_and_the_rest_handed_back() -> None:
    r = rig(commit_interval_s=3_600.0)
    r.handle(msg(0))
    r.stage.fail_apply = {name(1)}
    m1, m2, m4 = msg(1), msg(2), msg(4)
    r.handle(m1, m2, m4)
    # the culprit goes through the consumer's retry ladder (which dead-letters it with
    # the reason at the queue's maxReceiveCount); the others come back at once
    assert r.acks.retried == [m1]
    assert {m.receipt_handle for m in r.acks.released} == {m2.receipt_handle, m4.receipt_handle}
    assert r.stage.applied == [[name(0), batch_records(STREAM, 0)]]
    assert r.handler.held_count() == 0
    r.stage.fail_apply = set()
    r.handle(redelivered(m2), redelivered(m1))
    assert r.stage.names()[-2:] == [name(1), name(2)]


# -- failing I/O -----------------------------------------------------------------------------


def test_a_failing_prepare_keeps_the_batch_first_in_line() -> None:
    r = rig()
    r.stage.fail_prepare = True
    m0, m1 = msg(0), msg(1)
    assert r.handle(m0, m1) == [HOLD, HOLD]
    assert r.stage.events == []
    assert r.stage.prepared == [name(0)]  # batch 1 is not tried before batch 0
    r.tick(T0 + 1)
    assert r.stage.prepared == [name(0), name(0)]
    assert r.stage.events == []
    assert r.acks.acked == []
    assert r.handler.held_count() == 2

    r.stage.fail_prepare = False
    r.tick(T0 + 2)
    # the tick's own advance comes last
    wm = batch_max(STREAM, 1) - GRACE_US
    assert r.stage.events == [*in_order_events([0, 1]), ("advance", wm)]
    assert {m.receipt_handle for m in r.acks.acked} == {m0.receipt_handle, m1.receipt_handle}


def test_a_hole_waits_behind_a_batch_whose_prepare_fails() -> None:
    r = rig()
    r.handle(msg(0), msg(2))
    r.tick(T0 + GAP_S)  # 1 passed over
    r.stage.fail_prepare = True
    r.handle(msg(3), msg(1))
    assert r.stage.names() == [name(0), name(2)]
    r.stage.fail_prepare = False
    r.tick()
    assert r.stage.names() == [name(0), name(2), name(3), name(1, pieces=[""])]


def test_a_piece_joining_a_given_up_batch_while_prepare_fails_is_applied() -> None:
    r = rig()
    r.handle(msg(0), msg(1, "0"), msg(2))
    r.stage.fail_prepare = True
    r.tick(T0 + GAP_S)  # batch 1 is given up with its half "0"; preparing it fails
    assert r.stage.names() == [name(0)]
    r.clock.now = T0 + GAP_S + 1
    r.handle(msg(1, "1"))  # the other half arrives before it could be applied
    r.stage.fail_prepare = False
    r.tick()
    ones = [records for batch, records in r.stage.applies() if batch.startswith(name(1))]
    assert [rec for records in ones for rec in records] == batch_records(STREAM, 1)
    r.handle(msg(1, "1"), msg(1))  # copies: every piece was applied
    assert [rec for batch, recs in r.stage.applies() for rec in recs if rec["seq"] == 1] == (
        batch_records(STREAM, 1)
    )


def test_a_coarser_piece_joining_a_given_up_batch_replaces_the_finer_one() -> None:
    r = rig()
    r.handle(msg(0), msg(1, "10"), msg(2))
    r.stage.fail_prepare = True
    r.tick(T0 + GAP_S)  # 1 given up with its quarter "10"; stuck
    r.clock.now = T0 + GAP_S + 1
    r.handle(msg(1, "1"), msg(1, "0"))  # its halves, cut differently
    r.stage.fail_prepare = False
    r.tick()
    assert r.stage.applies()[1] == (name(1, pieces=["0", "1"]), batch_records(STREAM, 1))
    assert r.stage.names()[2:] == [name(2)]


def test_a_reset_hands_back_what_waits_in_the_ready_line() -> None:
    store = MemoryObjectStore("checkpoints")
    a = rig(store, commit_interval_s=3_600.0)
    a.handle(msg(0))
    rig(store).handle(msg(1))  # another writer
    a.stage.fail_prepare = True
    stuck, behind = msg(1), unsequenced("replay-9", BASE_US)
    a.handle(stuck, behind)  # both wait in the ready line
    assert a.stage.names() == [name(0)]
    assert a.handler.commit() is False
    assert {m.receipt_handle for m in a.acks.released} == {
        stuck.receipt_handle,
        behind.receipt_handle,
    }
    assert a.handler.held_count() == 0


def test_giving_up_again_while_prepare_fails_loses_no_piece() -> None:
    r = rig(max_held=2)
    r.handle(msg(0), msg(1, "0"))
    r.stage.fail_prepare = True
    r.handle(msg(2), msg(3))  # over the limit: 1 given up with its half "0"; stuck
    r.handle(msg(5))  # held for 4: over the limit again, while 1 is still in line
    r.handle(msg(1, "1"))  # the other half of 1
    r.handle(msg(4))
    r.stage.fail_prepare = False
    r.tick()
    r.tick()
    applied = [rec for _, recs in r.stage.applies() for rec in recs]
    expected = [rec for seq in range(6) for rec in batch_records(STREAM, seq)]
    assert sorted(applied, key=lambda x: (x["seq"], x["i"])) == expected
    assert len(applied) == len(expected)
    assert r.handler.held_count() == 0


def test_a_failing_flush_fails_the_commit_and_keeps_messages_unacked() -> None:
    r = rig()
    r.stage.fail_flush = True
    m0 = msg(0)
    r.handle(m0)
    assert r.stage.names() == [name(0)]
    assert r.store.get(KEY) is None  # outputs first: no checkpoint without them
    assert r.acks.acked == []
    assert r.handler.commit() is False
    r.tick(T0 + 5)
    assert r.acks.acked == []
    assert r.acks.released == []
    r.stage.fail_flush = False
    assert r.handler.commit() is True
    assert r.acks.acked == [m0]
    assert r.next_stored() == 1


class FlakyStore(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__("checkpoints")
        self.failing = False

    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        if self.failing:
            raise StoreError(f"writing {self.uri(key)} failed: injected")
        return super().put(key, body, **kwargs)


def test_a_failing_checkpoint_write_is_retried_without_a_reset() -> None:
    store = FlakyStore()
    r = rig(store)
    r.handle(msg(0))
    store.failing = True
    m1 = msg(1)
    r.handle(m1)
    assert r.handler.commit() is False
    assert m1 not in r.acks.acked
    assert r.acks.released == []
    assert r.observed.of("reset") == []
    store.failing = False
    assert r.handler.commit() is True
    assert m1 in r.acks.acked


def test_a_checkpoint_that_is_not_one_refuses_to_start() -> None:
    store = MemoryObjectStore("checkpoints")
    store.put(KEY, b'{"version": 99}', expect=Expect.ANY)
    with pytest.raises(StoreError, match="is not a fake checkpoint"):
        rig(store)


# -- poison ----------------------------------------------------------------------------------


def test_poison_bodies_are_rejected_and_the_rest_taken() -> None:
    r = rig()
    good = msg(0)
    garbled = Message("m1", "h1", "not json at all", {})
    not_envelope = Message("m2", "h2", '{"v": 1, "records": "nope"}', {})
    bad_gzip = Message("m3", "h3", "%%%", {"content-encoding": "gzip"})
    bad_position = message(envelope(0))
    bad_position.body = bad_position.body.replace('"seq":0', '"seq":-1')
    outcomes = r.handle(garbled, good, not_envelope, bad_gzip, bad_position)
    assert [type(o) for o in outcomes] == [Reject, type(HOLD), Reject, Reject, Reject]
    assert all(
        o.reason.startswith("not a batch envelope") for o in outcomes if isinstance(o, Reject)
    )
    assert r.stage.names() == [name(0)]
    assert r.acks.acked == [good]


def test_a_body_its_attributes_contradict_is_rejected_naming_both() -> None:
    r = rig()
    liar = msg(0)
    liar.attributes["scenario"] = "notification"  # the body says "raw"
    (outcome,) = r.handle(liar)
    assert isinstance(outcome, Reject)
    assert "body says scenario 'raw', attributes say 'notification'" in outcome.reason
    assert r.stage.names() == []


def test_a_message_that_raises_while_taken_in_is_rejected_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = rig()
    real = r.handler.book.classify

    def classify(position: Position, now: float) -> Any:
        if position.seq == 1:
            raise KeyError("injected bug")
        return real(position, now)

    monkeypatch.setattr(r.handler.book, "classify", classify)
    first, culprit = msg(0), msg(1)
    outcomes = r.handle(first, culprit)
    assert outcomes[0] is HOLD
    assert isinstance(outcomes[1], Reject)
    assert outcomes[1].reason == "handler error: KeyError: 'injected bug'"
    assert r.stage.names() == [name(0)]
    assert r.acks.acked == [first]  # the culprit is neither held nor acknowledged


def test_a_bug_after_taking_messages_in_resets_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = rig()
    r.handle(msg(0))

    def broken_snapshot() -> dict[str, Any]:
        raise TypeError("injected bug in snapshot")

    monkeypatch.setattr(r.stage, "snapshot", broken_snapshot)
    later = msg(1)
    outcomes = r.handle(later)  # does not raise
    assert outcomes == [HOLD]
    assert later in r.acks.released  # handed back by the reset, nothing lost
    assert any("injected bug in snapshot" in c[1] for c in r.observed.of("reset"))


def test_the_prometheus_observer_counts_what_the_sequencer_does() -> None:
    service = f"seq-{uuid.uuid4().hex[:8]}"  # fresh label values: counters start at 0

    def value(metric: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(f"sensorpipe_{metric}", {"service": service, **labels})

    store = MemoryObjectStore("checkpoints")
    book = StreamBook(
        Timing(grace_us=GRACE_US, idle_s=IDLE_S, idle_lift_us=60_000_000, gap_timeout_s=GAP_S)
    )
    clock = Clock()
    handler = SequencedHandler(
        service,
        FakeStage(),
        book,
        store,
        KEY,
        PrometheusObserver(service),
        SequencerSettings(commit_interval_s=0.0, max_held=100),
        clock=clock,
    )
    handler.bind(Acks(store))
    handler.handle([msg(0), msg(2)])
    handler.handle([msg(0, "1")])  # a piece of a batch applied: a redelivery
    assert value("sequencer_parts_total", verdict="collect") == 2
    assert value("sequencer_parts_total", verdict="applied") == 1
    assert value("sequencer_held_parts") == 1
    assert value("watermark_timestamp_seconds") == (batch_max(STREAM, 0) - GRACE_US) / 1e6
    stored = store.get(KEY)
    assert stored is not None
    assert value("checkpoint_bytes") == len(stored.body)
    clock.now = T0 + GAP_S
    handler.on_tick()
    assert value("sequencer_batches_skipped_total") == 1
    assert value("sequencer_held_parts") == 0
    handler.handle([msg(1)])
    assert value("sequencer_parts_total", verdict="hole") == 1
    store.put(KEY, stored.body)  # another writer
    handler.handle([msg(3)])
    assert value("sequencer_resets_total") == 1


# -- chaos -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_every_record_is_applied_exactly_once_through_chaos(seed: int) -> None:
    """Shuffled parts (one splitting per batch), copies, gaps given up, failing prepares,
    hold limits and crashes: in the end the checkpointed state holds every record of
    every batch exactly once, and every message was acknowledged."""
    rng = random.Random(seed)
    streams = ["edge-a-t-g0", "edge-b-t-g1"]
    seqs = range(8)
    store, clock = MemoryObjectStore("checkpoints"), Clock()
    interval, max_held = rng.choice([0.0, 5.0, 50.0]), rng.randint(3, 40)

    def start() -> Rig:
        return rig(store, clock=clock, commit_interval_s=interval, max_held=max_held)

    current = start()
    pending = [msg(seq, part, s) for s in streams for seq in seqs for part in random_split(rng)]
    pending += [unsequenced(f"replay-{i}", BASE_US + i) for i in range(3)]
    rng.shuffle(pending)
    out: dict[str, Message] = {}  # received and not acknowledged: by receipt handle
    acked: set[str] = set()

    def deliver(messages: list[Message]) -> None:
        for m in messages:
            out[m.receipt_handle] = m
        current.handle(*messages)

    while pending:
        step = rng.random()
        if step < 0.6:
            k = rng.randint(1, 4)
            deliver(pending[:k])
            pending = pending[k:]
        elif step < 0.7 and out:
            # a copy (a message without a position has no identity: never copied)
            copies = [m for m in out.values() if m.envelope().position is not None]
            if copies:
                deliver([redelivered(rng.choice(copies))])
        elif step < 0.8:
            current.stage.fail_prepare = rng.random() < 0.5
        elif step < 0.9:
            current.tick(clock.now + rng.choice([1.0, 60.0, 300.0, GAP_S]))
        else:  # kill -9: what is not acked comes back later, to a new process
            acked |= set(current.acks.acked_handles())
            assert current.acks.released == []
            back = [redelivered(m) for h, m in out.items() if h not in acked]
            out.clear()
            current = start()
            pending += back
            rng.shuffle(pending)
        acked |= set(current.acks.acked_handles())
        clock.now += rng.random()

    current.stage.fail_prepare = False
    current.tick(clock.now + GAP_S)
    current.tick(clock.now + 1)
    current.handler.on_shutdown()
    assert current.acks.released == []
    acked |= set(current.acks.acked_handles())

    assert current.handler.held_count() == 0
    assert set(out) <= acked  # every message still out was acknowledged
    state = current.stored()["state"]
    applied = [rec for _, records in state["applied"] for rec in records]
    expected = [rec for s in streams for seq in seqs for rec in batch_records(s, seq)]
    expected += [{"replay": f"replay-{i}", "t": BASE_US + i} for i in range(3)]

    def key(rec: dict[str, Any]) -> tuple[Any, ...]:
        return (rec.get("stream", ""), rec.get("seq", -1), rec.get("i", -1), rec.get("replay", ""))

    assert sorted(applied, key=key) == sorted(expected, key=key)
    # each stream's batches in source order (a hole's pieces may come later)
    for s in streams:
        firsts = [
            int(batch[len(s) + 2 : len(s) + 11])
            for batch, _ in state["applied"]
            if batch.startswith(s) and "-p" not in batch
        ]
        assert firsts == sorted(firsts)


@pytest.mark.parametrize("seed", range(20))
def test_two_consumers_of_one_shard_lose_and_double_nothing(seed: int) -> None:
    """Against the deployment rule, two processes consume one shard queue: each takes
    a random share of the messages; conditional checkpoint writes make the loser reset
    and hand its messages back. The checkpoint chain stays linear: in the end it holds
    every record exactly once."""
    rng = random.Random(10_000 + seed)
    streams = ["edge-a-t-g0", "edge-b-t-g1"]
    seqs = range(6)
    store, clock = MemoryObjectStore("checkpoints"), Clock()
    interval = rng.choice([0.0, 5.0])
    consumers = [rig(store, clock=clock, commit_interval_s=interval) for _ in range(2)]
    pending = [msg(seq, part, s) for s in streams for seq in seqs for part in random_split(rng)]
    rng.shuffle(pending)
    out: list[dict[str, Message]] = [{}, {}]  # in flight, per consumer

    def settle(i: int) -> None:
        acks = consumers[i].acks
        for m in acks.acked:
            out[i].pop(m.receipt_handle, None)
        for m in acks.released:  # handed back: received again, by either consumer
            if out[i].pop(m.receipt_handle, None) is not None:
                pending.append(redelivered(m))
        acks.acked.clear()
        acks.released.clear()

    def deliver(i: int, messages: list[Message]) -> None:
        for m in messages:
            out[i][m.receipt_handle] = m
        consumers[i].handle(*messages)
        settle(i)

    while pending:
        i = rng.randrange(2)
        if rng.random() < 0.75:
            k = rng.randint(1, 3)
            chunk, pending[:k] = pending[:k], []
            deliver(i, chunk)
        else:
            consumers[i].tick(clock.now + rng.choice([1.0, 10.0, GAP_S]))
            settle(i)
        clock.now += rng.random()

    # the second process stops: it commits what it can; what it holds goes back
    consumers[1].handler.on_shutdown()
    settle(1)
    pending += [redelivered(m) for m in out[1].values()]
    out[1].clear()
    for _ in range(20):
        if pending:
            chunk, pending[:] = list(pending), []
            deliver(0, chunk)
        consumers[0].tick(clock.now + GAP_S)
        settle(0)
        if not pending and not out[0]:
            break
    assert not pending and not out[0], "messages were never settled"

    state = consumers[0].stored()["state"]
    applied = sorted((r["stream"], r["seq"], r["i"]) for _, recs in state["applied"] for r in recs)
    expected = sorted((s, seq, i) for s in streams for seq in seqs for i in range(SIZE))
    assert applied == expected
