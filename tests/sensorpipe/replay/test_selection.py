"""Pure parts of replay: option parsing, selections, batch ids, prefixes, queue names."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from sensorpipe.config import BucketKind, PipelineConfig
from sensorpipe.replay.archive import ArchiveSelection, full_prefix, replay_batch_id
from sensorpipe.replay.dlq import DlqSelection, parse_rate, resolve_queue
from sensorpipe.replay.errors import InvalidArgumentError, UnknownQueueError


@pytest.mark.parametrize(("text", "rate"), [("5/s", 5.0), ("0.5/s", 0.5), ("12", 12.0)])
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0/s", "-1", "fast", "inf", "nan"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="--rate"):
        parse_rate(text)


def test_dlq_selection() -> None:
    attrs = {"failure-reason": "Schema: bad timestamp", "batch-id": "b-1"}
    assert DlqSelection().matches({})
    assert DlqSelection(reason_contains="schema").matches(attrs)
    assert not DlqSelection(reason_contains="timeout").matches(attrs)
    assert not DlqSelection(reason_contains="schema").matches({"batch-id": "b-1"})
    assert DlqSelection(reason_contains="bad", batch_id="b-1").matches(attrs)
    assert not DlqSelection(batch_id="b-2").matches(attrs)


def test_resolve_queue() -> None:
    config = PipelineConfig()
    assert resolve_queue(config, "ingest") == "sensorpipe-ingest"
    assert resolve_queue(config, "sensorpipe-aggregate-0") == "sensorpipe-aggregate-0"
    assert resolve_queue(config, "notifications") == "sensorpipe-notifications.fifo"
    with pytest.raises(UnknownQueueError, match="name the source queue"):
        resolve_queue(config, "sensorpipe-ingest-dlq")


def test_batch_id_is_stable_and_depends_on_the_selection() -> None:
    key = "archival/year=2026/month=11/day=21/hour=10/b.jsonl.gz"
    whole = replay_batch_id(key, ArchiveSelection())
    assert whole == "replay-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    narrow = replay_batch_id(key, ArchiveSelection(sensor_id="s-1"))
    assert narrow != whole
    assert narrow == replay_batch_id(key, ArchiveSelection(sensor_id="s-1"))
    assert narrow != replay_batch_id(key, ArchiveSelection(sensor_id="s-2"))


def test_archive_time_window_is_half_open() -> None:
    since = datetime(2026, 11, 21, 10, tzinfo=UTC)
    until = datetime(2026, 11, 21, 11, tzinfo=UTC)
    selection = ArchiveSelection(since=since, until=until)
    assert selection.matches({"timestamp": "2026-11-21T10:00:00Z"})
    assert selection.matches({"timestamp": "2026-11-21T12:30:00+02:00"})
    assert not selection.matches({"timestamp": "2026-11-21T11:00:00Z"})
    assert not selection.matches({"timestamp": "not a time"})
    assert ArchiveSelection().matches({"timestamp": "not a time"})
    with pytest.raises(InvalidArgumentError, match="earlier than"):
        ArchiveSelection(since=until, until=since)


def test_full_prefix() -> None:
    assert full_prefix(BucketKind.ARCHIVAL, "year=2026/") == "archival/year=2026/"
    assert full_prefix(BucketKind.RAW, "/raw/year=2026/") == "raw/year=2026/"
    assert full_prefix(BucketKind.RAW, "") == "raw/"
    assert full_prefix(BucketKind.ERROR, "/rejected/year=2026/") == "rejected/year=2026/"
    assert full_prefix(BucketKind.ERROR, "filtered/") == "filtered/"
    with pytest.raises(InvalidArgumentError, match="late readings"):
        full_prefix(BucketKind.ERROR, "late/year=2026/")
