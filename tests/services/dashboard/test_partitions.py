"""Newest event-time partitions first, on moto's in-memory S3 (unit test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import PipelineConfig
from sensorpipe.objects import HIVE_DEFAULT_PARTITION, jsonl
from services.dashboard.config import DashboardSettings
from services.dashboard.partitions import hours_newest_first, keys_under
from services.dashboard.sources import MAX_HOURS_BACK, PipelineView
from tests.moto_stack import mocked_aws

BUCKET = "dash-unit"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mocked_aws(monkeypatch):
        client = s3_client()
        client.create_bucket(Bucket=BUCKET)
        yield client


def hour(day: int, h: int) -> str:
    return f"year=2026/month=11/day={day:02d}/hour={h:02d}"


def test_hours_come_newest_first_and_the_default_partition_last(s3: Any) -> None:
    for partition in (hour(20, 23), hour(21, 1), hour(21, 0), HIVE_DEFAULT_PARTITION):
        s3.put_object(Bucket=BUCKET, Key=f"rejected/{partition}/b.jsonl", Body=b"{}\n")
    s3.put_object(Bucket=BUCKET, Key=f"filtered/{hour(22, 0)}/b.jsonl", Body=b"{}\n")

    hours = list(hours_newest_first(s3, BUCKET, "rejected/"))

    assert hours == [
        f"rejected/{hour(21, 1)}/",
        f"rejected/{hour(21, 0)}/",
        f"rejected/{hour(20, 23)}/",
        f"rejected/{HIVE_DEFAULT_PARTITION}/",
    ]


def test_keys_under_descends_only_where_told(s3: Any) -> None:
    for minute in (0, 1):
        for shard in (0, 1):
            start = f"window_start=2026112121{minute:02d}00Z"
            key = f"1-minute/{hour(21, 0)}/{start}/shard-{shard}.jsonl.gz"
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
    everything = keys_under(s3, BUCKET, f"1-minute/{hour(21, 0)}/")
    only_one = keys_under(
        s3, BUCKET, f"1-minute/{hour(21, 0)}/", descend=lambda p: p.endswith("=20261121210100Z/")
    )
    assert len(everything) == 4
    assert len(only_one) == 2 and all("/window_start=20261121210100Z/" in k for k in only_one)


def test_rejected_walks_back_at_most_max_hours(s3: Any) -> None:
    config = PipelineConfig(buckets={"prefix": "dash"}, queues={"prefix": "dash"})
    bucket = config.buckets.name("error")
    s3.create_bucket(Bucket=bucket)
    for n in range(MAX_HOURS_BACK + 5):  # one rejected record an hour, over 53 hours
        day, h = divmod(n, 24)
        line = {"record": {"sensor_id": f"S{n}"}, "errors": [{"message": "too hot"}]}
        key = f"rejected/{hour(10 + day, h)}/b{n}.jsonl"
        s3.put_object(Bucket=bucket, Key=key, Body=jsonl([line], compress=False))
    view = PipelineView(config, DashboardSettings(rows=500), s3, sqs_client())

    rows = view.rejected()["records"]

    assert len(rows) == MAX_HOURS_BACK
    assert rows[0]["sensor_id"] == f"S{MAX_HOURS_BACK + 4}"  # the newest first
    assert rows[0]["errors"] == ["too hot"]
    assert orjson.dumps(rows)  # what the API serves
