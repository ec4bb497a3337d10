"""The aggregator handler against the shared in-memory AWS (tests/moto_stack.py), with a
controlled clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope
from sensorpipe.objects import read_jsonl
from sensorpipe.runtime import ACK, HOLD, Message, Reject
from services.aggregator.config import AggregatorSettings
from services.aggregator.handler import AggregatorHandler
from tests.moto_stack import MotoStack, moto_stack
from tests.services.aggregator.dataset import (
    T0,
    expected_windows,
    iso,
    key_of,
    make_rows,
    make_stream,
    message,
    window_problems,
)


@dataclass
class Acks:
    handles: list[str] = field(default_factory=list)

    def ack(self, messages: list[Message]) -> None:
        self.handles.extend(m.receipt_handle for m in messages)

    def retry(self, messages: list[Message], reason: str) -> None:
        raise AssertionError(f"unexpected retry: {reason}")


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig(MotoStack):
    clock: Clock = field(default_factory=Clock)

    @property
    def s3(self) -> Any:
        return self.context.s3

    def handler(self, recovery_s: float = 0.0) -> tuple[AggregatorHandler, Acks]:
        handler = AggregatorHandler.build(
            self.config,
            self.s3,
            AggregatorSettings(recovery_seconds=recovery_s),
            clock=self.clock,
        )
        acks = Acks()
        handler.bind(acks)
        return handler, acks

    def windows(self) -> dict[tuple[str, int], dict[str, Any]]:
        out = {}
        for body in self.objects("aggregated").values():
            doc = orjson.loads(body)
            start = int(_epoch(doc["window_start"]))
            out[(doc["sensor_id"], start)] = doc
        return out

    def late_lines(self) -> list[dict[str, Any]]:
        return [line for body in self.objects("error").values() for line in read_jsonl(body)]


def _epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    config = PipelineConfig(
        buckets={"prefix": "unit-agg"},
        queues={"prefix": "unit-agg"},
        windowing={"window_seconds": 60, "grace_seconds": 10, "idle_flush_seconds": 30},
    )
    with moto_stack(monkeypatch, config) as stack:
        yield Rig(stack.config, stack.context)


def row(sensor: str, offset: float, **values: Any) -> dict[str, Any]:
    data = {
        "id": int(offset * 1000),
        "sensor_id": sensor,
        "timestamp": iso(T0 + offset),
        "location": "Lisbon",
        "temperature": 20.0 + offset,
        "anomaly_flag": 0,
    }
    data.update(values)
    return data


def envelope(batch: str, rows: list[dict[str, Any]], anomalous: bool = False) -> Envelope:
    records = [
        {
            "sensor_data": r,
            "lineage": {"batch_id": f"e-{batch}", "node_id": "n1", "job_id_hash": "j1"},
            "quality": {"anomalous": anomalous, "anomaly_reasons": []},
        }
        for r in rows
    ]
    return Envelope(batch, "aggregated", 4, records)


def test_stream_gives_the_independent_windows_and_acks_after_writes(rig: Rig) -> None:
    stream = make_stream(
        make_rows(sensors=4, per_sensor=1500, seed=5), late_by_s=300, batch_size=200
    )
    handler, acks = rig.handler()
    messages = [message(e) for e in stream.envelopes()[0]]
    for m in messages:
        outcome = handler.handle([m])[0]
        assert outcome in (ACK, HOLD)
        if outcome is HOLD:
            rig.clock.now += 0.5
    rig.clock.now += 31  # idle flush closes the last windows
    handler.on_tick()
    assert handler.open_windows == {}
    expected = expected_windows(stream)
    assert window_problems(rig.windows(), expected) == []
    late = rig.late_lines()
    assert {line["reading_key"] for line in late} == stream.late_keys
    assert {line["reason"] for line in late} == {"after_watermark"}
    held = [m.receipt_handle for m in messages]
    assert sorted(acks.handles) == sorted(h for h in held if h in acks.handles)
    assert len(set(acks.handles)) == len(acks.handles)
    doc = next(iter(rig.windows().values()))
    assert doc["scenarios"] == ["aggregated"] and doc["config_versions"] == [3]
    assert doc["lineage"]["node_ids"] and doc["lineage"]["job_id_hashes"]


def test_message_is_acked_only_when_every_window_it_feeds_is_written(rig: Rig) -> None:
    handler, acks = rig.handler()
    a = message(envelope("b1", [row("s1", 10), row("s2", 10)]))
    b = message(envelope("b2", [row("s1", 75)]))  # s1's watermark 65 passes [0, 60)
    assert handler.handle([a]) == [HOLD]
    assert handler.handle([b]) == [HOLD]
    keys = list(rig.objects("aggregated"))
    assert len(keys) == 1 and "sensor_id=s1/" in keys[0]
    assert keys[0].startswith("1-minute/year=2025/month=06/day=01/hour=00/")
    assert keys[0].endswith("/20250601T000000Z.json")
    assert acks.handles == []  # a also feeds s2's window, still open
    rig.clock.now += 30
    handler.on_tick()  # s2 is quiet: idle flush writes its last window
    assert len(rig.objects("aggregated")) == 3  # s1 [60, 120) was idle too
    assert sorted(acks.handles) == sorted([a.receipt_handle, b.receipt_handle])


def test_recovery_period_writes_nothing_then_closes(rig: Rig) -> None:
    handler, acks = rig.handler(recovery_s=10)
    first = message(envelope("b1", [row("s1", 10)]))
    assert handler.handle([first]) == [HOLD]
    assert handler.handle([message(envelope("b2", [row("s1", 200)]))]) == [HOLD]
    rig.clock.now += 9
    handler.on_tick()
    assert rig.objects("aggregated") == {} and acks.handles == []
    rig.clock.now += 1
    handler.on_tick()
    assert len(rig.objects("aggregated")) == 1  # [0, 60) by watermark; [180, 240) open
    assert acks.handles == [first.receipt_handle]


def test_shutdown_does_not_flush_partial_windows(rig: Rig) -> None:
    handler, acks = rig.handler()
    assert handler.handle([message(envelope("b1", [row("s1", 10), row("s2", 10)]))]) == [HOLD]
    handler.on_shutdown()
    assert rig.objects("aggregated") == {} and acks.handles == []
    assert len(handler.open_windows) == 2  # their message goes back to the queue


def test_replayed_readings_are_discarded_and_new_ones_for_a_written_window_are_late(
    rig: Rig,
) -> None:
    first, _ = rig.handler()
    first.handle([message(envelope("b1", [row("s1", 10), row("s1", 20)]))])
    rig.clock.now += 30
    first.on_tick()
    before = rig.objects("aggregated")
    assert len(before) == 1
    # A new process (no memory) gets a replay of both readings plus a new one.
    second, acks = rig.handler()
    replay = message(envelope("b1-again", [row("s1", 10), row("s1", 20), row("s1", 30)]))
    assert second.handle([replay]) == [HOLD]
    rig.clock.now += 30
    second.on_tick()
    assert rig.objects("aggregated") == before  # first writer wins, bytes untouched
    assert acks.handles == [replay.receipt_handle]
    late = rig.late_lines()
    assert [(line["reading_key"], line["reason"]) for line in late] == [
        (key_of(row("s1", 30)), "window_already_written")
    ]
    assert late[0]["batch_id"] == "b1-again" and late[0]["record"]["sensor_id"] == "s1"


def test_duplicates_within_and_across_messages_count_once(rig: Rig) -> None:
    handler, _ = rig.handler()
    r = row("s1", 10)
    handler.handle([message(envelope("b1", [r, r, row("s1", 11)]))])
    handler.handle([message(envelope("b2", [r]))])
    rig.clock.now += 30
    handler.on_tick()
    (doc,) = rig.windows().values()
    assert doc["record_count"] == 2
    assert doc["metrics"]["temperature"]["mean"] == pytest.approx(20.0 + 10.5, rel=1e-12)


def test_a_copy_of_a_held_message_waits_for_the_open_window(rig: Rig) -> None:
    # The held message's visibility lapsed and the same process receives it again: its
    # readings are duplicates of an open window that exists only in memory, so acking
    # the copy would leave nothing to rebuild that window from after a crash.
    handler, acks = rig.handler()
    batch = envelope("b1", [row("s1", 10), row("s1", 20)])
    first = message(batch)
    assert handler.handle([first]) == [HOLD]
    copy = message(batch, receive_count=2)
    assert handler.handle([copy]) == [HOLD]
    assert acks.handles == []
    rig.clock.now += 30
    handler.on_tick()
    assert sorted(acks.handles) == sorted([first.receipt_handle, copy.receipt_handle])
    (doc,) = rig.windows().values()
    assert doc["record_count"] == 2


def test_redelivery_keeps_late_decisions_and_rebuilds_unwritten_windows(rig: Rig) -> None:
    first, _ = rig.handler()
    first.handle([message(envelope("b1", [row("s1", 200)]))])
    # s1's watermark is 190: [0, 60) is closed; 10 is late, 185 is on time.
    held = envelope("b2", [row("s1", 10), row("s1", 185)])
    assert first.handle([message(held)]) == [HOLD]
    (line,) = rig.late_lines()
    assert line["reason"] == "after_watermark"
    # Crash: nothing written. A new process sees the message again, after newer data.
    second, acks = rig.handler()
    second.handle([message(envelope("b3", [row("s1", 400)]))])
    again = message(held, receive_count=2)
    assert second.handle([again]) == [HOLD]
    rig.clock.now += 30
    second.on_tick()
    windows = rig.windows()
    assert (("s1", int(T0)) in windows) is False  # the late reading stayed late
    assert windows[("s1", int(T0) + 180)]["record_count"] == 1  # rebuilt, not late
    assert [x["reading_key"] for x in rig.late_lines()] == [key_of(row("s1", 10))]
    assert again.receipt_handle in acks.handles


def test_unusable_records_and_poison_messages_are_never_dropped_silently(rig: Rig) -> None:
    handler, _ = rig.handler()
    bad = envelope("b1", [row("s1", 10), row("s1", 11, timestamp="yesterday")])
    bad.records.append({"not": "a reading"})
    assert handler.handle([message(bad)]) == [HOLD]
    reasons = sorted((x["reason"], x["detail"]) for x in rig.late_lines())
    assert reasons == [
        ("no_event_time", "record has no sensor_data object"),
        ("no_event_time", "timestamp 'yesterday' is not ISO-8601"),
    ]
    poison = Message("m", "r", "{not json", {"content-encoding": "identity"})
    (outcome,) = handler.handle([poison])
    assert isinstance(outcome, Reject) and "not a batch envelope" in outcome.reason


def test_anomalies_missing_values_and_metadata(rig: Rig) -> None:
    handler, _ = rig.handler()
    rows = [row("s1", 1, humidity=None), row("s1", 2, humidity=40.0), row("s1", 3)]
    handler.handle([message(envelope("b1", rows[:1], anomalous=True))])
    handler.handle([message(envelope("b2", rows[1:]))])
    rig.clock.now += 30
    handler.on_tick()
    (key,) = rig.objects("aggregated")
    doc = rig.windows()[("s1", int(T0))]
    assert doc["anomaly_count"] == 1
    assert doc["metrics"]["humidity"] == {
        "count": 1,
        "missing": 2,
        "mean": 40.0,
        "min": 40.0,
        "max": 40.0,
        "stddev": None,
        "m2": 0.0,
    }
    assert doc["window_start"] == "2025-06-01T00:00:00.000Z"
    assert doc["window_end"] == "2025-06-01T00:01:00.000Z"
    assert doc["first_reading_at"] == rows[0]["timestamp"]
    assert doc["last_reading_at"] == rows[2]["timestamp"]
    head = rig.s3.head_object(Bucket=rig.config.buckets.name("aggregated"), Key=key)
    assert head["Metadata"]["record-count"] == "3"
    assert head["Metadata"]["scenario"] == "aggregated"


def test_while_recovering_a_late_looking_copy_waits_for_the_rebuilt_window(rig: Rig) -> None:
    # A crashed process held b1 (readings at 10 and 20 s) without writing its window.
    b1 = envelope("b1", [row("s1", 10), row("s1", 20)])
    handler, acks = rig.handler(recovery_s=5)
    # The new process first gets newer data, and a copy of the 10 s reading (a replayed
    # batch) that is behind the watermark: late, or a duplicate? Not known yet.
    newer = message(envelope("b2", [row("s1", 300)]))
    copy = message(envelope("b3", [row("s1", 10), row("s1", 30)]))
    assert handler.handle([newer, copy]) == [HOLD, HOLD]
    # Then b1 comes back and rebuilds the window.
    again = message(b1, receive_count=2)
    assert handler.handle([again]) == [HOLD]
    rig.clock.now += 6
    handler.on_tick()  # recovery over: the rebuilt window is written (idle or not)
    rig.clock.now += 30
    handler.on_tick()
    windows = rig.windows()
    assert windows[("s1", int(T0))]["record_count"] == 2  # 10 s and 20 s, once each
    late = rig.late_lines()
    # The copy of 10 s was a duplicate; 30 s never reached its window in time: late.
    assert [(x["reading_key"], x["reason"]) for x in late] == [
        (key_of(row("s1", 30)), "after_watermark")
    ]
    assert copy.receipt_handle in acks.handles and again.receipt_handle in acks.handles
