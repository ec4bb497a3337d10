"""``sensorpipe-replay status`` against LocalStack: counts, highlighting, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.replay.cli import main
from sensorpipe.replay.status import bucket_status
from tests.conftest import Pipeline
from tests.sensorpipe.replay.conftest import dead_letter, s3, sqs, url_of

pytestmark = pytest.mark.integration


def status(pipeline: Pipeline, *args: str) -> int:
    return main(["status", "--config", str(pipeline.config_path), *args])


@pytest.fixture
def busy(pipeline: Pipeline) -> Pipeline:
    """Two dead letters of the enriched queue, one visible and one in-flight message on
    ingest, three objects in the raw bucket."""
    q = pipeline.config.queues
    dead_letter(q.enriched, "b-1", "boom")
    dead_letter(q.enriched, "b-2", "boom")
    for body in ("a", "b"):
        sqs().send_message(QueueUrl=url_of(q.ingest), MessageBody=body)
    sqs().receive_message(QueueUrl=url_of(q.ingest), MaxNumberOfMessages=1, VisibilityTimeout=60)
    for i in range(3):
        s3().put_object(Bucket=pipeline.bucket("raw"), Key=f"raw/x/{i}.jsonl", Body=b"{}\n")
    return pipeline


def test_json_reports_every_queue_and_bucket(
    busy: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(busy, "--format", "json") == 0

    report = json.loads(capsys.readouterr().out)
    q = busy.config.queues
    queues = {row["name"]: row for row in report["queues"]}
    expected_names = [
        name
        for queue in [*q.consumer_queues(), q.notifications]
        for name in (queue, QueueSettings.dlq_name(queue))
    ]
    assert sorted(queues) == sorted(expected_names)
    ingest = queues[q.ingest]
    assert (ingest["visible"], ingest["in_flight"], ingest["delayed"]) == (1, 1, 0)
    dlq = queues[QueueSettings.dlq_name(q.enriched)]
    assert (dlq["role"], dlq["source"], dlq["visible"]) == ("dlq", q.enriched, 2)
    assert report["dlq_messages"] == 2
    buckets = {row["kind"]: row for row in report["buckets"]}
    assert sorted(buckets) == ["aggregated", "archival", "error", "raw", "schematized"]
    assert buckets["raw"]["objects"] == 3 and buckets["raw"]["bytes"] == 9
    assert buckets["error"]["objects"] == 0


def test_table_highlights_dlq_and_fail_on_dlq_exits_3(
    busy: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(busy) == 0
    table = capsys.readouterr().out
    dlq = QueueSettings.dlq_name(busy.config.queues.enriched)
    marked = [line for line in table.splitlines() if line.startswith("!")]
    assert marked[0].split()[1:] == [dlq, "dlq", "2", "0", "0"]
    assert f"sensorpipe-replay dlq --queue {busy.config.queues.enriched} --dry-run" in table

    assert status(busy, "--fail-on-dlq") == 3


def test_empty_pipeline_and_missing_queue(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(pipeline, "--fail-on-dlq") == 0
    assert "dead-letter queues: empty" in capsys.readouterr().out

    gone = QueueSettings.dlq_name(pipeline.config.queues.notifications)
    sqs().delete_queue(QueueUrl=url_of(gone))
    assert status(pipeline, "--format", "json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["queues"]}
    assert rows[gone]["exists"] is False


def test_bucket_count_is_paginated(pipeline: Pipeline) -> None:
    bucket = pipeline.bucket("error")
    for i in range(5):
        s3().put_object(Bucket=bucket, Key=f"rejected/{i}.jsonl", Body=b"x")
    assert bucket_status(s3(), "error", bucket, page_size=2).objects == 5


def test_console_script_exit_code(busy: Pipeline) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "sensorpipe-replay"),
            "status",
            "--fail-on-dlq",
            "--format",
            "json",
        ],
        env=busy.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout)["dlq_messages"] == 2
