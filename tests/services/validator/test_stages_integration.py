"""Enricher and validator as real processes against LocalStack, on a small dataset.

What goes in the ingest queue comes out either in the validated queue (exactly the
valid records) or in the error bucket (exactly the invalid ones, with the right rule
names, and what the business filter removed); a raw batch passes both stages with its
body byte-identical; a batch with an unknown scenario ends in the DLQ with its reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Encoded, Envelope, encode
from sensorpipe.objects import read_jsonl
from sensorpipe.runtime import EnvelopeProducer, Message
from tests.conftest import Pipeline, make_pipeline
from tests.services.validator.rows import anomalous_reading, reading

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# row id -> the (field, rule) pairs the validator must report; absent ids are valid.
INVALID: dict[int, set[tuple[str, str]]] = {
    2: {("temperature", "range")},
    4: {("humidity", "required"), ("sensor_id", "pattern")},
    6: {("timestamp", "timestamp_timezone")},
    7: {("anomaly_type", "anomaly_type_requires_flag")},
    9: {("status_code", "status_code_matches_flag"), ("voltage", "type")},
}
ANOMALOUS = {3, 8}


def dataset(first_id: int) -> list[dict[str, Any]]:
    """Ten readings; ids offset per batch so every row id is unique in the test."""
    rows = [
        reading(1),
        reading(2, temperature=151.0),
        anomalous_reading(3, "spike"),
        reading(4, humidity="<missing>", sensor_id="#"),
        reading(5),
        reading(6, timestamp="2025-08-18T10:15:06"),
        reading(7, anomaly_type="noise"),
        anomalous_reading(8, "trend"),
        reading(9, status_code=1, voltage="12V"),
        reading(10),
    ]
    for row in rows:
        row["id"] += first_id
    return rows


def batch(scenario: str, first_id: int) -> Envelope:
    return Envelope(
        batch_id=f"it-{scenario}-{first_id}",
        scenario=scenario,
        config_version=5,
        records=[{"sensor_data": row} for row in dataset(first_id)],
        source="edge-it",
        hops=[{"stage": "uploader", "at": "2025-08-18T10:20:00.000+00:00"}],
    )


@dataclass
class Stages:
    pipeline: Pipeline
    validator: ServiceProcess


@pytest.fixture(name="running")
def stages(localstack: str, tmp_path: Path) -> Iterator[Stages]:
    pipeline = make_pipeline(
        tmp_path,
        localstack,
        {
            "queues": {"visibility_timeout_seconds": 10},
            "runtime": {"wait_time_seconds": 1, "shutdown_timeout_seconds": 5},
        },
    )
    logs = tmp_path / "logs"
    processes = [
        ServiceProcess("services.enricher", pipeline.env, logs),
        ServiceProcess("services.validator", pipeline.env, logs),
    ]
    try:
        for process in processes:
            process.start()
        yield Stages(pipeline, processes[1])
    finally:
        for process in processes:
            if process.process is not None:
                process.terminate()


def receive_all(pipeline: Pipeline, queue: str, count: int, timeout_s: float = 40) -> list[Message]:
    sqs = sqs_client()
    url = pipeline.queue_url(queue)
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        for raw in got:
            out.append(Message.from_sqs(dict(raw), queue))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"])
    return out


def error_lines(pipeline: Pipeline) -> dict[str, list[dict[str, Any]]]:
    s3 = s3_client()
    bucket = pipeline.bucket("error")
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        o["Key"]: read_jsonl(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        for o in listing
    }


def test_stages_route_every_record_to_its_place(running: Stages) -> None:
    stages = running.pipeline
    config = stages.config
    producer = EnvelopeProducer(
        sqs_client(), stages.queue_url(config.queues.ingest), config.queues.ingest
    )
    raw = encode(batch("raw", 100), compress=True)
    validated_batches = [batch("schematized", 200), batch("aggregated", 300)]
    filtered = batch("filtered", 400)
    producer.send_encoded([raw])
    producer.send([*validated_batches, filtered, batch("teleport", 900)])

    out = {m.attributes["batch-id"]: m for m in receive_all(stages, config.queues.validated, 4)}
    assert sorted(out) == [
        "it-aggregated-300",
        "it-filtered-400",
        "it-raw-100",
        "it-schematized-200",
    ]

    # The raw batch went through both stages untouched.
    assert out["it-raw-100"].body == raw.body
    assert out["it-raw-100"].attributes == raw.attributes

    valid_offsets = [i for i in range(1, 11) if i not in INVALID]
    for envelope in validated_batches:
        forwarded = out[envelope.batch_id].envelope()
        base = int(envelope.batch_id.rsplit("-", 1)[1])
        assert [r["sensor_data"]["id"] for r in forwarded.records] == [
            base + i for i in valid_offsets
        ]
        assert {
            r["sensor_data"]["id"] - base for r in forwarded.records if r["quality"]["anomalous"]
        } == ANOMALOUS
        summary = forwarded.meta["validation"]
        assert (summary["in"], summary["valid"], summary["invalid"]) == (10, 5, 5)
        stages_seen = [h["stage"] for h in forwarded.hops]
        if envelope.scenario == "aggregated":
            assert stages_seen == ["uploader", "enricher", "validator"]
            assert all(r["lineage"]["batch_id"] == envelope.batch_id for r in forwarded.records)
        else:  # schematized: no lineage, the enricher forwarded it unchanged
            assert stages_seen == ["uploader", "validator"]
            assert all("lineage" not in r for r in forwarded.records)

    # The filtered scenario: status_code 1 (the anomalous rows) is set aside, not lost.
    kept = out["it-filtered-400"].envelope()
    assert [r["sensor_data"]["id"] - 400 for r in kept.records] == [1, 5, 10]

    lines = error_lines(stages)
    rejected = {
        line["record"]["id"]: line
        for key, group in lines.items()
        if key.startswith("rejected/")
        for line in group
    }
    expected_ids = {base + i for base in (200, 300, 400) for i in INVALID}
    assert set(rejected) == expected_ids
    for row_id, line in rejected.items():
        assert {(e["field"], e["rule"]) for e in line["errors"]} == INVALID[row_id % 100]
    assert all(rejected[300 + i]["lineage"]["source_row_id"] == 300 + i for i in INVALID)
    set_aside = [
        (line["record"]["id"], line["rule"])
        for key, group in lines.items()
        if key.startswith("filtered/")
        for line in group
    ]
    assert sorted(set_aside) == [(403, "drop_anomalous_status"), (408, "drop_anomalous_status")]
    # in = out for every validated batch: forwarded + rejected + filtered = 10 each.
    for base, forwarded_count in ((200, 5), (300, 5), (400, 3)):
        ours = [i for i in rejected if i // 100 == base // 100]
        ours_filtered = [i for i, _ in set_aside if i // 100 == base // 100]
        assert forwarded_count + len(ours) + len(ours_filtered) == 10

    # The batch with no route is kept in the ingest DLQ with the reason.
    (dead,) = receive_all(stages, QueueSettings.dlq_name(config.queues.ingest), 1)
    assert dead.attributes["batch-id"] == "it-teleport-900"
    assert "has no route" in dead.attributes["failure-reason"]

    metrics = running.validator.metrics_text()
    assert (
        'sensorpipe_validation_errors_total{field="timestamp",rule="timestamp_timezone"} 3.0'
        in metrics
    )
    assert (
        'sensorpipe_records_processed_total{outcome="invalid",service="validator"} 15.0' in metrics
    )
    assert 'sensorpipe_filtered_records_total{rule="drop_anomalous_status"} 2.0' in metrics


def test_a_raw_batch_body_survives_both_stages_byte_identical_uncompressed(
    running: Stages,
) -> None:
    stages = running.pipeline
    config = stages.config
    raw: Encoded = encode(batch("raw", 500), compress=False)
    EnvelopeProducer(
        sqs_client(), stages.queue_url(config.queues.ingest), config.queues.ingest
    ).send_encoded([raw])
    (out,) = receive_all(stages, config.queues.validated, 1)
    assert out.body == raw.body
    assert error_lines(stages) == {}
