"""The object conventions every stage shares: partitions, metadata, reproducible bytes."""

from __future__ import annotations

import gzip
import re
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorpipe.objects import (
    HIVE_DEFAULT_PARTITION,
    batch_object_metadata,
    content_digest,
    event_time_partition,
    json_safe,
    jsonl,
    key_segment,
    read_jsonl,
    readable_event_time,
)


@pytest.mark.parametrize(
    ("value", "partition"),
    [
        ("2025-08-18T10:15:00.000+00:00", "year=2025/month=08/day=18/hour=10"),
        ("2025-08-18T23:30:00Z", "year=2025/month=08/day=18/hour=23"),
        # An offset moves the reading to its UTC hour (here the next day).
        ("2025-08-18T20:30:00-05:00", "year=2025/month=08/day=19/hour=01"),
        (
            datetime(2025, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=2))),
            "year=2025/month=01/day=02/hour=01",
        ),
    ],
)
def test_readable_times_give_their_utc_hour(value: object, partition: str) -> None:
    assert event_time_partition(value) == partition


@pytest.mark.parametrize("value", [None, 17, "yesterday", "2025-13-45T25:61:00+00:00", ""])
def test_missing_or_unreadable_times_go_to_hives_default_partition(value: object) -> None:
    assert readable_event_time(value) is None
    assert event_time_partition(value) == HIVE_DEFAULT_PARTITION
    assert HIVE_DEFAULT_PARTITION == (
        "year=__HIVE_DEFAULT_PARTITION__/month=__HIVE_DEFAULT_PARTITION__/"
        "day=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__"
    )


def test_batch_object_metadata_spans_the_event_times() -> None:
    times = [
        datetime(2025, 8, 18, 10, 59, 59, 999000, tzinfo=UTC),
        datetime(2025, 8, 18, 10, 0, tzinfo=UTC),
    ]
    metadata = batch_object_metadata(
        scenario="raw", config_version=7, batch_id="edge-1", record_count=3, event_times=times
    )
    assert metadata == {
        "scenario": "raw",
        "config-version": "7",
        "batch-id": "edge-1",
        "record-count": "3",
        "first-event-time": "2025-08-18T10:00:00.000+00:00",
        "last-event-time": "2025-08-18T10:59:59.999+00:00",
    }
    timeless = batch_object_metadata(
        scenario="raw", config_version=7, batch_id="edge-1", record_count=2, event_times=[]
    )
    assert timeless["first-event-time"] == timeless["last-event-time"] == "unknown"


def test_jsonl_gzip_is_reproducible_and_round_trips() -> None:
    records = [{"b": i, "a": {"z": 1, "y": [i, None]}} for i in range(500)]
    body = jsonl(records, compress=True)
    reordered = [dict(reversed(list(r.items()))) for r in records]
    assert jsonl(reordered, compress=True) == body, "same content, same bytes"
    assert body[4:8] == b"\x00\x00\x00\x00", "no timestamp in the gzip header"
    assert read_jsonl(body) == records
    plain = jsonl(records, compress=False)
    assert gzip.decompress(body) == plain
    assert plain.splitlines()[0] == b'{"a":{"y":[0,null],"z":1},"b":0}'


# --- Key segments and content digests -------------------------------------------------

_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9._%~-]+")


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.text(max_size=160), min_size=2, max_size=6, unique=True))
def test_key_segments_are_safe_and_never_collide(values: list[str]) -> None:
    segments = [key_segment(v) for v in values]
    assert len(set(segments)) == len(values), (values, segments)
    for value, segment in zip(values, segments, strict=True):
        assert _SAFE_SEGMENT.fullmatch(segment), segment
        assert segment.strip("."), "never empty, '.' or '..'"
        readable, _, digest = segment.partition("~")
        if digest:
            assert re.fullmatch(r"[0-9a-f]{16}", digest)
        if len(value.encode("utf-8", "surrogatepass")) * 3 <= 128:  # short enough: not cut
            assert unquote(readable) == value


@pytest.mark.parametrize(
    ("value", "segment"),
    [("edge-1-000007", "edge-1-000007"), ("edge-1-000007.1.0", "edge-1-000007.1.0")],
)
def test_ordinary_ids_stay_as_they_are(value: str, segment: str) -> None:
    assert key_segment(value) == segment


def test_the_issue_s_colliding_ids_get_distinct_segments() -> None:
    assert key_segment("coll#1") != key_segment("coll_1")
    assert key_segment("coll#1") == "coll%231"
    assert key_segment("a/../b") == "a%2F..%2Fb"
    assert key_segment("..").startswith("%2E%2E~") and key_segment("").startswith("~")
    long = key_segment("x" * 1000)
    assert len(long) == 145 and long.startswith("x" * 128 + "~")
    assert len(key_segment("x" * 1000, limit=128)) == 128


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=20, max_value=300))
def test_a_segment_never_passes_its_limit(value: str, limit: int) -> None:
    assert len(key_segment(value, limit=limit)) <= limit


def test_content_digest_follows_the_rows_only() -> None:
    rows: list[dict[str, object]] = [{"id": 1, "t": 2.5}, {"id": 2, "t": None}]
    assert content_digest(rows) == content_digest([dict(reversed(r.items())) for r in rows])
    assert content_digest(rows) != content_digest(rows[::-1])
    assert content_digest(rows) != content_digest([rows[0], {"id": 3, "t": None}])
    assert re.fullmatch(r"[0-9a-f]{16}", content_digest([{"id": 2**70}]))


def test_json_safe_keeps_what_orjson_would_lose_as_text() -> None:
    value = {"a": [float("nan"), float("inf"), -float("inf"), 2**70, 1.5], "b": "x"}
    assert json_safe(value) == {"a": ["NaN", "Infinity", "-Infinity", str(2**70), 1.5], "b": "x"}
    plain = {"a": [1, 2.5, None], "b": {"c": "d"}}
    assert json_safe(plain) is plain
