"""WindowStore: window documents go out one page per (window start, shard); a
revision rewrites its page with the other documents as they were; a restarted shard
reads a page back once for all its windows."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sensorpipe.records import METRICS
from sensorpipe.store import MemoryObjectStore, Stored
from services.aggregator.output import WindowStore
from services.aggregator.statistics import group_moments
from services.aggregator.windows import WindowId, WindowState

MINUTE_US = 60_000_000
START_US = int(datetime(2025, 11, 24, tzinfo=UTC).timestamp()) * 1_000_000


class CountingStore(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__("aggregated")
        self.gets: list[str] = []

    def get(self, key: str) -> Stored | None:
        self.gets.append(key)
        return super().get(key)


def state(sensor: str, start_us: int, offsets: list[int], revision: int = 0) -> WindowState:
    values = np.array([[20.0 + i + k for k in range(len(METRICS))] for i in offsets], dtype=float)
    out = WindowState.empty(WindowId(sensor, start_us))
    out.add(group_moments(values, np.array([0])).take(0), np.array(offsets), 0, "L1", set())
    out.revision = revision
    return out


def lines(store: MemoryObjectStore, key: str) -> list[dict[str, Any]]:
    text = gzip.decompress(store.objects[key].body).decode()
    return [json.loads(line) for line in text.split("\n") if line]


def test_windows_of_one_start_share_one_page_and_one_put() -> None:
    store = CountingStore()
    pages = WindowStore(store, "1-minute", MINUTE_US, shard=4)
    pages.write(
        [state(s, START_US, [1, 2]) for s in "cab"] + [state("a", START_US + MINUTE_US, [5])]
    )
    assert store.puts == 2
    key = pages.key(START_US)
    assert key.endswith("/window_start=20251124T000000Z/shard-4.jsonl.gz")
    assert [d["sensor_id"] for d in lines(store, key)] == ["a", "b", "c"]
    assert store.objects[key].metadata == {
        "window-start": "2025-11-24T00:00:00.000Z",
        "shard": "4",
        "record-count": "6",
        "sensor-count": "3",
        "revision": "0",
    }


def test_a_revision_rewrites_its_page_keeping_the_other_documents_as_they_were() -> None:
    store = CountingStore()
    first = WindowStore(store, "1-minute", MINUTE_US)
    first.write([state(s, START_US, [1, 2]) for s in ("a", "b", "c")])
    key = first.key(START_US)
    before = {d["sensor_id"]: d for d in lines(store, key)}
    store.gets.clear()

    # A restarted shard (nothing in memory) revises b: one GET for the page, then one PUT.
    second = WindowStore(store, "1-minute", MINUTE_US)
    (b,) = second.read_many([WindowId("b", START_US)])
    assert b is not None and b.members.tolist() == [1, 2] and b.revision == 0
    b.add(
        group_moments(np.full((1, len(METRICS)), 30.0), np.array([0])).take(0),
        np.array([7]),
        1,
        "L1",
        set(),
    )
    b.revision += 1
    second.write([b])
    after = {d["sensor_id"]: d for d in lines(store, key)}
    assert store.gets == [key]
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"]["revision"] == 1 and after["b"]["reading_offsets_us"] == [1, 2, 7]
    assert after["b"]["record_count"] == 3 and after["b"]["anomaly_count"] == 1
    assert store.objects[key].metadata["revision"] == "1"
    assert store.objects[key].metadata["record-count"] == "7"


def test_a_first_write_into_a_page_it_never_read_keeps_what_the_page_held() -> None:
    store = CountingStore()
    WindowStore(store, "1-minute", MINUTE_US).write([state("a", START_US, [1])])
    later = WindowStore(store, "1-minute", MINUTE_US)  # a new window of that start: revision 1
    later.write([state("z", START_US, [3], revision=1)])
    assert [(d["sensor_id"], d["revision"]) for d in lines(store, later.key(START_US))] == [
        ("a", 0),
        ("z", 1),
    ]


def test_reads_of_many_windows_get_each_page_once() -> None:
    store = CountingStore()
    WindowStore(store, "1-minute", MINUTE_US).write(
        [state(s, START_US + m * MINUTE_US, [m + 1]) for s in "abcd" for m in range(3)]
    )
    store.gets.clear()
    reader = WindowStore(store, "1-minute", MINUTE_US)
    wanted = [WindowId(s, START_US + m * MINUTE_US) for s in "abcdx" for m in range(3)]
    found = reader.read_many(wanted)
    assert len(store.gets) == 3  # three window starts, three pages
    for window, got in zip(wanted, found, strict=True):
        if window.sensor_id == "x":
            assert got is None
        else:
            assert got is not None and got.id == window
            assert got.members.tolist() == [(window.start_us - START_US) // MINUTE_US + 1]
    reader.read_many(wanted)  # held now: no more reads
    assert len(store.gets) == 3


def test_a_rewrite_gives_byte_identical_pages() -> None:
    one, two = MemoryObjectStore(), MemoryObjectStore()
    states = [state(s, START_US, [1, 5, 9]) for s in ("q", "p", "r")]
    WindowStore(one, "1-minute", MINUTE_US).write(states)
    WindowStore(two, "1-minute", MINUTE_US).write(states[::-1])
    WindowStore(two, "1-minute", MINUTE_US).write(states[1:])  # a redo of some of them
    assert {k: v.body for k, v in one.objects.items()} == {
        k: v.body for k, v in two.objects.items()
    }


def test_a_window_another_shard_wrote_is_found_in_its_page() -> None:
    """After a change of the shard count a sensor's written windows are in its former
    shard's pages: a revision here starts from that document, the highest revision."""
    store = CountingStore()
    WindowStore(store, "1-minute", MINUTE_US, shard=1).write([state("m", START_US, [1, 2])])
    WindowStore(store, "1-minute", MINUTE_US, shard=2).write([state("m", START_US, [1], 3)])
    WindowStore(store, "1-minute", MINUTE_US, shard=0).write([state("n", START_US, [4])])
    here = WindowStore(store, "1-minute", MINUTE_US, shard=0)
    found, nobody = here.read_many([WindowId("m", START_US), WindowId("x", START_US)])
    assert nobody is None
    assert found is not None and found.revision == 3 and found.members.tolist() == [1]
    found.revision += 1
    here.write([found])
    assert [(d["sensor_id"], d["revision"]) for d in lines(store, here.key(START_US))] == [
        ("m", 4),
        ("n", 0),
    ]
