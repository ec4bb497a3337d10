"""Replaying what the validator set aside (error bucket) against LocalStack: the objects
are made by the validator's own code, so the replay reads exactly what it writes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from sensorpipe.config import default_file, load_validation_spec
from sensorpipe.envelope import Envelope
from sensorpipe.replay.cli import main
from services.validator.batch import BatchValidator, error_objects
from tests.conftest import Pipeline
from tests.sensorpipe.replay.conftest import drain, reading, s3

pytestmark = pytest.mark.integration

TOO_HOT = {**reading(2, "s-2", "2026-11-21T10:00:05Z"), "temperature": 500.0}
TOO_WET = {**reading(3, "s-3", "2026-11-21T11:30:00Z"), "humidity": 140.0}


def valid(row: dict[str, Any]) -> dict[str, Any]:
    return {"humidity": 40.0, "status_code": 0, "anomaly_flag": 0, **row}


@pytest.fixture
def set_aside(pipeline: Pipeline) -> dict[str, int]:
    """A batch validated by the real validator: one valid reading, two out of range, and
    one whose sensor_data is no object; its error objects stored like the validator
    stores them. Returns record counts by key."""
    records: list[dict[str, Any]] = [
        {"sensor_data": valid(reading(1, "s-1", "2026-11-21T10:00:00Z"))},
        {"sensor_data": valid(TOO_HOT)},
        {"sensor_data": valid(TOO_WET)},
        {"sensor_data": "not a reading"},
    ]
    envelope = Envelope("edge-b7", "notification", 4, records, source="edge-test")
    spec = load_validation_spec(default_file("sensor_validation_spec_v2.yaml"))
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    result = BatchValidator(spec).validate_envelope(envelope, apply_filters=False, now=now)
    assert len(result.rejected) == 3
    counts: dict[str, int] = {}
    for obj in error_objects(result):
        s3().put_object(
            Bucket=pipeline.bucket("error"), Key=obj.key, Body=obj.body, Metadata=obj.metadata
        )
        counts[obj.key] = obj.record_count
    return counts


def run(pipeline: Pipeline, *args: str) -> int:
    return main(["archive", "--config", str(pipeline.config_path), "--bucket-kind", "error", *args])


def test_rejected_readings_go_back_to_ingest_under_their_scenario(
    pipeline: Pipeline, set_aside: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(pipeline, "--prefix", "rejected/") == 0

    envelopes = {
        m["envelope"].batch_id: m["envelope"] for m in drain(pipeline.config.queues.ingest)
    }
    replayed = sorted(
        (r["sensor_data"] for e in envelopes.values() for r in e.records),
        key=lambda row: row["id"],
    )
    assert replayed == [valid(TOO_HOT), valid(TOO_WET)]
    assert {e.scenario for e in envelopes.values()} == {"notification"}
    expected_ids = {
        "replay-" + hashlib.sha256(key.encode()).hexdigest()[:16]
        for key in set_aside
        if key.startswith("rejected/")
    }
    assert set(envelopes) <= expected_ids and len(envelopes) == 2
    out = capsys.readouterr().out
    assert "3 record(s) read, 2 selected" in out
    assert "1 line(s) held no reading object and were not replayed" in out


def test_what_a_replay_set_aside_again_is_not_replayed_twice(
    pipeline: Pipeline, set_aside: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """The spec was not fixed yet: the replayed readings were rejected again, under the
    replay's batch id. The next replay sends them once, from the original objects."""
    assert run(pipeline, "--prefix", "rejected/") == 0
    first = [m["envelope"] for m in drain(pipeline.config.queues.ingest)]
    spec = load_validation_spec(default_file("sensor_validation_spec_v2.yaml"))
    now = datetime(2026, 11, 21, 13, tzinfo=UTC)
    for envelope in first:
        again = BatchValidator(spec).validate_envelope(envelope, apply_filters=False, now=now)
        for obj in error_objects(again):
            s3().put_object(
                Bucket=pipeline.bucket("error"), Key=obj.key, Body=obj.body, Metadata=obj.metadata
            )
    capsys.readouterr()

    assert run(pipeline, "--prefix", "rejected/") == 0

    second = [m["envelope"] for m in drain(pipeline.config.queues.ingest)]
    assert sorted(e.batch_id for e in second) == sorted(e.batch_id for e in first)
    assert (
        "note: 2 object(s) hold what an earlier replay set aside again" in capsys.readouterr().out
    )


def test_selection_applies_to_set_aside_readings(
    pipeline: Pipeline, set_aside: dict[str, int]
) -> None:
    assert run(pipeline, "--prefix", "rejected/", "--sensor-id", "s-3") == 0

    envelopes = [m["envelope"] for m in drain(pipeline.config.queues.ingest)]
    assert [e.records for e in envelopes] == [[{"sensor_data": valid(TOO_WET)}]]


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("", "--prefix '(empty)': the error bucket replays only records the validator set aside"),
        ("late/", "(late readings are in the archival bucket already)"),
    ],
)
def test_other_error_prefixes_are_refused(
    capsys: pytest.CaptureFixture[str], prefix: str, message: str
) -> None:
    config = str(default_file("pipeline-config-v2.yaml"))
    args = ["archive", "--config", config, "--bucket-kind", "error", "--prefix", prefix]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "rejected/ or filtered/" in err
