"""``sensorpipe-replay inspect``: a columnar body, a DLQ, an object, as JSON Lines."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.columns import table_of
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.envelope import Envelope, encode
from sensorpipe.replay.cli import main
from sensorpipe.replay.inspect import message_lines, object_lines
from tests.conftest import Pipeline
from tests.sensorpipe.replay.conftest import dead_letter, drain, s3

RECORDS = [
    {"sensor_data": {"id": i, "sensor_id": "s-1", "temperature": 20.5 + i}} for i in range(3)
]


def _columnar_body() -> tuple[str, dict[str, str]]:
    envelope = Envelope("b-7", "raw", 4, table=table_of(RECORDS), source="edge")
    encoded = encode(envelope, compress=True, columnar=True)
    assert encoded.attributes["content-encoding"] == "arrow"
    return encoded.body, encoded.attributes


def _lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_columnar_message_is_its_header_then_one_line_per_record() -> None:
    body, attributes = _columnar_body()
    head, *records = [json.loads(line) for line in message_lines(body, attributes)]
    assert head["envelope"]["batch_id"] == "b-7" and head["record_count"] == 3
    assert head["content_encoding"] == "arrow"
    assert records == RECORDS


def test_objects_read_as_gzip_json_lines_or_one_document() -> None:
    lines = [{"a": 1}, {"a": 2, "b": [1]}]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    assert _lines("\n".join(object_lines("k", gzip.compress(text.encode())))) == [
        {"object": "k", "lines": 2},
        *lines,
    ]
    assert _lines("\n".join(object_lines("w.json", b'{"x": {"y": 1}}'))) == [
        {"object": "w.json", "lines": 1},
        {"x": {"y": 1}},
    ]


def test_the_cli_prints_a_saved_body(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body, _ = _columnar_body()
    path = tmp_path / "body.txt"
    path.write_text(body)
    assert main(["inspect", "--body", str(path)]) == 0
    assert _lines(capsys.readouterr().out)[1:] == RECORDS


def test_a_body_that_is_no_envelope_is_said_so_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "body.txt"
    path.write_text("bm90IGFycm93")  # base64 of "not arrow"
    assert main(["inspect", "--body", str(path)]) == 1
    (line,) = _lines(capsys.readouterr().out)
    assert "not a base64 Arrow IPC stream" in line["not_an_envelope"]


def test_a_missing_body_file_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["inspect", "--body", str(tmp_path / "nope")]) == 2


@pytest.mark.integration
def test_dlq_messages_are_printed_and_left_in_place(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = pipeline.config.queues.enriched
    dead_letter(queue, "dead-1", "schema: bad")
    args = ["inspect", "--config", str(pipeline.config_path), "--dlq", "enriched"]
    assert main(args) == 0
    head, record = _lines(capsys.readouterr().out)
    assert head["envelope"]["batch_id"] == "dead-1"
    assert head["dead_letter"]["failure-reason"] == "schema: bad"
    assert record["sensor_data"]["sensor_id"] == "s-1"
    time.sleep(2.5)  # the inspect's short visibility timeout
    assert [m["envelope"].batch_id for m in drain(QueueSettings.dlq_name(queue))] == ["dead-1"]


@pytest.mark.integration
def test_a_stored_object_is_printed(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = pipeline.bucket("error")
    s3().put_object(Bucket=bucket, Key="rejected/x.jsonl.gz", Body=gzip.compress(b'{"e": 1}\n'))
    uri = f"s3://{bucket}/rejected/x.jsonl.gz"
    assert main(["inspect", "--config", str(pipeline.config_path), "--object", uri]) == 0
    assert _lines(capsys.readouterr().out) == [
        {"object": "rejected/x.jsonl.gz", "lines": 1},
        {"e": 1},
    ]
