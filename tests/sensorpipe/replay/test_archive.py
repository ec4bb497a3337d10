"""Archive replay against LocalStack: objects written like the router's, envelopes on
ingest with the source rows, deterministic batch ids, filters, dry run, bad objects."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from sensorpipe.config import default_file
from sensorpipe.objects import jsonl
from sensorpipe.replay.cli import main
from tests.conftest import Pipeline
from tests.sensorpipe.replay.conftest import drain, reading, s3

pytestmark = pytest.mark.integration

HOUR_10 = "archival/year=2026/month=11/day=21/hour=10/edge-b1.jsonl.gz"
HOUR_11 = "archival/year=2026/month=11/day=21/hour=11/edge-b2.jsonl.gz"
OCTOBER = "archival/year=2026/month=10/day=01/hour=00/edge-b0.jsonl.gz"


def full_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "sensor_data": row,
        "lineage": {"batch_id": "edge-b1", "stage": "enricher"},
        "quality": {"spec_version": "2", "anomalous": False, "anomaly_reasons": []},
    }


def put(
    pipeline: Pipeline, kind: str, key: str, lines: list[dict[str, Any]], scenario: str = "lineage"
) -> None:
    s3().put_object(
        Bucket=pipeline.bucket(kind),
        Key=key,
        Body=jsonl(lines, compress=key.endswith(".gz")),
        Metadata={"scenario": scenario, "config-version": "7", "batch-id": "edge-b1"},
    )


ROWS_10 = [
    reading(1, "s-1", "2026-11-21T10:00:00Z"),
    reading(2, "s-2", "2026-11-21T10:00:05Z", location="plant-b"),
    reading(3, "s-1", "2026-11-21T10:59:59.500Z"),
]
ROWS_11 = [reading(4, "s-1", "2026-11-21T11:00:00Z"), reading(5, "s-2", "2026-11-21T11:30:00Z")]


@pytest.fixture
def archived(pipeline: Pipeline) -> Pipeline:
    put(pipeline, "archival", HOUR_10, [full_record(r) for r in ROWS_10])
    put(pipeline, "archival", HOUR_11, [full_record(r) for r in ROWS_11], scenario="notification")
    put(pipeline, "archival", OCTOBER, [full_record(reading(9, "s-9", "2026-10-01T00:00:00Z"))])
    return pipeline


def run(pipeline: Pipeline, *args: str) -> int:
    return main(["archive", "--config", str(pipeline.config_path), *args])


def by_batch(pipeline: Pipeline) -> dict[str, Any]:
    return {m["envelope"].batch_id: m["envelope"] for m in drain(pipeline.config.queues.ingest)}


def test_replays_source_rows_with_deterministic_batch_ids(
    archived: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--bucket-kind", "archival", "--prefix", "year=2026/month=11/")
    assert run(archived, *args) == 0
    first = by_batch(archived)

    expected_ids = {
        "replay-" + hashlib.sha256(key.encode()).hexdigest()[:16]: key for key in (HOUR_10, HOUR_11)
    }
    assert set(first) == set(expected_ids)
    hour_10 = first[next(b for b, k in expected_ids.items() if k == HOUR_10)]
    hour_11 = first[next(b for b, k in expected_ids.items() if k == HOUR_11)]
    # Only the source rows travel: lineage and quality are recomputed downstream.
    assert hour_10.records == [{"sensor_data": row} for row in ROWS_10]
    assert hour_11.records == [{"sensor_data": row} for row in ROWS_11]
    # Each object keeps the scenario and config version its metadata recorded.
    assert (hour_10.scenario, hour_10.config_version) == ("lineage", 7)
    assert hour_11.scenario == "notification"
    assert hour_10.meta["replay_of"] == f"s3://{archived.bucket('archival')}/{HOUR_10}"
    out = capsys.readouterr().out
    assert "2 object(s), 5 record(s) read, 5 selected; sent 2 batch(es)" in out

    assert run(archived, *args) == 0
    second = by_batch(archived)
    assert set(second) == set(first)
    assert {b: e.records for b, e in second.items()} == {b: e.records for b, e in first.items()}


def test_filters_and_scenario_override(archived: Pipeline) -> None:
    args = [
        "--bucket-kind", "archival", "--prefix", "archival/year=2026/month=11/",
        "--scenario", "raw", "--sensor-id", "s-1",
        "--since", "2026-11-21T10:00:01Z", "--until", "2026-11-21T11:00:00Z",
    ]  # fmt: skip
    assert run(archived, *args) == 0

    envelopes = list(by_batch(archived).values())
    assert [e.records for e in envelopes] == [[{"sensor_data": ROWS_10[2]}]]
    assert envelopes[0].scenario == "raw"
    unfiltered = "replay-" + hashlib.sha256(HOUR_10.encode()).hexdigest()[:16]
    # A narrower replay must not overwrite the outputs of a full one.
    assert envelopes[0].batch_id != unfiltered

    assert run(archived, *args) == 0
    assert [e.batch_id for e in by_batch(archived).values()] == [envelopes[0].batch_id]

    assert run(archived, "--bucket-kind", "archival", "--location", "plant-b") == 0
    assert [e.records for e in by_batch(archived).values()] == [[{"sensor_data": ROWS_10[1]}]]


def test_dry_run_sends_nothing(archived: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(archived, "--bucket-kind", "archival", "--dry-run", "--sensor-id", "s-2") == 0

    out = capsys.readouterr().out
    assert "3 object(s), 6 record(s) read, 2 selected; would send 2 batch(es)" in out
    assert "1  lineage" in out and "1  notification" in out
    assert by_batch(archived) == {}


def test_raw_bucket_lines_are_bare_rows(pipeline: Pipeline) -> None:
    key = "raw/year=2026/month=11/day=21/hour=10/edge-b1.jsonl"
    put(pipeline, "raw", key, ROWS_10, scenario="raw")

    assert run(pipeline, "--bucket-kind", "raw", "--prefix", "year=2026/") == 0

    envelopes = list(by_batch(pipeline).values())
    assert [e.records for e in envelopes] == [[{"sensor_data": row} for row in ROWS_10]]
    assert envelopes[0].scenario == "raw"


def test_unreadable_objects_are_listed_and_fail_the_run(
    archived: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = archived.bucket("archival")
    s3().put_object(
        Bucket=bucket, Key="archival/year=2026/month=11/junk.jsonl", Body=b"{not json\n"
    )
    put(archived, "archival", "archival/year=2026/month=11/old.jsonl", [], scenario="gone")

    assert run(archived, "--bucket-kind", "archival", "--prefix", "year=2026/month=11/") == 1

    out = capsys.readouterr().out
    assert f"skipped: s3://{bucket}/archival/year=2026/month=11/junk.jsonl" in out
    assert "records 'gone', which this pipeline does not know; pass --scenario" in out
    # The readable objects were still replayed.
    assert len(by_batch(archived)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "nope"], "--scenario: unknown scenario 'nope'"),
        (["--since", "yesterday"], "--since 'yesterday': not an ISO-8601 time"),
        (
            ["--since", "2026-11-21T11:00:00Z", "--until", "2026-11-21T10:00:00Z"],
            "--since must be earlier than --until",
        ),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # Refused before any AWS call: no LocalStack needed.
    config = str(default_file("pipeline-config-v2.yaml"))
    assert main(["archive", "--config", config, "--bucket-kind", "archival", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
