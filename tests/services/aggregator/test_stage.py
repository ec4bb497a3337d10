"""The aggregator handler (stage run by the sequencer) over in-memory stores, driven the
way the consumer loop drives it: windows equal the independent computation, whatever
the delivery order, splitting, sharding or restarts; revisions and late output follow
the definition in docs/WINDOWS.md."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope, Position
from sensorpipe.objects import read_jsonl
from sensorpipe.runtime import Message
from sensorpipe.stateful import SequencedHandler
from sensorpipe.store import MemoryObjectStore
from services.aggregator.config import AggregatorSettings
from services.aggregator.handler import build_handler
from tests.moto_stack import message_of
from tests.sensorpipe.stateful.acks import RecordingAcks as Acks
from tests.services.aggregator.dataset import (
    STREAM,
    Expected,
    Stream,
    expected_windows,
    instant_us,
    iso,
    make_rows,
    make_stream,
    window_problems,
)
from tests.window_pages import documents_of, is_page, page_documents

GRACE_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Shard:
    handler: SequencedHandler
    aggregated: MemoryObjectStore
    errors: MemoryObjectStore
    clock: Clock
    acks: Acks

    def feed(self, messages: Iterable[Message], per_receive: int = 10) -> None:
        batch: list[Message] = []
        for message in messages:
            batch.append(message)
            if len(batch) == per_receive:
                self._receive(batch)
                batch = []
        if batch:
            self._receive(batch)

    def _receive(self, batch: list[Message]) -> None:
        outcomes = self.handler.handle(batch)
        assert all(type(o).__name__ == "Hold" for o in outcomes), outcomes
        self.clock.now += 0.05
        self.handler.on_tick()

    def finish(self) -> None:
        """Let every source go idle: the last windows close and are written."""
        for _ in range(3):
            self.clock.now += 1_000
            self.handler.on_tick()

    def windows(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {
            (sensor, instant_us(start) // 1_000_000): doc
            for (sensor, start), doc in page_documents(self.bodies()).items()
        }

    def bodies(self) -> dict[str, bytes]:
        return {k: v.body for k, v in self.aggregated.objects.items() if is_page(k)}

    def late_lines(self) -> list[dict[str, Any]]:
        return self.side_lines("late/")

    def unusable_lines(self) -> list[dict[str, Any]]:
        return self.side_lines("unusable/")

    def side_lines(self, prefix: str) -> list[dict[str, Any]]:
        return [
            line
            for key, stored in sorted(self.errors.objects.items())
            if key.startswith(prefix)
            for line in read_jsonl(stored.body)
        ]


def config(**windowing: Any) -> PipelineConfig:
    return PipelineConfig(
        windowing={"grace_seconds": GRACE_S, "idle_flush_seconds": 30, **windowing},
        queues={"visibility_timeout_seconds": 5},
    )


def shard(
    cfg: PipelineConfig | None = None,
    *,
    stores: tuple[MemoryObjectStore, MemoryObjectStore] | None = None,
    index: int = 0,
    **settings: Any,
) -> Shard:
    aggregated, errors = stores or (MemoryObjectStore("aggregated"), MemoryObjectStore("error"))
    clock = Clock()
    handler = build_handler(
        cfg or config(),
        aggregated,
        errors,
        AggregatorSettings(**settings),
        shard=index,
        clock=clock,
    )
    acks = Acks()
    handler.bind(acks)
    return Shard(handler, aggregated, errors, clock, acks)


def messages(envelopes: list[Envelope]) -> list[Message]:
    return [message_of(e) for e in envelopes]


@pytest.fixture(scope="module")
def stream() -> Stream:
    rows = make_rows(sensors=10, per_sensor=1200, interval_s=0.5, seed=7)
    return make_stream(rows, late_by_s=120, duplicate_spread_s=60, batch_size=250)


@pytest.fixture(scope="module")
def expected(stream: Stream) -> Expected:
    return expected_windows(stream, grace_s=GRACE_S, allowed_s=7 * 86_400)


@pytest.fixture(scope="module")
def in_order(stream: Stream) -> Shard:
    one = shard()
    one.feed(messages(stream.envelopes()[0]))
    one.finish()
    return one


def test_in_order_windows_equal_the_independent_computation(
    in_order: Shard, stream: Stream, expected: Expected
) -> None:
    problems = window_problems(in_order.windows(), expected.windows)
    assert not problems, problems[:10]
    # The rows the source wrote two minutes late are in their windows, by revisions.
    assert stream.late_keys
    assert any(doc["revision"] > 0 for doc in in_order.windows().values())
    assert not in_order.late_lines()
    assert not in_order.handler.held_count()
    assert len(in_order.acks.acked) == len(stream.chunks())


@pytest.mark.parametrize("order", ["reversed", "shuffled", "interleaved parts"])
def test_any_delivery_order_gives_byte_identical_documents(
    order: str, in_order: Shard, stream: Stream
) -> None:
    split = order == "interleaved parts"
    envelopes = stream.envelopes(split=split)[0]
    if order == "reversed":
        envelopes.reverse()
    elif order == "shuffled":
        random.Random(11).shuffle(envelopes)
    else:  # the second halves of the batches first, then the first halves
        envelopes = [e for e in envelopes if e.position and e.position.part == "1"] + [
            e for e in envelopes if e.position and e.position.part == "0"
        ]
    other = shard()
    other.feed(messages(envelopes), per_receive=7)
    other.finish()
    assert other.bodies() == in_order.bodies()
    assert not other.handler.held_count()


def test_redeliveries_change_nothing(in_order: Shard, stream: Stream) -> None:
    envelopes = stream.envelopes()[0]
    again = [*envelopes[:5], *envelopes[:12], *envelopes[5:], *envelopes[30:40]]
    other = shard()
    other.feed(messages(again))
    other.finish()
    assert other.bodies() == in_order.bodies()
    assert len(other.acks.acked) == len(again)  # every copy acknowledged


def test_three_shards_write_the_same_documents_as_one(in_order: Shard, stream: Stream) -> None:
    bodies: dict[str, bytes] = {}
    for index, envelopes in enumerate(stream.envelopes(3)):
        part = shard(index=index)
        part.feed(messages(envelopes))
        part.finish()
        assert not set(bodies) & set(part.bodies())  # two shards never share a page
        assert all(key.endswith(f"/shard-{index}.jsonl.gz") for key in part.bodies())
        bodies.update(part.bodies())
    assert page_documents(bodies) == page_documents(in_order.bodies())


def test_a_restart_resumes_from_the_checkpoint(in_order: Shard, stream: Stream) -> None:
    envelopes = messages(stream.envelopes()[0])
    first = shard()
    first.feed(envelopes[:20])
    acked = {m.receipt_handle for m in first.acks.acked}
    assert acked  # committed, so acknowledged
    first.feed(envelopes[20:23], per_receive=3)  # applied, maybe not committed: "crash"
    redelivered = [m for m in envelopes[:23] if m.receipt_handle not in acked]
    second = shard(stores=(first.aggregated, first.errors))
    assert len(second.handler.book.streams) == 1
    second.feed([*redelivered, *envelopes[23:]])
    second.finish()
    assert second.bodies() == in_order.bodies()


def test_readings_beyond_the_allowed_lateness_go_to_the_late_output(stream: Stream) -> None:
    expected = expected_windows(stream, grace_s=GRACE_S, allowed_s=60)
    # Rows written 2-3 minutes late, 60 s allowed: most of them are too late.
    assert len(expected.late) > len(stream.late_keys) / 2
    assert expected.late <= stream.late_keys
    one = shard(config(allowed_lateness_seconds=60))
    one.feed(messages(stream.envelopes()[0]))
    one.finish()
    problems = window_problems(one.windows(), expected.windows)
    assert not problems, problems[:10]
    late = one.late_lines()
    assert {line["reading_key"] for line in late} == expected.late
    assert all(line["reason"] == "beyond_allowed_lateness" for line in late)
    assert all("allowed lateness (60 s)" in line["detail"] for line in late)
    assert all(line["record"]["sensor_id"] and line["batch_id"] for line in late)


def test_a_revision_after_a_restart_reads_the_written_window_back() -> None:
    """A reading of a window written before a restart: the document is read back from
    the bucket, the reading merged in, and the window rewritten as revision 1."""
    rows = make_rows(sensors=1, per_sensor=600, interval_s=1.0, seed=3)
    batches = [[{"sensor_data": r} for r in rows[i : i + 100]] for i in range(0, 600, 100)]
    straggler = dict(rows[5], id=9999, timestamp=iso(instant_us(rows[5]["timestamp"]) / 1e6 + 0.5))
    batches.append([{"sensor_data": straggler}])
    envelopes = [
        Envelope(
            f"b{i}",
            "aggregated",
            1,
            b,
            position=Position(STREAM, i),
            max_event_us=max(instant_us(r["sensor_data"]["timestamp"]) for r in b),
        )
        for i, b in enumerate(batches)
    ]
    first = shard()
    first.feed(messages(envelopes[:-1]))
    before = first.windows()
    minute0 = min(before)
    assert before[minute0]["revision"] == 0 and before[minute0]["record_count"] == 60
    second = shard(stores=(first.aggregated, first.errors))  # nothing in memory
    second.feed(messages(envelopes[-1:]))
    second.finish()
    after = second.windows()[minute0]
    assert after["revision"] == 1
    assert after["record_count"] == 61
    straggler_offset = instant_us(straggler["timestamp"]) - minute0[1] * 1_000_000
    assert straggler_offset in after["reading_offsets_us"]
    assert after["metrics"]["temperature"]["count"] == before[minute0]["metrics"]["temperature"][
        "count"
    ] + (straggler.get("temperature") is not None)


def test_spellings_of_one_instant_are_one_reading() -> None:
    row = make_rows(sensors=1, per_sensor=1, seed=5)[0]
    stamp = row["timestamp"]  # ...+00:00
    spellings = [stamp, stamp.replace("+00:00", "Z"), stamp[:-6] + "000+00:00"]
    records = [{"sensor_data": dict(row, timestamp=s)} for s in spellings]
    envelope = Envelope(
        "b0",
        "aggregated",
        1,
        records,
        position=Position(STREAM, 0),
        max_event_us=instant_us(stamp),
    )
    one = shard()
    one.feed([message_of(envelope)])
    one.finish()
    (doc,) = one.windows().values()
    assert doc["record_count"] == 1
    # The instant, spelt one way: UTC, microseconds, Z.
    assert doc["first_reading_at"] == doc["last_reading_at"] == stamp[:23] + "000Z"


def test_records_that_cannot_be_windowed_go_to_the_unusable_output_with_the_reason() -> None:
    row = make_rows(sensors=1, per_sensor=1, seed=5)[0]
    bad = [
        {"sensor_data": dict(row, timestamp="yesterday")},
        {"sensor_data": dict(row, timestamp=None)},
        {"sensor_data": {k: v for k, v in row.items() if k != "sensor_id"}},
        {"quality": {"anomalous": True}},
    ]
    envelope = Envelope(
        "b0",
        "aggregated",
        1,
        [{"sensor_data": row}, *bad],
        position=Position(STREAM, 0),
        max_event_us=instant_us(row["timestamp"]),
    )
    one = shard()
    one.feed([message_of(envelope)])
    one.finish()
    assert not one.late_lines()
    unusable = one.unusable_lines()
    assert [line["reason"] for line in unusable] == [
        "no_event_time",
        "no_event_time",
        "no_sensor_id",
        "no_sensor_data",
    ]
    details = " ".join(line["detail"] for line in unusable)
    assert "'yesterday'" in details and "sensor_id" in details and "sensor_data" in details
    assert [line["record"] for line in unusable[:3]] == [r["sensor_data"] for r in bad[:3]]
    assert all(line["batch_id"] == "b0" for line in unusable)
    assert sum(doc["record_count"] for doc in one.windows().values()) == 1


@pytest.mark.parametrize("span_us", [5_000_000, 2**61])  # packed key; lexsort fallback
def test_rows_are_taken_by_sensor_then_instant_then_row(span_us: int) -> None:
    import numpy as np

    from services.aggregator.stage import _by_sensor_then_instant

    rng = random.Random(span_us % 97)
    codes = [rng.randrange(7) for _ in range(500)]
    instants = [rng.randrange(span_us) for _ in range(250)]
    at = instants + instants  # every instant twice: ties keep the row order
    rng.shuffle(at)
    want = sorted(range(500), key=lambda row: (codes[row], at[row], row))
    got = _by_sensor_then_instant(np.array(codes), np.array(at, dtype=np.int64))
    assert got.tolist() == want


@pytest.mark.parametrize(
    "stamp", ["0000-01-01T00:00:00+00:00", "9999-12-31T23:59:30+00:00", "not a time", 17]
)
def test_one_unplaceable_reading_leaves_its_sixty_neighbours_in_their_windows(stamp: Any) -> None:
    """Issue 11: a year-0 reading took its batch's 60 good neighbours out of every window
    (the batch raised, was retried and went to the DLQ). It is set aside; they fold."""
    rows = make_rows(sensors=1, per_sensor=60, interval_s=1.0, seed=9)
    bad = dict(rows[30], id=10_000, timestamp=stamp)
    records = [{"sensor_data": r} for r in rows[:30]] + [{"sensor_data": bad}]
    records += [{"sensor_data": r} for r in rows[30:]]
    envelope = Envelope(
        "b0",
        "aggregated",
        1,
        records,
        position=Position(STREAM, 0),
        max_event_us=max(instant_us(r["timestamp"]) for r in rows),
    )
    one = shard()
    one.feed([message_of(envelope)])
    one.finish()
    assert len(one.acks.acked) == 1 and not one.acks.released
    assert sum(doc["record_count"] for doc in one.windows().values()) == 60
    (line,) = one.unusable_lines()
    assert line["record"]["id"] == 10_000 and line["batch_id"] == "b0"
    assert line["reason"] in {"no_event_time", "event_time_out_of_range"}


@pytest.mark.parametrize("validated", [True, False])
def test_sensor_ids_of_any_spelling_are_distinct_documents_of_one_page(validated: bool) -> None:
    ids = ["a/b", "a%2Fb", "a=b", "..", ".", "x\ny", "a b", "😀" * 128, "é" * 1000, "%", "a+b"]
    row = make_rows(sensors=1, per_sensor=1, seed=5)[0]
    records = [{"sensor_data": dict(row, sensor_id=i)} for i in ids]
    scenario = "aggregated" if validated else "raw"
    envelope = Envelope(
        "b0",
        scenario,
        1,
        records,
        position=Position(STREAM, 0),
        max_event_us=instant_us(row["timestamp"]),
    )
    one = shard(index=2)
    one.feed([message_of(envelope)])
    one.finish()
    ((key, body),) = one.bodies().items()  # one minute, one shard: one page
    docs = documents_of(body)
    assert [doc["sensor_id"] for doc in docs] == sorted(ids)  # one line per sensor, sorted
    minute = instant_us(row["timestamp"]) // 60_000_000 * 60
    assert key == time.strftime(
        "1-minute/year=%Y/month=%m/day=%d/hour=%H/window_start=%Y%m%dT%H%M%SZ/shard-2.jsonl.gz",
        time.gmtime(minute),
    )
    metadata = one.aggregated.objects[key].metadata
    assert metadata["sensor-count"] == str(len(ids))
    assert metadata["record-count"] == str(len(ids))
    assert metadata["shard"] == "2" and metadata["revision"] == "0"
