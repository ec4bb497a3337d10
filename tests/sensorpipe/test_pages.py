"""Window pages (sensorpipe.pages) against plain Python: a page is gzip JSON Lines of
window documents sorted by sensor, the same documents always give the same bytes, keys
name the window start and the shard, readers keep the highest revision."""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from sensorpipe.pages import (
    is_page_key,
    latest_documents,
    page_entries,
    page_key,
    page_metadata,
    render_page,
)

START_US = int(datetime(2026, 11, 21, 9, 42, tzinfo=UTC).timestamp()) * 1_000_000


def document(sensor: str, *, revision: int = 0, records: int = 3) -> dict[str, Any]:
    return {
        "document_version": 2,
        "sensor_id": sensor,
        "window_start": "2026-11-21T09:42:00.000Z",
        "revision": revision,
        "record_count": records,
        "metrics": {"temperature": {"count": records, "mean": 20.5, "m2": None}},
        "reading_offsets_us": list(range(0, records * 1000, 1000)),
    }


SENSORS = ["b", "a/b", "é" * 300, "x\ny", "\x85", "A", "a", "..", "a=b"]


def test_a_page_is_gzip_json_lines_sorted_by_sensor_with_sorted_keys() -> None:
    docs = [document(s, records=i + 1) for i, s in enumerate(SENSORS)]
    body = render_page(docs)
    lines = gzip.decompress(body).decode("utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    parsed = [json.loads(line) for line in lines[:-1]]
    assert [d["sensor_id"] for d in parsed] == sorted(SENSORS)
    assert parsed == sorted(docs, key=lambda d: d["sensor_id"])
    for line in lines[:-1]:
        keys = list(json.loads(line))
        assert keys == sorted(keys)


def test_the_same_documents_in_any_order_give_byte_identical_pages() -> None:
    docs = [document(s, records=i + 1) for i, s in enumerate(SENSORS)]
    first = render_page(docs)
    for seed in range(5):
        shuffled = docs[:]
        random.Random(seed).shuffle(shuffled)
        assert render_page(shuffled) == first
    assert gzip.decompress(first)  # and no timestamp in the gzip header: bytes 4-7 zero
    assert first[4:8] == b"\0\0\0\0"


def test_page_entries_read_back_what_was_rendered() -> None:
    docs = [document(s, revision=i % 2) for i, s in enumerate(SENSORS)]
    body = render_page(docs)
    assert page_entries(body) == sorted(docs, key=lambda d: d["sensor_id"])
    assert page_entries(gzip.decompress(body)) == page_entries(body)


def test_a_page_holds_one_document_per_sensor() -> None:
    with pytest.raises(ValueError, match="one document per sensor"):
        render_page([document("a"), document("a", revision=1)])


@pytest.mark.parametrize("body", [b"\x1f\x8bnot gzip", b"not json\n", b"[1, 2]\n"])
def test_what_is_not_a_page_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        page_entries(body)


def test_the_key_names_the_hour_the_window_start_and_the_shard() -> None:
    assert page_key("1-minute/", START_US, 3) == (
        "1-minute/year=2026/month=11/day=21/hour=09/window_start=20261121T094200Z/shard-3.jsonl.gz"
    )
    assert is_page_key(page_key("1-minute", START_US, 0))
    assert not is_page_key("_checkpoints/aggregator-shard-0.json")


def test_two_shards_or_two_minutes_never_share_a_key() -> None:
    starts = [START_US + m * 60_000_000 for m in range(-90, 90)]
    keys = [page_key("1-minute", s, shard) for s in starts for shard in range(8)]
    assert len(set(keys)) == len(keys) == 180 * 8


def test_page_metadata_sums_records_and_takes_the_highest_revision() -> None:
    docs = [document("a", records=4), document("b", revision=2, records=5), document("c")]
    assert page_metadata(docs, 1) == {
        "window-start": "2026-11-21T09:42:00.000Z",
        "shard": "1",
        "record-count": str(4 + 5 + 3),
        "sensor-count": "3",
        "revision": "2",
    }


def test_latest_documents_keep_the_highest_revision_of_each_window() -> None:
    given = [document("a"), document("b", revision=1), document("a", revision=2), document("b")]
    other_minute = dict(document("a"), window_start="2026-11-21T09:43:00.000Z")
    latest = latest_documents([*given, other_minute])
    assert set(latest) == {
        ("a", "2026-11-21T09:42:00.000Z"),
        ("b", "2026-11-21T09:42:00.000Z"),
        ("a", "2026-11-21T09:43:00.000Z"),
    }
    assert latest[("a", "2026-11-21T09:42:00.000Z")]["revision"] == 2
    assert latest[("b", "2026-11-21T09:42:00.000Z")]["revision"] == 1
