"""The object conventions every stage shares: partitions, metadata, reproducible bytes."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sensorpipe.objects import (
    HIVE_DEFAULT_PARTITION,
    batch_object_metadata,
    event_time_partition,
    jsonl,
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
