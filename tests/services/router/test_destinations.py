"""The router's object keys: safe whatever the batch id, distinct for different content,
the same for a redelivery; and every source row kept, however its instant is spelt."""

from __future__ import annotations

import re
from typing import Any
from unittest.mock import MagicMock

import pytest

from sensorpipe.objects import ObjectWriter, read_jsonl
from sensorpipe.records import reading_key
from services.router.destinations import ArchivalWriter, RawWriter, RoutedBatch
from tests.services.router.conftest import envelope, reading, record

KEY = re.compile(
    r"(raw|archival)/(year=\d{4}/month=\d\d/day=\d\d/hour=\d\d)/(.+)_([0-9a-f]{16})\.jsonl"
)


def keys(
    writer_class: type[RawWriter] | type[ArchivalWriter], records: list[Any], **kw: Any
) -> list[str]:
    writer = writer_class(MagicMock(spec=ObjectWriter), "bucket", gzip_objects=False)
    return [o.key for o in writer.render(RoutedBatch.of(envelope("raw", records, **kw)))]


def rows(*ids: int) -> list[dict[str, Any]]:
    return [record(reading(i, f"2025-08-18T10:{i:02d}:00.000+00:00"), lineage=True) for i in ids]


def test_a_key_is_the_batch_id_and_a_digest_of_its_rows() -> None:
    (key,) = keys(RawWriter, rows(1, 2))
    match = KEY.fullmatch(key)
    assert match is not None, key
    assert match.group(2, 3) == ("year=2025/month=08/day=18/hour=10", "edge-b1")


def test_a_redelivery_gets_the_same_keys_whatever_its_processing_times() -> None:
    first = rows(1, 2)
    again = rows(1, 2)
    for r in again:
        r["lineage"]["processed_at"] = "2025-08-18T11:00:00.000+00:00"
        r["lineage"]["hops"] = [{"stage": "enricher", "at": "2025-08-18T11:00:00.000+00:00"}]
        r["quality"]["validated_at"] = "2025-08-18T11:00:00.100+00:00"
    for writer in (RawWriter, ArchivalWriter):
        assert keys(writer, first) == keys(writer, again)


def test_two_batches_sharing_an_id_do_not_overwrite_each_other() -> None:
    one, other = keys(RawWriter, rows(1, 2)), keys(RawWriter, rows(3, 4))
    assert one != other
    changed = rows(1, 2)
    changed[1]["sensor_data"]["temperature"] = 61.6
    assert keys(RawWriter, changed) != one


@pytest.mark.parametrize(("a", "b"), [("coll#1", "coll_1"), ("b:1", "b%3A1"), ("x.y", "x_y")])
def test_similar_batch_ids_give_distinct_safe_keys(a: str, b: str) -> None:
    key_a, key_b = keys(RawWriter, rows(1), batch_id=a), keys(RawWriter, rows(1), batch_id=b)
    assert key_a != key_b
    for (key,) in (key_a, key_b):
        assert re.fullmatch(r"[A-Za-z0-9=/._%~-]+", key), key


def test_one_instant_spelt_three_ways_is_three_archived_rows_and_one_reading() -> None:
    """Each source row has its own row id, so the archive keeps all three (by design);
    the windows count by instant, and the three share one reading key."""
    spellings = ["2025-08-18T10:00:00+00:00", "2025-08-18T10:00:00Z", "2025-08-18 10:00:00Z"]
    records = [
        record(reading(i, stamp, sensor_id="S1"), lineage=True)
        for i, stamp in enumerate(spellings, start=1)
    ]
    writer = ArchivalWriter(MagicMock(spec=ObjectWriter), "bucket", gzip_objects=False)
    (obj,) = writer.render(RoutedBatch.of(envelope("multi-destination", records)))
    lines = read_jsonl(obj.body)
    assert [line["sensor_data"]["id"] for line in lines] == [1, 2, 3]
    assert len({reading_key(line["sensor_data"]) for line in lines}) == 1
    assert KEY.fullmatch(obj.key) is not None
